"""`python -m mammo_train.baselines`'s flags and the `Baselines` config."""
import dataclasses

from absl import flags

from mammo_train.config import fields
from mammo_train.config.fields import flag
from mammo_train.config.shared import BASELINES, Protocol, check, check_protocol, data_dir_flag, dataset_flag, \
    dataset_of, flag_names, require_positive, split_of


@dataclasses.dataclass(frozen=True, kw_only=True)
class Baselines:
  dataset: str = dataset_flag("cmmd")
  data_dir: str | None = data_dir_flag()
  split: str = flag("test", "Split to score the baselines on (fitted on train, thresholds on validation; "
                    "'all' includes the training images, so only test is a fair score).")
  workdir: str = flag(None, "Folder for one report per baseline.")
  baselines: tuple = flag(BASELINES, "Which baselines to run.")
  image_size: int = flag(256, "Side of the downscaled image for pixel_logistic.")
  batch_size: int = flag(64, "Images per SGD step of pixel_logistic.")
  epochs: int = flag(3, "Passes of SGD over the training split for pixel_logistic.")
  protocol: Protocol = fields.nested(Protocol, seed="Seed of SGD and of the bootstrap.")


def define_baselines_flags(values: flags.FlagValues = flags.FLAGS):
  fields.define(Baselines, values)


def baselines_from_flags(values: flags.FlagValues = flags.FLAGS) -> Baselines:
  check(values.workdir, "--workdir is required: the folder the baseline reports are written to")
  dataset_of(values)
  split_of(values)
  unknown = set(values.baselines) - set(BASELINES)
  check(values.baselines and not unknown,
        f"--baselines={','.join(values.baselines)}: expected some of {','.join(BASELINES)}")
  require_positive(values, "batch_size", "epochs")
  check(values.image_size >= 8, f"--image_size must be at least 8, got {values.image_size}")
  check_protocol(values)
  return fields.read(Baselines, values)


BASELINES_FLAGS = flag_names(define_baselines_flags)
