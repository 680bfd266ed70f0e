"""Config fields that are flags: a flag's name, type, default and help live on its config field.

A command's flag used to be written three times: its `flags.DEFINE_*` call, the
config dataclass's field, and the constructor call of `<command>_from_flags`
that copied one into the other, so a default or a type could drift between
them. Here a config dataclass marks a field as a flag with `flag(default,
help)`; `define` defines one absl flag per marked field (its name the field's,
its type the annotation's), and `read` builds the frozen config from the parsed
flags, given the fields whose value is derived (a resolved default, a value
built from several flags). A field holding a dataclass whose fields are flags
too (the evaluation protocol, the augmentation) is declared with `nested`.

Chosen over absl's `config_flags`, which would turn every documented
`--name=value` into `--config.name=value`: the command lines stay as they are.
"""
import dataclasses
import types
import typing

from absl import flags

_FLAG = "flag"  # field metadata keys
_NESTED = "nested_help"
_DEFINES = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
            bool: flags.DEFINE_boolean, tuple: flags.DEFINE_list}


@dataclasses.dataclass(frozen=True)
class Definition:
  """One flag, as a config field declares it; a tuple field is a comma-separated list flag."""
  name: str
  default: object
  help: str
  kind: type  # str, int, float, bool or tuple
  enum: tuple | None = None


def flag(default, help, *, enum=None, kind=None):  # pylint: disable=redefined-builtin
  """A config field that is the flag of its name. `kind` is the flag's type where the field's differs
  (e.g. a threshold field of `float | str | None` given as a string flag); `enum` its choices."""
  return dataclasses.field(default=default, metadata={_FLAG: (help, tuple(enum) if enum else None, kind)})


def nested(cls, **help):  # pylint: disable=redefined-builtin
  """A field holding a `cls` built from flags named like its fields: the fields `cls` marks with `flag`,
  and those given their help here (for a class that is no config, like augmentations.Augmentation, or a field whose
  meaning the command tells, like the protocol's seed). A field of `cls` that is neither takes the flag of
  its name that the enclosing config defines (the trainer's seed)."""
  return dataclasses.field(default=cls(), metadata={_NESTED: help})


def _kind(annotation) -> type:
  """The flag type of a field's annotation, `X | None` as X."""
  if isinstance(annotation, types.UnionType):
    (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
  return annotation


def definitions(cls) -> list:
  """Every flag `cls` declares, its nested configs' included, in field order."""
  found = []
  for field in dataclasses.fields(cls):
    if _FLAG in field.metadata:
      found.append(_definition(field))
    elif _NESTED in field.metadata:
      given = field.metadata[_NESTED]
      found += [_definition(inner, given.get(inner.name)) for inner in dataclasses.fields(field.type)
                if _FLAG in inner.metadata or inner.name in given]
  return found


def _definition(field: dataclasses.Field, help_text: str | None = None) -> Definition:
  own_help, enum, kind = field.metadata.get(_FLAG, (None, None, None))
  return Definition(field.name, field.default, help_text or own_help, kind or _kind(field.type), enum)


def define(cls, values: flags.FlagValues):
  """Defines the flags `cls` declares into `values`; help lists them under the config's module."""
  where = dict(flag_values=values, module_name=cls.__module__)
  for definition in definitions(cls):
    if definition.enum:
      flags.DEFINE_enum(definition.name, definition.default, definition.enum, definition.help, **where)
    else:
      default = list(definition.default) if definition.kind is tuple else definition.default
      _DEFINES[definition.kind](definition.name, default, definition.help, **where)


def read(cls, values: flags.FlagValues, **resolved):
  """The `cls` of the parsed flags: each flag field holds its flag's value, each nested config is built
  from the flags named like its fields, unless `resolved` gives the field's value."""
  settings = {}
  for field in dataclasses.fields(cls):
    if field.name in resolved:
      continue
    if _FLAG in field.metadata:
      settings[field.name] = _value(values, field.name)
    elif _NESTED in field.metadata:
      settings[field.name] = build(field.type, values)
  return cls(**settings, **resolved)


def build(cls, values: flags.FlagValues):
  """A nested config of the parsed flags: each of its fields holds the flag of its name."""
  return cls(**{field.name: _value(values, field.name) for field in dataclasses.fields(cls)})


def _value(values: flags.FlagValues, name: str):
  """A flag's value as a frozen config holds it: a list flag's as a tuple."""
  value = values[name].value
  return tuple(value) if isinstance(value, list) else value
