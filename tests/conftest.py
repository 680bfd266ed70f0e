"""Fixtures of the trainer tests: the synthetic "tiny" dataset, built once per session."""
import pathlib
import subprocess
import sys

import pytest

from mammo_train.inputs import data

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> pathlib.Path:
  """A TFDS data dir holding synthetic/tiny (94 images, 64x64).

  Built by the `tfds` command in a child process, so this process never
  imports (and registers) the builder: the trainer reads prepared files only.
  """
  data_dir = tmp_path_factory.mktemp("tfds")
  tfds_cli = pathlib.Path(sys.executable).parent / "tfds"
  subprocess.run([str(tfds_cli), "build", str(REPO / "mammo_tfds" / "synthetic"), "--config=tiny",
                  f"--data_dir={data_dir}"], cwd=data_dir, check=True, capture_output=True)
  return data_dir


@pytest.fixture(scope="session")
def tiny_builder(tiny_data_dir):
  return data.load_builder("synthetic/tiny", str(tiny_data_dir))
