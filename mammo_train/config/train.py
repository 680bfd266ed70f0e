"""`python -m mammo_train`'s flags and the frozen `Train` config they resolve to (the tuner takes them too)."""
import dataclasses
import os

from absl import flags

from mammo_train.config.shared import MODELS, PRECISIONS, STRATEGIES, Protocol, check, dataset_of, define_shared, \
    define_runtime, flag_names, model_file, protocol_of, require_positive
from mammo_train.inputs import data

def define_train_flags(values: flags.FlagValues = flags.FLAGS):
  """The trainer's flags (the tuner takes them too)."""
  define_shared(values, dataset="synthetic", batch_size=16,
                 batch_help="Batch size per replica; the global batch is this times the replicas.",
                 seed_help="Seed of weights, shuffling, oversampling, augmentation and the bootstrap.")
  define = dict(flag_values=values)
  flags.DEFINE_enum("model", "cnn", MODELS, "Classifier: the small cnn, or a Keras applications backbone.",
                    **define)
  flags.DEFINE_string("weights", None, "Backbone weights: imagenet, none (random init) or the path of a notop "
                      ".h5 weights file. Default: imagenet for the backbones, none for the cnn (which has no "
                      "other).", **define)
  flags.DEFINE_integer("fine_tune_layers", None, "Top backbone layers to train (BatchNorm stays frozen); "
                       "0 = frozen backbone. Default: 0 with pretrained weights, all with --weights=none.",
                       **define)
  flags.DEFINE_string("init_from", None, "A .keras model of an earlier run (e.g. its best.keras) to start "
                      "from instead of a fresh model: a frozen stage, then a fine-tune stage. "
                      "--weights is not used then.", **define)
  flags.DEFINE_integer("epochs", 20, "Training epochs (one epoch = as many images as the training split).",
                       **define)
  flags.DEFINE_float("learning_rate", 1e-3, "Initial Adam learning rate (halved when val loss plateaus).",
                     **define)
  flags.DEFINE_float("dropout", 0.5, "Dropout rate before the output layer.", **define)
  flags.DEFINE_float("l2", 1e-4, "L2 weight decay on the trained conv and dense kernels.", **define)
  flags.DEFINE_boolean("oversample", False, "Sample the training split's classes up to balance, on the fly.",
                       **define)
  flags.DEFINE_boolean("class_weights", False, "Weight the loss by inverse class frequency (not with "
                       "--oversample).", **define)
  flags.DEFINE_boolean("augment", True, "Augment training images (flip, rotation, zoom, shift below).",
                       **define)
  flags.DEFINE_boolean("flip", True, "Random up-down flips (the chest wall stays on the left).", **define)
  flags.DEFINE_float("rotation", 10.0, "Largest random rotation, degrees; 0 = none.", **define)
  flags.DEFINE_float("zoom", 0.1, "Largest random zoom in or out, as a fraction; 0 = none.", **define)
  flags.DEFINE_float("shift", 0.05, "Largest random shift, as a fraction of the side; 0 = none.", **define)
  flags.DEFINE_integer("image_size", None, "Side the stored images are resized to (default: the stored size).",
                       **define)
  flags.DEFINE_boolean("cache", True, "Keep decoded, resized images in memory when they fit.", **define)
  flags.DEFINE_boolean("feature_cache", True, "With a frozen backbone (--fine_tune_layers=0), compute its "
                       "features once per image and view, keep them in the workdir, and train only the head "
                       "on them instead of rerunning the backbone every epoch.", **define)
  flags.DEFINE_integer("cache_views", 2, "Augmented views of each training image in the feature cache "
                       "(1 with --noaugment). Computing them costs about views + 0.2 epochs of the backbone.",
                       **define)
  define_runtime(values, "the frozen backbone's pass over every image when the feature cache is computed")
  flags.DEFINE_enum("precision", "auto", PRECISIONS, "Keras dtype policy; auto = mixed_float16 on a GPU, "
                    "the faster of float32 and mixed_bfloat16 on this CPU otherwise.", **define)
  flags.DEFINE_enum("strategy", "auto", STRATEGIES, "auto = mirrored over several GPUs, else default; "
                    "mirrored = over all GPUs, or all logical CPUs when there is no GPU; multiworker = "
                    "tf.distribute.MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (README).",
                    **define)
  flags.DEFINE_string("workdir", None, "Run folder: flags, dataset info, models, logs, evaluation. "
                      "Rerunning the same command into a killed run's workdir finishes it.", **define)
  flags.DEFINE_boolean("deterministic", False, "Deterministic ops and input order (slower).", **define)
  flags.DEFINE_boolean("tensorboard_graph", False, "Write the model graph to TensorBoard.", **define)


