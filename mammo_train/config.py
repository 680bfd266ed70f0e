"""Every command's flags, and the frozen configs they resolve to.

Each entry point (`python -m mammo_train`, `.tune`, `.evaluate`,
`.baselines`) defines its flags here with `define_<command>_flags` and
resolves them once with `<command>_from_flags` into a frozen, validated
dataclass; nothing below an entry point reads absl flags. Flags that several
commands share (dataset, data_dir, batch size, seed, threshold rule, target
recall, bootstrap resamples) are defined once, in one helper each, so their
names, defaults and help are the same everywhere. A bad value or combination
raises `ConfigError`, which `mammo_train.cli` prints as one line with exit
status 2.
"""
import dataclasses
import math
import os

from absl import flags

from mammo_train import data

MODELS = ("cnn", "resnet50", "vgg16", "inceptionv3")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
RUNTIMES = ("auto", "keras", "onnxruntime", "openvino")  # mammo_train.inference.runtimes
THRESHOLD_RULES = ("recall", "youden")
# The searched hyperparameters (named like their trainer flags) -> sampling scale.
HYPERPARAMETERS = {"dropout": "linear", "l2": "log", "learning_rate": "log"}
SEARCH_RANGES = {"dropout": ("0", "0.6"), "l2": ("1e-6", "1e-1"), "learning_rate": ("1e-5", "1e-2")}
TUNERS = ("hyperband", "bayesian", "random")
DEFAULT_MAX_TRIALS = 10  # of random and Bayesian searches
BASELINES = ("majority", "prior_random", "pixel_logistic", "age_logistic", "metadata_logistic")
EXPORT_FORMATS = ("saved_model", "tflite", "onnx")
FLAGS_FILE = "flags.txt"


class ConfigError(ValueError):
  """A flag value or combination a command cannot run with."""


def check(condition, message: str):
  if not condition:
    raise ConfigError(message)


# --- Shared flags: one definition each. -------------------------------------------------------------


def _define_shared(values: flags.FlagValues, *, dataset: str, batch_size: int, batch_help: str, seed_help: str):
  """The flags every command has: dataset, data dir, batch size, seed and the evaluation protocol."""
  flags.DEFINE_string("dataset", dataset, "Prepared TFDS dataset, optionally with a config: "
                      "cmmd, mias, mias/density, cbis_ddsm, rsna_screening, manifest, synthetic, synthetic/tiny.", flag_values=values)
  flags.DEFINE_string("data_dir", None, "TFDS data dir holding the prepared dataset (default: TFDS's own).",
                      flag_values=values)
  flags.DEFINE_integer("batch_size", batch_size, batch_help, flag_values=values)
  flags.DEFINE_integer("seed", 0, seed_help, flag_values=values)
  _define_protocol(values)


