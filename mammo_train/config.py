"""The trainer's flags and the one config they resolve to.

Every flag of `python -m mammo_train` is defined here and checked here, so the
rest of the package takes a plain frozen `Config` and never reads flags. A bad
combination raises `ConfigError`, whose message `__main__` prints as one line.
"""
import dataclasses
import os

from absl import flags

from mammo_train import data

MODELS = ("cnn", "resnet50", "vgg16", "inceptionv3")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored")

flags.DEFINE_string("dataset", "synthetic", "Prepared TFDS dataset, optionally with a config: "
                    "cmmd, mias, mias/density, synthetic, synthetic/tiny.")
flags.DEFINE_string("data_dir", None, "TFDS data dir holding the prepared dataset (default: TFDS's own).")
flags.DEFINE_enum("model", "cnn", MODELS, "Classifier: the small cnn, or a Keras applications backbone.")
flags.DEFINE_string("weights", "none", "Backbone weights: imagenet, none (random init) or the path "
                    "of a notop .h5 weights file. The cnn takes none only.")
flags.DEFINE_integer("fine_tune_layers", None, "Top backbone layers to train (BatchNorm stays frozen); "
                     "0 = frozen backbone. Default: 0 with pretrained weights, all with --weights=none.")
flags.DEFINE_string("init_from", None, "A .keras model of an earlier run (e.g. its best.keras) to start "
                    "from instead of a fresh model: a frozen stage, then a fine-tune stage. "
                    "--weights is not used then.")
flags.DEFINE_integer("epochs", 20, "Training epochs (one epoch = as many images as the training split).")
flags.DEFINE_integer("batch_size", 16, "Batch size per replica; the global batch is this times the replicas.")
flags.DEFINE_float("learning_rate", 1e-3, "Initial Adam learning rate (halved when val loss plateaus).")
flags.DEFINE_float("dropout", 0.5, "Dropout rate before the output layer.")
flags.DEFINE_float("l2", 1e-4, "L2 weight decay on the trained conv and dense kernels.")
flags.DEFINE_boolean("oversample", False, "Sample the training split's classes up to balance, on the fly.")
flags.DEFINE_boolean("class_weights", False, "Weight the loss by inverse class frequency (not with --oversample).")
flags.DEFINE_boolean("augment", True, "Augment training images (flip, rotation, zoom, shift below).")
flags.DEFINE_boolean("flip", True, "Random up-down flips (the chest wall stays on the left).")
flags.DEFINE_float("rotation", 10.0, "Largest random rotation, degrees; 0 = none.")
flags.DEFINE_float("zoom", 0.1, "Largest random zoom in or out, as a fraction; 0 = none.")
flags.DEFINE_float("shift", 0.05, "Largest random shift, as a fraction of the side; 0 = none.")
flags.DEFINE_integer("image_size", None, "Side the stored images are resized to (default: the stored size).")
flags.DEFINE_boolean("cache", True, "Keep decoded, resized images in memory when they fit.")
flags.DEFINE_boolean("feature_cache", True, "With a frozen backbone (--fine_tune_layers=0), compute its "
                     "features once per image and view, keep them in the workdir, and train only the head "
                     "on them instead of rerunning the backbone every epoch.")
flags.DEFINE_integer("cache_views", 2, "Augmented views of each training image in the feature cache "
                     "(1 with --noaugment). Computing them costs about views + 0.2 epochs of the backbone.")
flags.DEFINE_enum("precision", "auto", PRECISIONS, "Keras dtype policy; auto = mixed_float16 on a GPU, "
                  "the faster of float32 and mixed_bfloat16 on this CPU otherwise.")
flags.DEFINE_enum("strategy", "auto", STRATEGIES, "auto = mirrored over several GPUs, else default; "
                  "mirrored = over all GPUs, or all logical CPUs when there is no GPU.")
flags.DEFINE_string("workdir", None, "Run folder: flags, dataset info, models, logs, evaluation. "
                    "Rerunning into a killed run's workdir resumes it.")
flags.DEFINE_integer("seed", 0, "Seed of weights, shuffling, oversampling and augmentation.")
flags.DEFINE_boolean("deterministic", False, "Deterministic ops and input order (slower).")
flags.DEFINE_boolean("tensorboard_graph", False, "Write the model graph to TensorBoard.")