@dataclasses.dataclass(frozen=True)
class Train:
  """Everything a training run needs, resolved from the flags (see their help)."""
  dataset: str
  data_dir: str | None
  model: str
  weights: str
  fine_tune_layers: int | None  # None: the whole backbone trains
  init_from: str | None
  epochs: int
  batch_size: int
  learning_rate: float
  dropout: float
  l2: float
  oversample: bool
  class_weights: bool
  augmentation: data.Augmentation
  image_size: int | None
  cache: bool
  feature_cache: bool
  cache_views: int
  runtime: str
  precision: str
  strategy: str
  workdir: str
  seed: int
  deterministic: bool
  tensorboard_graph: bool
  protocol: Protocol
  # Set by cross-validation, not by a flag: which data trains, selects and is scored (default: the
  # train / validation / test splits), and a feature cache shared by the folds (default: the workdir's).
  partition: data.Partition = data.Partition()
  feature_cache_root: str | None = None

  @property
  def frozen_backbone(self) -> bool:
    """Whether the backbone is frozen, so its features can be cached and only the head trained."""
    return self.model != "cnn" and self.fine_tune_layers == 0


def train_from_flags(values: flags.FlagValues = flags.FLAGS) -> Train:
  """The trainer's Config of the parsed flags; raises ConfigError on a bad value or combination."""
  check(values.workdir, "--workdir is required: the folder the run writes to")
  dataset = dataset_of(values)
  check(not (values.oversample and values.class_weights),
        "--oversample and --class_weights both correct the class imbalance, and together correct it "
        "twice: pass one of them")
  require_positive(values, "epochs", "batch_size", "cache_views")
  check(values.learning_rate > 0, f"--learning_rate must be positive, got {values.learning_rate}")
  check(0 <= values.dropout < 1, f"--dropout must be in [0, 1), got {values.dropout}")
  check(values.l2 >= 0, f"--l2 must not be negative, got {values.l2}")
  check(0 <= values.rotation <= 180, f"--rotation must be 0-180 degrees, got {values.rotation}")
  check(0 <= values.zoom < 1, f"--zoom must be in [0, 1), got {values.zoom}")
  check(0 <= values.shift < 1, f"--shift must be in [0, 1), got {values.shift}")
  check(values.image_size is None or values.image_size >= 16,
        f"--image_size must be at least 16, got {values.image_size}")
  weights = values.weights or ("none" if values.model == "cnn" else "imagenet")
  if values.model == "cnn":
    check(weights == "none", f"--weights={weights}: the cnn has no pretrained weights; use --weights=none")
    check(values.fine_tune_layers is None,
          "--fine_tune_layers applies to the pretrained backbones (resnet50, vgg16, inceptionv3), not the cnn")
  else:
    check(weights in ("imagenet", "none") or os.path.isfile(weights),
          f"--weights={weights}: expected imagenet, none or the path of an existing .h5 weights file")
  check(values.fine_tune_layers is None or values.fine_tune_layers >= 0,
        f"--fine_tune_layers must not be negative, got {values.fine_tune_layers}")
  if values.init_from:
    model_file("init_from", values.init_from)
  fine_tune_layers = values.fine_tune_layers
  if fine_tune_layers is None and values.model != "cnn" and (weights != "none" or values.init_from):
    fine_tune_layers = 0  # a pretrained backbone starts frozen; a random one trains whole (None)
  augmentation = data.Augmentation(flip=values.flip, rotation=values.rotation, zoom=values.zoom,
                                   shift=values.shift) if values.augment else data.Augmentation.none()
  return Train(
      dataset=dataset, data_dir=values.data_dir, model=values.model, weights=weights,
      fine_tune_layers=fine_tune_layers, init_from=values.init_from, epochs=values.epochs,
      batch_size=values.batch_size, learning_rate=values.learning_rate, dropout=values.dropout,
      l2=values.l2, oversample=values.oversample, class_weights=values.class_weights,
      augmentation=augmentation, image_size=values.image_size, cache=values.cache,
      feature_cache=values.feature_cache, cache_views=values.cache_views, runtime=values.runtime,
      precision=values.precision, strategy=values.strategy, workdir=values.workdir, seed=values.seed,
      deterministic=values.deterministic, tensorboard_graph=values.tensorboard_graph,
      protocol=protocol_of(values))


TRAIN_FLAGS = flag_names(define_train_flags)