def _define_protocol(values: flags.FlagValues):
  flags.DEFINE_enum("threshold_rule", "recall", THRESHOLD_RULES, "How the operating threshold is chosen on "
                    "the validation split: the highest reaching --target_recall, or Youden's J.",
                    flag_values=values)
  flags.DEFINE_float("target_recall", 0.95, "Malignant recall the threshold must reach (rule 'recall').",
                     flag_values=values)
  flags.DEFINE_integer("n_bootstrap", 1000, "Patient-level bootstrap resamples of every interval.",
                       flag_values=values)


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How predictions are turned into decisions and scored (one protocol for models and baselines)."""
  threshold_rule: str = "recall"
  target_recall: float = 0.95
  n_bootstrap: int = 1000
  seed: int = 0


def _dataset(values: flags.FlagValues) -> str:
  try:
    data.qualified_name(values.dataset)
  except ValueError as error:
    raise ConfigError(f"--dataset: {error}") from None
  return values.dataset


def _positive(values: flags.FlagValues, *names: str):
  for name in names:
    check(values[name].value >= 1, f"--{name} must be at least 1, got {values[name].value}")


def _protocol(values: flags.FlagValues) -> Protocol:
  check(0 < values.target_recall <= 1, f"--target_recall must be in (0, 1], got {values.target_recall}")
  _positive(values, "n_bootstrap")
  return Protocol(values.threshold_rule, values.target_recall, values.n_bootstrap, values.seed)


def _model_file(flag: str, path: str | None) -> str:
  check(path, f"--{flag} is required: a saved .keras model, e.g. runs/r50/best.keras")
  check(os.path.isfile(path), f"--{flag}={path}: no such file")
  check(path.endswith(".keras"), f"--{flag}={path}: expected a .keras model file")
  return path


def _flag_names(define) -> set:
  scratch = flags.FlagValues()
  define(scratch)
  return set(scratch)


def flagfile(values: flags.FlagValues, names) -> str:
  """The named flags as set for a run, one per line: reusable with --flagfile."""
  lines = [values[name].serialize() for name in sorted(names) if values[name].value is not None]
  return "\n".join(lines) + "\n"


# --- python -m mammo_train -----------------------------------------------------------------------------


def _define_runtime(values: flags.FlagValues, what: str):
  flags.DEFINE_enum("runtime", "auto", RUNTIMES, f"Who runs {what}: auto = the fastest installed (openvino, "
                    "then onnxruntime, then keras; keras on a GPU or under mixed precision). The model is "
                    "converted once and checked against Keras on a few images before use.", flag_values=values)


def define_train_flags(values: flags.FlagValues = flags.FLAGS):
  """The trainer's flags (the tuner takes them too)."""
  _define_shared(values, dataset="synthetic", batch_size=16,
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
  _define_runtime(values, "the frozen backbone's pass over every image when the feature cache is computed")
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

  @property
  def frozen_backbone(self) -> bool:
    """Whether the backbone is frozen, so its features can be cached and only the head trained."""
    return self.model != "cnn" and self.fine_tune_layers == 0


def train_from_flags(values: flags.FlagValues = flags.FLAGS) -> Train:
  """The trainer's Config of the parsed flags; raises ConfigError on a bad value or combination."""
  check(values.workdir, "--workdir is required: the folder the run writes to")
  dataset = _dataset(values)
  check(not (values.oversample and values.class_weights),
        "--oversample and --class_weights both correct the class imbalance, and together correct it "
        "twice: pass one of them")
  _positive(values, "epochs", "batch_size", "cache_views")
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
    _model_file("init_from", values.init_from)
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
      protocol=_protocol(values))


TRAIN_FLAGS = _flag_names(define_train_flags)


# --- python -m mammo_train.tune ------------------------------------------------------------------------


def define_tune_flags(values: flags.FlagValues = flags.FLAGS):
  """The trainer's flags, plus the search's."""
  define_train_flags(values)
  define = dict(flag_values=values)
  flags.DEFINE_enum("tuner", "hyperband", TUNERS, "Search algorithm: Hyperband, Bayesian optimisation "
                    "or random search; each maximises the validation AUC.", **define)
  flags.DEFINE_integer("max_epochs", None, "Epochs a trial trains at most (Hyperband gives most trials "
                       "fewer). Default: --epochs.", **define)
  flags.DEFINE_integer("max_trials", None, f"Trials to run. Default: {DEFAULT_MAX_TRIALS} for random and "
                       "bayesian; Hyperband runs its brackets in full unless this caps it.", **define)
  flags.DEFINE_integer("hyperband_factor", 3, "Hyperband's reduction factor: each round keeps 1 in this "
                       "many trials and trains it this many times longer.", **define)
  flags.DEFINE_list("search", list(HYPERPARAMETERS), "Hyperparameters searched, from "
                    f"{','.join(HYPERPARAMETERS)}; the others take their trainer flag's value.", **define)
  for name, default in SEARCH_RANGES.items():
    flags.DEFINE_list(f"{name}_range", list(default), f"MIN,MAX of the {name} searched ({HYPERPARAMETERS[name]} "
                      "scale).", **define)
  flags.DEFINE_boolean("overwrite", False, "Delete the workdir's search and start over instead of resuming "
                       "it.", **define)


@dataclasses.dataclass(frozen=True)
class Search:
  """The tuner's own settings, resolved from its flags."""
  tuner: str
  max_epochs: int
  max_trials: int | None  # None: Hyperband's full brackets
  hyperband_factor: int
  ranges: dict  # the searched hyperparameters' (MIN, MAX)


@dataclasses.dataclass(frozen=True)
class Tune:
  train: Train  # the trainer settings every trial uses; searched ones take the trial's values
  search: Search
  overwrite: bool