class ConfigError(ValueError):
  """A flag value or combination the trainer cannot run with."""


@dataclasses.dataclass(frozen=True)
class Config:
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
  precision: str
  strategy: str
  workdir: str
  seed: int
  deterministic: bool
  tensorboard_graph: bool


def _check(condition: bool, message: str):
  if not condition:
    raise ConfigError(message)


def from_flags(values: flags.FlagValues = flags.FLAGS) -> Config:
  """The Config of the parsed flags; raises ConfigError on a bad value or combination."""
  _check(values.workdir, "--workdir is required: the folder the run writes to")
  try:
    data.qualified_name(values.dataset)
  except ValueError as error:
    raise ConfigError(f"--dataset: {error}") from None
  _check(not (values.oversample and values.class_weights),
         "--oversample and --class_weights both correct the class imbalance, and together correct it "
         "twice: pass one of them")
  _check(values.epochs >= 1, f"--epochs must be at least 1, got {values.epochs}")
  _check(values.batch_size >= 1, f"--batch_size must be at least 1, got {values.batch_size}")
  _check(values.learning_rate > 0, f"--learning_rate must be positive, got {values.learning_rate}")
  _check(0 <= values.dropout < 1, f"--dropout must be in [0, 1), got {values.dropout}")
  _check(values.l2 >= 0, f"--l2 must not be negative, got {values.l2}")
  _check(0 <= values.rotation <= 180, f"--rotation must be 0-180 degrees, got {values.rotation}")
  _check(0 <= values.zoom < 1, f"--zoom must be in [0, 1), got {values.zoom}")
  _check(0 <= values.shift < 1, f"--shift must be in [0, 1), got {values.shift}")
  _check(values.cache_views >= 1, f"--cache_views must be at least 1, got {values.cache_views}")
  _check(values.image_size is None or values.image_size >= 16,
         f"--image_size must be at least 16, got {values.image_size}")
  weights = values.weights
  if values.model == "cnn":
    _check(weights == "none", f"--weights={weights}: the cnn has no pretrained weights; use --weights=none")
    _check(values.fine_tune_layers is None,
           "--fine_tune_layers applies to the pretrained backbones (resnet50, vgg16, inceptionv3), not the cnn")
  else:
    _check(weights in ("imagenet", "none") or os.path.isfile(weights),
           f"--weights={weights}: expected imagenet, none or the path of an existing .h5 weights file")
  _check(values.fine_tune_layers is None or values.fine_tune_layers >= 0,
         f"--fine_tune_layers must not be negative, got {values.fine_tune_layers}")
  if values.init_from:
    _check(values.init_from.endswith(".keras") and os.path.isfile(values.init_from),
           f"--init_from={values.init_from}: expected an existing .keras model file, e.g. runs/r50/best.keras")
  _check(not os.path.exists(os.path.join(values.workdir, "final.keras")),
         f"--workdir={values.workdir} holds a finished run (final.keras): pass a new --workdir")
  fine_tune_layers = values.fine_tune_layers
  if fine_tune_layers is None and values.model != "cnn" and (weights != "none" or values.init_from):
    fine_tune_layers = 0  # a pretrained backbone starts frozen; a random one trains whole (None)
  augmentation = data.Augmentation(flip=values.flip, rotation=values.rotation, zoom=values.zoom,
                                    shift=values.shift) if values.augment else data.Augmentation.none()
  return Config(
      dataset=values.dataset, data_dir=values.data_dir, model=values.model, weights=weights,
      fine_tune_layers=fine_tune_layers, init_from=values.init_from, epochs=values.epochs,
      batch_size=values.batch_size, learning_rate=values.learning_rate, dropout=values.dropout,
      l2=values.l2, oversample=values.oversample, class_weights=values.class_weights,
      augmentation=augmentation, image_size=values.image_size, cache=values.cache,
      feature_cache=values.feature_cache, cache_views=values.cache_views,
      precision=values.precision, strategy=values.strategy, workdir=values.workdir, seed=values.seed,
      deterministic=values.deterministic, tensorboard_graph=values.tensorboard_graph)


def flagfile(values: flags.FlagValues = flags.FLAGS) -> str:
  """This module's flags as set for the run, one per line: usable with --flagfile."""
  lines = [flag.serialize() for flag in values.get_flags_for_module(__name__) if flag.value is not None]
  return "\n".join(lines) + "\n"
