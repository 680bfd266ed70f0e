"""How every command starts and fails: absl flags in, one line and exit status 2 on a usage error.

A user who mistypes a flag, names a dataset that is not built or a model file
that is not there should read one line that says what is wrong, not a
traceback, and scripts should be able to tell such a mistake (status 2) from
a run that failed. Each entry point's `if __name__ == "__main__"` calls `run`.
"""
import sys

from absl import app, flags

from mammo_train import config
from mammo_train.inputs import data

# What a user can get wrong before any work starts; each message names the flag or file.
USAGE_ERRORS = (config.ConfigError, data.DatasetNotBuiltError)


def fail(prog: str, message) -> None:
  """Prints `prog: error: message` as one line on stderr and exits with status 2."""
  print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
  sys.exit(2)


def run(prog: str, define_flags, main, takes_paths: bool = False) -> None:
  """Defines the command's flags, parses them, and runs `main(argv)`; usage errors end in one line.

  Args:
    prog: the command's name as the user typed it, e.g. "mammo_train.evaluate".
    define_flags: defines the command's flags into the FlagValues it is given.
    main: the command; it resolves its config from flags.FLAGS and raises a
      USAGE_ERRORS exception for a bad value.
    takes_paths: the command takes positional arguments (files); otherwise
      any is refused, since it is most likely a flag typed without `--`.
  """
  define_flags(flags.FLAGS)
  app.run(lambda argv: invoke(prog, main, argv),
          flags_parser=lambda argv: parse(prog, flags.FLAGS, argv, takes_paths))


def parse(prog: str, values: flags.FlagValues, argv: list, takes_paths: bool = False) -> list:
  """Parses argv into `values`; a bad, unknown or stray flag ends in one line, status 2."""
  try:
    remaining = values(argv)
  except flags.Error as error:
    fail(prog, error)
  if len(remaining) > 1 and not takes_paths:
    fail(prog, f"unexpected arguments: {' '.join(remaining[1:])} (flags take the form --name=value)")
  return remaining


def invoke(prog: str, main, argv):
  """Runs an entry point's main on already parsed flags; a usage error ends in one line, status 2."""
  try:
    return main(argv)
  except USAGE_ERRORS as error:
    fail(prog, error)