def _range(values: flags.FlagValues, name: str) -> tuple:
  """--<name>_range as (MIN, MAX); a log-scale range must be positive, dropout's in [0, 1)."""
  raw = values[name + "_range"]
  flag = f"--{raw.name}={','.join(raw.value)}"
  try:
    low, high = (float(value) for value in raw.value)
  except ValueError:
    low = high = math.nan
  check(math.isfinite(low) and math.isfinite(high),
        f"{flag}: expected two numbers MIN,MAX, e.g. {','.join(raw.default)}")
  check(low < high, f"{flag}: MIN must be below MAX (to fix {name}, leave it out of --search and pass --{name})")
  if HYPERPARAMETERS[name] == "log":
    check(low > 0, f"{flag}: {name} is searched on a log scale, so MIN must be positive")
  else:
    check(low >= 0 and high < 1, f"{flag}: dropout must be in [0, 1)")
  return low, high


def tune_from_flags(values: flags.FlagValues = flags.FLAGS) -> Tune:
  """The tuner's config; raises ConfigError on a bad value or combination."""
  searched = set(values.search)
  check(searched and not searched - set(HYPERPARAMETERS),
        f"--search={','.join(values.search)}: expected one or more of {','.join(HYPERPARAMETERS)}")
  for name in HYPERPARAMETERS:
    check(name in searched or not values[name + "_range"].present,
          f"--{name}_range is given but {name} is not in --search={','.join(values.search)}")
  ranges = {name: _range(values, name) for name in HYPERPARAMETERS if name in searched}
  check(values.tuner == "hyperband" or not values["hyperband_factor"].present,
        f"--hyperband_factor applies to --tuner=hyperband, not --tuner={values.tuner}")
  check(values.hyperband_factor >= 2, f"--hyperband_factor must be at least 2, got {values.hyperband_factor}")
  check(values.max_trials is None or values.max_trials >= 1,
        f"--max_trials must be at least 1, got {values.max_trials}")
  check(values.max_epochs is None or values.max_epochs >= 1,
        f"--max_epochs must be at least 1, got {values.max_epochs}")
  train = train_from_flags(values)
  check(not (train.init_from and searched & {"dropout", "l2"}),
        f"--init_from={train.init_from} brings its own dropout and L2: search only the learning rate "
        "(--search=learning_rate)")
  max_trials = values.max_trials
  if max_trials is None and values.tuner != "hyperband":
    max_trials = DEFAULT_MAX_TRIALS
  search = Search(tuner=values.tuner, max_epochs=values.max_epochs or train.epochs, max_trials=max_trials,
                  hyperband_factor=values.hyperband_factor, ranges=ranges)
  return Tune(train, search, values.overwrite)


TUNE_FLAGS = _flag_names(define_tune_flags)


# --- python -m mammo_train.evaluate --------------------------------------------------------------------


def define_evaluate_flags(values: flags.FlagValues = flags.FLAGS):
  _define_shared(values, dataset="cmmd", batch_size=16, batch_help="Prediction batch size.",
                 seed_help="Bootstrap seed.")
  define = dict(flag_values=values)
  flags.DEFINE_string("model", None, "Saved Keras model (.keras) to evaluate.", **define)
  flags.DEFINE_string("split", "test", "Split to score: test, validation, train, or all (cross-dataset).",
                      **define)
  flags.DEFINE_string("workdir", None, "Report folder (default: eval-<dataset>-<split> beside the model).",
                      **define)
  flags.DEFINE_string("tb_logdir", None, "Also log the plots to TensorBoard here.", **define)
  flags.DEFINE_string("threshold", None, "A fixed threshold, or an operating_point.json, instead of "
                      "choosing one.", **define)
  flags.DEFINE_string("baselines_dir", None, "A `mammo_train.baselines` workdir to compare with too.",
                      **define)


@dataclasses.dataclass(frozen=True)
class Evaluate:
  model: str
  dataset: str
  data_dir: str | None
  split: str
  workdir: str
  tb_logdir: str | None
  batch_size: int
  threshold: float | str | None  # a fixed value, an operating_point.json, or None: choose on validation
  baselines_dir: str | None
  protocol: Protocol


def _split(values: flags.FlagValues) -> str:
  check(values.split in data.SPLITS + ("all",),
        f"--split={values.split}: expected one of {', '.join(data.SPLITS + ('all',))}")
  return values.split


def _threshold(value: str | None):
  if value is None:
    return None
  try:
    threshold = float(value)
  except ValueError:
    check(os.path.isfile(value), f"--threshold={value}: neither a number nor an existing operating_point.json")
    return value
  check(0 <= threshold <= 1, f"--threshold={value}: a threshold on P(malignant) must be in [0, 1]")
  return threshold


