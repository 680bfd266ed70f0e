"""`python -m mammo_train.baselines`'s flags and the `Baselines` config."""
import dataclasses

from absl import flags

from mammo_train.config.shared import BASELINES, Protocol, check, dataset_of, define_shared, flag_names, \
    protocol_of, require_positive, split_of


def define_baselines_flags(values: flags.FlagValues = flags.FLAGS):
  define_shared(values, dataset="cmmd", batch_size=64, batch_help="Images per SGD step of pixel_logistic.",
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
  dataset, split = dataset_of(values), split_of(values)
  unknown = set(values.baselines) - set(BASELINES)
  check(values.baselines and not unknown,
        f"--baselines={','.join(values.baselines)}: expected some of {','.join(BASELINES)}")
  require_positive(values, "batch_size", "epochs")
  check(values.image_size >= 8, f"--image_size must be at least 8, got {values.image_size}")
  return Baselines(dataset=dataset, data_dir=values.data_dir, split=split, workdir=values.workdir,
                   names=tuple(values.baselines), image_size=values.image_size, batch_size=values.batch_size,
                   epochs=values.epochs, protocol=protocol_of(values))


BASELINES_FLAGS = flag_names(define_baselines_flags)
