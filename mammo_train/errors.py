"""The usage error every layer raises, kept free of TensorFlow and absl so `models` imports it on any backend.

A bad flag value, a file that cannot be used or a combination that cannot run
raises `ConfigError` with one line that names the flag or file; the commands
(`mammo_train.cli`) print it and exit with status 2.
"""


class ConfigError(ValueError):
  """A flag value or combination a command cannot run with."""


def check(condition, message: str):
  """Raises ConfigError(message) unless condition holds."""
  if not condition:
    raise ConfigError(message)