def evaluate_from_flags(values: flags.FlagValues = flags.FLAGS) -> Evaluate:
  model = _model_file("model", values.model)
  dataset, split = _dataset(values), _split(values)
  _positive(values, "batch_size")
  check(values.baselines_dir is None or os.path.isdir(values.baselines_dir),
        f"--baselines_dir={values.baselines_dir}: no such folder")
  workdir = values.workdir or os.path.join(os.path.dirname(model),
                                           f"eval-{dataset.replace('/', '-')}-{split}")
  return Evaluate(model=model, dataset=dataset, data_dir=values.data_dir, split=split, workdir=workdir,
                  tb_logdir=values.tb_logdir, batch_size=values.batch_size,
                  threshold=_threshold(values.threshold), baselines_dir=values.baselines_dir,
                  protocol=_protocol(values))


EVALUATE_FLAGS = _flag_names(define_evaluate_flags)


# --- python -m mammo_train.baselines -------------------------------------------------------------------


def define_baselines_flags(values: flags.FlagValues = flags.FLAGS):
  _define_shared(values, dataset="cmmd", batch_size=64, batch_help="Images per SGD step of pixel_logistic.",
                 seed_help="Seed of SGD and of the bootstrap.")
  define = dict(flag_values=values)
  flags.DEFINE_string("split", "test", "Split to score the baselines on (fitted on train, thresholds on "
                      "validation; 'all' includes the training images, so only test is a fair score).", **define)
  flags.DEFINE_string("workdir", None, "Folder for one report per baseline.", **define)
  flags.DEFINE_list("baselines", list(BASELINES), "Which baselines to run.", **define)
  flags.DEFINE_integer("image_size", 256, "Side of the downscaled image for pixel_logistic.", **define)
  flags.DEFINE_integer("epochs", 3, "Passes of SGD over the training split for pixel_logistic.", **define)


@dataclasses.dataclass(frozen=True)
class Baselines:
  dataset: str
  data_dir: str | None
  split: str
  workdir: str
  names: tuple
  image_size: int
  batch_size: int
  epochs: int
  protocol: Protocol


def baselines_from_flags(values: flags.FlagValues = flags.FLAGS) -> Baselines:
  check(values.workdir, "--workdir is required: the folder the baseline reports are written to")
  dataset, split = _dataset(values), _split(values)
  unknown = set(values.baselines) - set(BASELINES)
  check(values.baselines and not unknown,
        f"--baselines={','.join(values.baselines)}: expected some of {','.join(BASELINES)}")
  _positive(values, "batch_size", "epochs")
  check(values.image_size >= 8, f"--image_size must be at least 8, got {values.image_size}")
  return Baselines(dataset=dataset, data_dir=values.data_dir, split=split, workdir=values.workdir,
                   names=tuple(values.baselines), image_size=values.image_size, batch_size=values.batch_size,
                   epochs=values.epochs, protocol=_protocol(values))


BASELINES_FLAGS = _flag_names(define_baselines_flags)


# --- python -m mammo_train.export ----------------------------------------------------------------------


def define_export_flags(values: flags.FlagValues = flags.FLAGS):
  define = dict(flag_values=values)
  flags.DEFINE_string("model", None, "A training run's .keras model, e.g. RUN_DIR/best.keras; the run folder "
                      "beside it gives the dataset, test metrics, threshold and calibration for the model card.",
                      **define)
  flags.DEFINE_enum("format", "saved_model", EXPORT_FORMATS, "saved_model (TF Serving), tflite (float32 and "
                    "dynamic-range int8) or onnx.", **define)
  flags.DEFINE_string("out", None, "Export folder; formats exported into one folder share one model card.",
                      **define)
  flags.DEFINE_string("data_dir", None, "TFDS data dir of the run's dataset, if not the one run.json names "
                      "(the test split is what each export is checked on).", **define)


@dataclasses.dataclass(frozen=True)
class Export:
  model: str
  format: str
  out: str
  data_dir: str | None


def export_from_flags(values: flags.FlagValues = flags.FLAGS) -> Export:
  model = _model_file("model", values.model)
  check(values.out, "--out is required: the folder the export and its model card are written to")
  run_json = os.path.join(os.path.dirname(model), "run.json")
  check(os.path.isfile(run_json), f"--model={model}: no run.json beside it: export a model of a training run "
        "(its workdir's best.keras or final.keras)")
  return Export(model=model, format=values.format, out=values.out, data_dir=values.data_dir)


EXPORT_FLAGS = _flag_names(define_export_flags)


# --- python -m mammo_train.predict ---------------------------------------------------------------------


