"""Test set-up shared by tests/ and the builders' own tests in mammo_tfds/.

Keeps TF's log noise out of test output, and splits the CPU into two logical
devices before TF initialises so `MirroredStrategy` can be tested without GPUs.
"""
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REPO = pathlib.Path(__file__).resolve().parent


def pytest_configure(config):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.get_logger().setLevel("ERROR")
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.ERROR)
  cpus = tf.config.list_physical_devices("CPU")
  tf.config.set_logical_device_configuration(
      cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """The real data folder (MAMMO_SHARED_DATA, default ../shared/data); skips when absent."""
  path = pathlib.Path(os.environ.get("MAMMO_SHARED_DATA", REPO.parent / "shared" / "data"))
  if not path.is_dir():
    pytest.skip(f"real data not found at {path}: set MAMMO_SHARED_DATA to the shared data folder")
  return path
