"""Every command line the documentation shows still parses.

README.md and docs/*.md are the user's interface to the commands; a renamed or
dropped flag leaves them telling people to type something that fails. This
test takes every `python -m mammo_train[.X] ...` and `tfds build ...` from
their code blocks (and from inline code that is a whole command), and checks
that the module exists and that every `--flag` / `--noflag` is one the command
defines, as its own `--helpfull` lists it (one subprocess per command, all
started at once). For `tfds build` the dataset folder must exist and the flags
must be `tfds build` flags. Values are not checked: the docs write
placeholders in CAPITALS (DATA, PATH/TO/TCIA) where a user puts their own.
"""
import dataclasses
import functools
import importlib.util
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TFDS_BUILD = "tfds build"
# Commands announced in the docs whose modules are being added; skipped, with
# the reason, until the module exists. Any other missing module fails.
PENDING: set = set()
_SEPARATORS = {"&&", "||", ";", "|", "&"}
_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE = re.compile(r"`([^`\n]+)`")
# A help line that defines flags: absl's `  --[no]name: text`, `  -v,--name: text`,
# argparse's `  --name TYPE, --noname TYPE   text`, `  -c [str], --config [str]`.
_HELP_LINE = re.compile(r"^  -")
_HELP_FLAG = re.compile(r"--(\[no\])?([A-Za-z0-9][\w-]*)")


@dataclasses.dataclass(frozen=True)
class Command:
  """One documented command line: where it is, what it runs, its arguments."""
  where: str
  program: str  # "mammo_train.X" or TFDS_BUILD
  args: tuple

  def __str__(self):
    return f"{self.where}: {self.program} {' '.join(self.args)}"


def _logical_lines(text: str):
  """(line number, line) of code-block lines, continuations joined, and of whole inline commands."""
  in_block, pending, start = False, "", 0
  for number, line in enumerate(text.splitlines(), 1):
    if _FENCE.match(line):
      in_block, pending = not in_block, ""
      continue
    if not in_block:
      for span in _INLINE.findall(line):
        # A bare `tfds build` in prose names the command; with a dataset it is a command line.
        if re.match(r"(\S*python3? -m mammo_train|\S*tfds build \S)", span):
          yield number, span
      continue
    if not pending:
      start = number
    if line.rstrip().endswith("\\"):
      pending += line.rstrip()[:-1] + " "
      continue
    yield start, pending + line
    pending = ""


def _segments(tokens):
  """Splits a token list at shell separators (&&, ;, |)."""
  segment = []
  for token in tokens:
    if token in _SEPARATORS:
      yield segment
      segment = []
    else:
      segment.append(token)
  yield segment


def _command(where: str, segment):
  """The Command a shell segment runs, or None when it runs something else."""
  while segment and re.fullmatch(r"[A-Za-z_]\w*=.*", segment[0]):  # VAR=value prefixes
    segment = segment[1:]
  if len(segment) >= 3 and re.search(r"(^|/)python3?$", segment[0]) and segment[1] == "-m" \
      and segment[2].split(".")[0] == "mammo_train":
    return Command(where, segment[2], tuple(segment[3:]))
  if len(segment) >= 2 and re.search(r"(^|/)tfds$", segment[0]) and segment[1] == "build":
    return Command(where, TFDS_BUILD, tuple(segment[2:]))
  return None


def documented_commands(path: pathlib.Path, root: pathlib.Path = REPO):
  """Every mammo_train / tfds build command shown in one Markdown file (places relative to root)."""
  commands = []
  for number, line in _logical_lines(path.read_text()):
    if "mammo_train" not in line and TFDS_BUILD not in line:
      continue
    where = f"{path.relative_to(root)}:{number}"
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
      tokens = list(lexer)
    except ValueError as error:
      # A command line that does not tokenise is itself a documentation bug.
      commands.append(Command(where, "unparsable", (f"{error}: {line.strip()}",)))
      continue
    commands.extend(c for s in _segments(tokens) if (c := _command(where, s)))
  return commands


def help_flags(help_text: str) -> frozenset:
  """Flag names a --helpfull text defines, both spellings of absl's booleans."""
  names = set()
  for line in help_text.splitlines():
    if not _HELP_LINE.match(line):
      continue
    head = re.split(r": |\s{2,}", line.strip(), maxsplit=1)[0]
    for negatable, name in _HELP_FLAG.findall(head):
      names.add(name)
      if negatable:
        names.add("no" + name)
  return frozenset(names)


def _argv(program: str):
  if program == TFDS_BUILD:
    return [str(pathlib.Path(sys.executable).parent / "tfds"), "build", "--helpfull"]
  return [sys.executable, "-m", program, "--helpfull"]