def define_predict_flags(values: flags.FlagValues = flags.FLAGS):
  define = dict(flag_values=values)
  flags.DEFINE_string("run", None, "A training run's workdir: its run.json, eval/operating_point.json (the "
                      "validation-chosen thresholds) and eval/calibration.json are used.", **define)
  flags.DEFINE_string("model", None, "The model to score with (default: the run's best.keras).", **define)
  flags.DEFINE_string("out", None, "Folder for predictions.csv, predictions.json (and inputs/ with "
                      "--save_inputs).", **define)
  flags.DEFINE_string("manifest", None, "CSV with columns path, patient_id, laterality (and optionally view) "
                      "placing non-DICOM files into breasts.", **define)
  flags.DEFINE_boolean("save_inputs", False, "Also write the stored-size image the model saw for each input, "
                       "as OUT/inputs/<file name>.png, to check the crop.", **define)
  flags.DEFINE_boolean("explain", False, "Also write where the model looked, per scored input: OUT/explain/"
                       "<file name>.npy, the Grad-CAM heatmap of the malignant score mapped onto the source "
                       "image's pixels (float32, in [0, 1]), and .png, the source image as the reader windows it "
                       "with the heatmap over it.", **define)
  flags.DEFINE_integer("batch_size", 16, "Images per model call.", **define)
  _define_runtime(values, "the model stage (--explain's heatmaps always use Keras)")
  flags.DEFINE_boolean("allow_non_mammogram", False, "Score DICOMs that no rule of mammo_tfds.sources admits "
                       "as mammograms (Modality, SOP class, body part, view code + laterality): only for files "
                       "known to be mammograms with wrong tags.", **define)
  flags.DEFINE_boolean("allow_view_modifiers", False, "Score stereotactic and specimen images too (refused by "
                       "default: a screening model was not evaluated on them); other view modifiers are always "
                       "scored and named in the view_modifiers column.", **define)


@dataclasses.dataclass(frozen=True)
class Predict:
  run: str
  model: str | None
  out: str
  paths: tuple
  manifest: str | None
  save_inputs: bool
  batch_size: int
  allow_non_mammogram: bool
  explain: bool
  runtime: str
  allow_view_modifiers: bool = False


def predict_from_flags(values: flags.FlagValues, paths) -> Predict:
  check(values.run, "--run is required: the workdir of the training run whose model predicts")
  check(os.path.isdir(values.run), f"--run={values.run}: no such folder")
  check(values.out, "--out is required: the folder predictions are written to")
  check(paths, "no files given: pass DICOM / PGM / PNG / JPEG / TIFF files, folders or globs after the flags")
  if values.model:
    _model_file("model", values.model)
  check(values.manifest is None or os.path.isfile(values.manifest), f"--manifest={values.manifest}: no such file")
  _positive(values, "batch_size")
  return Predict(run=values.run, model=values.model, out=values.out, paths=tuple(paths), manifest=values.manifest,
                 save_inputs=values.save_inputs, batch_size=values.batch_size,
                 allow_non_mammogram=values.allow_non_mammogram, explain=values.explain,
                 allow_view_modifiers=values.allow_view_modifiers, runtime=values.runtime)


PREDICT_FLAGS = _flag_names(define_predict_flags)


# --- python -m mammo_train.compare ---------------------------------------------------------------------


def define_compare_flags(values: flags.FlagValues = flags.FLAGS):
  define = dict(flag_values=values)
  flags.DEFINE_string("workdir", None, "Folder for report.md, compare.json and the overlaid ROC curves.", **define)
  flags.DEFINE_integer("n_bootstrap", 1000, "Paired patient-bootstrap resamples of every interval.", **define)
  flags.DEFINE_integer("seed", 0, "Bootstrap seed.", **define)


@dataclasses.dataclass(frozen=True)
class Compare:
  workdir: str
  folders: tuple
  n_bootstrap: int
  seed: int


def compare_from_flags(values: flags.FlagValues, paths) -> Compare:
  check(values.workdir, "--workdir is required: the folder the comparison is written to")
  check(len(paths) >= 2, "give two or more training runs, evaluation folders or cv folders after the flags")
  for path in paths:
    check(os.path.isdir(path), f"{path}: no such folder")
  _positive(values, "n_bootstrap")
  return Compare(workdir=values.workdir, folders=tuple(paths), n_bootstrap=values.n_bootstrap, seed=values.seed)


COMPARE_FLAGS = _flag_names(define_compare_flags)
