"""The layout of mammo_train, checked: commands are leaves, files stay readable, models need no TensorFlow."""
import ast
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from mammo_train.models import classifiers

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "mammo_train"
# The command modules: `python -m mammo_train[.<name>]`. A new command is added here.
COMMANDS = ("__main__", "tune", "evaluate", "baselines", "predict", "export", "cv", "compare")
MAX_LINES = 450


def _imported_modules(path: pathlib.Path) -> set:
  """Every mammo_train module `path` imports, as dotted names (`from a import b` gives a.b and a)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      found.add(node.module)
      found.update(f"{node.module}.{alias.name}" for alias in node.names)
  return {name for name in found if name.split(".")[0] == "mammo_train"}


def test_no_command_imports_another_command():
  commands = {f"mammo_train.{name}" for name in COMMANDS if (PACKAGE / f"{name}.py").exists()}
  assert {"mammo_train.tune", "mammo_train.evaluate", "mammo_train.predict"} <= commands
  for module in sorted(PACKAGE.rglob("*.py")):
    imported = _imported_modules(module) & commands
    assert not imported, f"{module.relative_to(PACKAGE.parent)} imports the command(s) {sorted(imported)}"


def test_the_import_check_sees_a_command_import(tmp_path):
  """The check above would fail on a command importing another, in either spelling."""
  for line in ("from mammo_train import config, tune", "import mammo_train.evaluate"):
    (tmp_path / "cv.py").write_text(line + "\n")
    assert _imported_modules(tmp_path / "cv.py") & {"mammo_train.tune", "mammo_train.evaluate"}


def test_no_file_is_longer_than_the_limit():
  long = {str(path.relative_to(PACKAGE.parent)): count for path in PACKAGE.rglob("*.py")
          if (count := len(path.read_text().splitlines())) > MAX_LINES}
  assert not long, f"over {MAX_LINES} lines: {long}"


# Run in a fresh interpreter where `import tensorflow` fails. Without an installed non-TF Keras
# backend (none here: no JAX, no PyTorch), Keras itself is a stub, which still proves that
# nothing on the models' import path reaches TensorFlow; with JAX, the cnn is built and scored.
_WITHOUT_TENSORFLOW = """
import importlib.util, os, sys
from unittest import mock
sys.modules["tensorflow"] = None
if importlib.util.find_spec("jax") is None:
  sys.modules["keras"] = mock.MagicMock()
else:
  os.environ["KERAS_BACKEND"] = "jax"
from mammo_train.models import classifiers
import numpy as np
assert classifiers.p_malignant(np.array([[0.2], [0.9]])).tolist() == [0.2, 0.9]
if importlib.util.find_spec("jax") is not None:
  model = classifiers.build("cnn", 32, 2, "none", 0.5, 0.0)
  scores = classifiers.p_malignant(np.asarray(model.predict(np.zeros((2, 32, 32, 1), "uint8"), verbose=0)))
  assert scores.shape == (2,)
print("imported without tensorflow")
"""


def test_models_import_without_tensorflow():
  done = subprocess.run([sys.executable, "-c", _WITHOUT_TENSORFLOW], capture_output=True, text=True,
                        cwd=PACKAGE.parent, timeout=300, check=False)
  assert done.returncode == 0 and "imported without tensorflow" in done.stdout, done.stderr[-2000:]


def test_the_tensorflow_shim_does_block_tensorflow():
  """A module that imports TensorFlow fails under the same shim (the check above could fail)."""
  done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['tensorflow'] = None\n"
                         "from mammo_train.inputs import data"], capture_output=True, text=True,
                        cwd=PACKAGE.parent, timeout=300, check=False)
  assert done.returncode != 0 and "tensorflow" in done.stderr


def test_p_malignant_reads_the_last_column_of_a_binary_output_only():
  assert classifiers.p_malignant(np.array([[0.7, 0.3], [0.1, 0.9]])).tolist() == [0.3, 0.9]
  with pytest.raises(ValueError, match="not a binary classifier"):
    classifiers.p_malignant(np.ones((2, 3)) / 3)


def test_a_keras_the_backup_was_not_checked_against_is_refused(monkeypatch, tmp_path):
  import keras  # pylint: disable=import-outside-toplevel
  from mammo_train.training import checkpoints  # pylint: disable=import-outside-toplevel
  checkpoints.AtomicBackup(str(tmp_path / "backup"))  # the installed Keras is accepted
  monkeypatch.setattr(keras, "__version__", "3.99.0")
  with pytest.raises(RuntimeError, match="Keras 3.99.0 is not a version"):
    checkpoints.AtomicBackup(str(tmp_path / "backup"))


def test_a_tfds_the_builders_were_not_checked_against_is_refused(monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from mammo_tfds import generation  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(tfds, "__version__", "4.10.0")
  with pytest.raises(RuntimeError, match="tensorflow-datasets 4.10.0 is not a version"):  # before any work
    generation.ParallelBuilder._download_and_prepare(object(), None, None)  # pylint: disable=protected-access