def _module_exists(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:
    return False


ALL_COMMANDS = [c for doc in DOCS for c in documented_commands(doc)]


@functools.lru_cache(maxsize=None)
def _all_help() -> dict:
  """program -> its --helpfull flags, for every program the docs use that exists.

  The subprocesses start together (each imports TensorFlow for seconds), and
  run from the repository root so that this checkout is the one imported.
  """
  programs = {c.program for c in ALL_COMMANDS
              if c.program == TFDS_BUILD or (c.program != "unparsable" and _module_exists(c.program))}
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
             TF_CPP_MIN_LOG_LEVEL="3")
  running = {p: subprocess.Popen(_argv(p), cwd=REPO, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for p in sorted(programs)}
  helps = {}
  for program, process in running.items():
    out, err = process.communicate(timeout=300)
    flags = help_flags(out)
    assert "helpfull" in flags, f"`{program} --helpfull` listed no flags (exit {process.returncode}):\n{err[-2000:]}"
    helps[program] = flags
  return helps


def test_docs_show_commands():
  """The extraction finds the commands (guards against a parser that finds nothing, so passes)."""
  programs = {c.program for c in ALL_COMMANDS}
  assert {TFDS_BUILD, "mammo_train", "mammo_train.evaluate", "mammo_train.predict"} <= programs
  assert len(ALL_COMMANDS) >= 20


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=str)
def test_documented_command_parses(command):
  assert command.program != "unparsable", f"{command.where}: a command line that does not tokenise: {command.args[0]}"
  if command.program != TFDS_BUILD and not _module_exists(command.program):
    if command.program in PENDING:
      pytest.skip(f"{command.program} is documented ahead of its module, which does not exist yet")
    pytest.fail(f"{command.where}: no module {command.program}")
  flags = _all_help()[command.program]
  used = [a[2:].split("=", 1)[0] for a in command.args if a.startswith("--")]
  unknown = [f"--{name}" for name in used if name not in flags]
  assert not unknown, f"{command}: {command.program} defines no {', '.join(unknown)}"
  if command.program == TFDS_BUILD:
    positional = [a for a in command.args if not a.startswith("-")]
    assert positional, f"{command}: names no dataset folder"
    folder = REPO / positional[0]
    assert positional[0].startswith("mammo_tfds/") and list(folder.glob("*_dataset_builder.py")), \
        f"{command}: {positional[0]} is not a dataset folder of this repository"


@pytest.mark.parametrize("text, expected", [
    ("  --[no]augment: Augment.\n    --oversample).\n  -v,--verbosity: level\n", {"augment", "noaugment", "verbosity"}),
    ("  --overwrite bool, --nooverwrite bool\n  -c [str], --config [str]\n  --num_shards [int]    The\n",
     {"overwrite", "nooverwrite", "config", "num_shards"}),
])
def test_help_flags(text, expected):
  """Continuation lines of a description (`    --oversample).`) are not definitions."""
  assert help_flags(text) == expected


def test_extraction_handles_the_doc_forms(tmp_path):
  doc = tmp_path / "x.md"
  doc.write_text("\n".join([
      "`python -m mammo_train.evaluate --model=M` in prose; `--flag` alone is not a command",
      "```",
      "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/tfds build mammo_tfds/synthetic --data_dir=D",
      "python -m mammo_train --dataset=cmmd \\",
      "    --oversample --workdir=runs/x          # a comment --not_a_flag",
      "MAMMO_BUILD_WORKERS=1 tfds build mammo_tfds/cmmd --config='{\"name\": \"a b\"}'",
      "tensorboard --logdir=runs",
      "```",
  ]))
  found = [(c.where, c.program, c.args) for c in documented_commands(doc, root=tmp_path)]
  assert found == [
      ("x.md:1", "mammo_train.evaluate", ("--model=M",)),
      ("x.md:3", TFDS_BUILD, ("mammo_tfds/synthetic", "--data_dir=D")),
      ("x.md:4", "mammo_train", ("--dataset=cmmd", "--oversample", "--workdir=runs/x")),
      ("x.md:6", TFDS_BUILD, ("mammo_tfds/cmmd", '--config={"name": "a b"}')),
  ]


# Pages announced in the docs that another change is writing; skipped, with
# the reason, until they exist. Any other missing page fails.
PENDING_PAGES: set = set()
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: pathlib.Path) -> set:
  """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
  return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
          for line in page.read_text().splitlines() if re.match(r"#{1,6} ", line)}


def _links():
  for doc in DOCS:
    for number, line in enumerate(doc.read_text().splitlines(), 1):
      for target in _LINK.findall(line):
        if not re.match(r"[a-z]+:", target):
          yield pytest.param(doc, target, id=f"{doc.relative_to(REPO)}:{number}: {target}")


@pytest.mark.parametrize("doc, target", list(_links()))
def test_documented_link_resolves(doc, target):
  """Pages moved from the README must leave no link pointing at nothing."""
  path, _, anchor = target.partition("#")
  page = (doc.parent / path).resolve() if path else doc
  where = page.relative_to(REPO).as_posix() if page.is_relative_to(REPO) else str(page)
  if not page.exists() and where in PENDING_PAGES:
    pytest.skip(f"{where} is announced ahead of the change that writes it")
  assert page.exists(), f"{doc.relative_to(REPO)}: link to {target}: no {where}"
  if anchor:
    assert anchor in _anchors(page), f"{doc.relative_to(REPO)}: link to {target}: no such heading in {where}"
