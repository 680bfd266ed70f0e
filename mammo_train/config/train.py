"""`python -m mammo_train`'s flags and the frozen `Train` config they resolve to (the tuner takes them too)."""
import dataclasses
import os

from absl import flags

from mammo_train.config import fields
from mammo_train.config.fields import flag
from mammo_train.config.shared import MODELS, PRECISIONS, STRATEGIES, Protocol, check, check_protocol, \
    data_dir_flag, dataset_flag, dataset_of, flag_names, model_file, require_positive, runtime_flag
from mammo_train.inputs import augmentations, data


@dataclasses.dataclass(frozen=True, kw_only=True)
class Train:
  """Everything a training run needs, resolved from the flags, each declared on its field (see their help)."""
  dataset: str = dataset_flag("synthetic")
  data_dir: str | None = data_dir_flag()
  model: str = flag("cnn", "Classifier: the small cnn, or a Keras applications backbone.", enum=MODELS)
  weights: str = flag(None, "Backbone weights: imagenet, none (random init) or the path of a notop .h5 weights "
                      "file. Default: imagenet for the backbones, none for the cnn (which has no other).")
  # None once resolved: the whole backbone trains.
  fine_tune_layers: int | None = flag(None, "Top backbone layers to train (BatchNorm stays frozen); 0 = frozen "
                                      "backbone. Default: 0 with pretrained weights, all with --weights=none.")
  init_from: str | None = flag(None, "A .keras model of an earlier run (e.g. its best.keras) to start from "
                               "instead of a fresh model: a frozen stage, then a fine-tune stage. --weights is "
                               "not used then.")
  epochs: int = flag(20, "Training epochs (one epoch = as many images as the training split).")
  batch_size: int = flag(16, "Batch size per replica; the global batch is this times the replicas.")
  learning_rate: float = flag(1e-3, "Initial Adam learning rate (halved when val loss plateaus).")
  dropout: float = flag(0.5, "Dropout rate before the output layer.")
  l2: float = flag(1e-4, "L2 weight decay on the trained conv and dense kernels.")
  oversample: bool = flag(False, "Sample the training split's classes up to balance, on the fly.")
  class_weights: bool = flag(False, "Weight the loss by inverse class frequency (not with --oversample).")
  # With --noaugment, Augmentation.none() whatever these flags say.
  augmentation: augmentations.Augmentation = fields.nested(
      augmentations.Augmentation, flip="Random up-down flips (the chest wall stays on the left).",
      rotation="Largest random rotation, degrees; 0 = none.",
      zoom="Largest random zoom in or out, as a fraction; 0 = none.",
      shift="Largest random shift, as a fraction of the side; 0 = none.")
  image_size: int | None = flag(None, "Side the stored images are resized to (default: the stored size).")
  cache: bool = flag(True, "Keep decoded, resized images in memory when they fit.")
  feature_cache: bool = flag(True, "With a frozen backbone (--fine_tune_layers=0), compute its features once "
                             "per image and view, keep them in the workdir, and train only the head on them "
                             "instead of rerunning the backbone every epoch.")
  cache_views: int = flag(2, "Augmented views of each training image in the feature cache (1 with "
                          "--noaugment). Computing them costs about views + 0.2 epochs of the backbone.")
  runtime: str = runtime_flag("the frozen backbone's pass over every image when the feature cache is computed")
  precision: str = flag("auto", "Keras dtype policy; auto = mixed_float16 on a GPU, the faster of float32 and "
                        "mixed_bfloat16 on this CPU otherwise.", enum=PRECISIONS)
  strategy: str = flag("auto", "auto = mirrored over several GPUs, else default; mirrored = over all GPUs, or "
                       "all logical CPUs when there is no GPU; multiworker = "
                       "tf.distribute.MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (README).",
                       enum=STRATEGIES)
  workdir: str = flag(None, "Run folder: flags, dataset info, models, logs, evaluation. Rerunning the same "
                      "command into a killed run's workdir finishes it.")
  seed: int = flag(0, "Seed of weights, shuffling, oversampling, augmentation and the bootstrap.")
  deterministic: bool = flag(False, "Deterministic ops and input order (slower).")
  tensorboard_graph: bool = flag(False, "Write the model graph to TensorBoard.")
  protocol: Protocol = fields.nested(Protocol)  # its seed is --seed above
  # Set by cross-validation, not by a flag: which data trains, selects and is scored (default: the
  # train / validation / test splits), and a feature cache shared by the folds (default: the workdir's).
  partition: data.Partition = data.Partition()
  feature_cache_root: str | None = None

  @property
  def frozen_backbone(self) -> bool:
    """Whether the backbone is frozen, so its features can be cached and only the head trained."""
    return self.model != "cnn" and self.fine_tune_layers == 0


def define_train_flags(values: flags.FlagValues = flags.FLAGS):
  """The trainer's flags (the tuner and cross-validation take them too): Train's, and the augmentation
  switch."""
  fields.define(Train, values)
  flags.DEFINE_boolean("augment", True, "Augment training images (flip, rotation, zoom, shift below).",
                       flag_values=values)


def train_from_flags(values: flags.FlagValues = flags.FLAGS) -> Train:
  """The trainer's Config of the parsed flags; raises ConfigError on a bad value or combination."""
  check(values.workdir, "--workdir is required: the folder the run writes to")
  dataset_of(values)
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
  check_protocol(values)
  augmentation = fields.build(augmentations.Augmentation, values) if values.augment else augmentations.Augmentation.none()
  return fields.read(Train, values, weights=weights, fine_tune_layers=fine_tune_layers, augmentation=augmentation)


TRAIN_FLAGS = flag_names(define_train_flags)
