"""Each flag is declared once, on its config field, and every command defines exactly its declared flags.

A command's flags are its configs' flag fields (`mammo_train.config.fields`) plus
a short, named list of flags that are no field (the augmentation switch, the
tuner's search lists). The checks below compare what absl defines with the
dataclass fields themselves, so a default or help that drifts, a flag defined
twice, or one DEFINEd beside the fields shows up here.
"""
import collections
import dataclasses

from absl import flags
import pytest

from mammo_train import config
from mammo_train.config import fields
from mammo_train.inputs import augmentations

TRAIN_ONLY = {"augment"}  # --noaugment turns the Augmentation fields' flags off
TUNE_ONLY = {"search", "dropout_range", "l2_range", "learning_rate_range"}  # give Search.ranges
# command -> (its define function, the configs whose flag fields it defines, its flags that are no field)
COMMANDS = {
    "train": (config.define_train_flags, (config.Train,), TRAIN_ONLY),
    "tune": (config.define_tune_flags, (config.Train, config.Search, config.Tune), TRAIN_ONLY | TUNE_ONLY),
    "cv": (config.define_cv_flags, (config.Train, config.CrossValidation), TRAIN_ONLY),
    "evaluate": (config.define_evaluate_flags, (config.Evaluate,), set()),
    "baselines": (config.define_baselines_flags, (config.Baselines,), set()),
    "predict": (config.define_predict_flags, (config.Predict,), set()),
    "export": (config.define_export_flags, (config.Export,), set()),
    "compare": (config.define_compare_flags, (config.Compare,), set()),
}


def _field_defaults(cls) -> dict:
  """name -> default of every field of `cls` and of the dataclasses its fields hold by default."""
  found = {}
  for field in dataclasses.fields(cls):
    if dataclasses.is_dataclass(field.default):
      found.update(_field_defaults(type(field.default)))
    if field.default is not dataclasses.MISSING:
      found[field.name] = field.default
  return found


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_flag_field_is_one_absl_flag_of_its_name_and_default(command):
  define, configs, not_fields = COMMANDS[command]
  values = flags.FlagValues()
  define(values)
  declared = [definition for cls in configs for definition in fields.definitions(cls)]
  twice = [name for name, count in collections.Counter(d.name for d in declared).items() if count > 1]
  assert not twice, f"{command}: flags declared on two fields: {twice}"
  defaults = {name: default for cls in configs for name, default in _field_defaults(cls).items()}
  for definition in declared:
    flag = values[definition.name]
    field_default = defaults[definition.name]
    assert flag.default == (list(field_default) if isinstance(field_default, tuple) else field_default), \
        f"{command} --{definition.name}: absl default {flag.default!r}, field default {field_default!r}"
    assert flag.help.endswith(definition.help)  # an enum flag's help starts with <choice|...>: 
    if definition.enum:
      assert flag.parser.enum_values == list(definition.enum)
  assert set(values) == getattr(config, f"{command.upper()}_FLAGS")
  assert set(values) - {d.name for d in declared} == not_fields


def test_the_protocol_and_augmentation_flags_fill_their_nested_configs():
  values = flags.FlagValues()
  config.define_train_flags(values)
  values(["prog", "--workdir=/tmp/w", "--seed=7", "--n_bootstrap=50", "--threshold_rule=youden",
          "--noflip", "--rotation=3"])
  train = config.train_from_flags(values)
  assert train.protocol == config.Protocol(threshold_rule="youden", target_recall=0.95, n_bootstrap=50, seed=7)
  assert train.seed == 7  # the trainer's one --seed seeds its protocol too
  assert train.augmentation == augmentations.Augmentation(flip=False, rotation=3.0, zoom=0.1, shift=0.05)
  values["augment"].value = False
  assert config.train_from_flags(values).augmentation == augmentations.Augmentation.none()


@dataclasses.dataclass(frozen=True)
class _Inner:
  level: int = fields.flag(1, "A marked field of a nested config.")
  seed: int = 0  # no flag of its own: the enclosing config's


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Scratch:
  name: str = fields.flag("a", "A string.")
  size: int | None = fields.flag(None, "An optional integer.")
  rate: float = fields.flag(0.5, "A float.")
  on: bool = fields.flag(True, "A boolean.")
  items: tuple = fields.flag(("x", "y"), "A list.")
  mode: str = fields.flag("fast", "An enum.", enum=("fast", "slow"))
  limit: float | str | None = fields.flag(None, "Text, converted by the command.", kind=str)
  seed: int = fields.flag(0, "The enclosing config's seed.")
  inner: _Inner = fields.nested(_Inner)
  derived: str  # given by the command


def test_define_takes_each_flags_type_from_its_field_and_read_builds_the_config():
  values = flags.FlagValues()
  fields.define(_Scratch, values)
  assert set(values) == {"name", "size", "rate", "on", "items", "mode", "limit", "seed", "level"}
  values(["prog", "--size=3", "--rate=0.25", "--noon", "--items=p,q,r", "--mode=slow", "--limit=0.4",
          "--seed=5", "--level=2"])
  read = fields.read(_Scratch, values, derived="d")
  assert read == _Scratch(name="a", size=3, rate=0.25, on=False, items=("p", "q", "r"), mode="slow", limit="0.4",
                          seed=5, inner=_Inner(level=2, seed=5), derived="d")
  with pytest.raises(flags.IllegalFlagValueError):
    values(["prog", "--mode=medium"])
  with pytest.raises(flags.IllegalFlagValueError):
    values(["prog", "--size=three"])
  with pytest.raises(TypeError, match="derived"):
    fields.read(_Scratch, values)  # a derived field the command forgot is an error, not a silent default


def test_a_flag_declared_on_two_fields_is_refused():
  @dataclasses.dataclass(frozen=True)
  class Twice:
    level: int = fields.flag(1, "Declared again by the nested config.")
    inner: _Inner = fields.nested(_Inner)

  with pytest.raises(flags.DuplicateFlagError):
    fields.define(Twice, flags.FlagValues())
