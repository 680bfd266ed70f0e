"""A build gives the same examples serially, on a process pool and as a Beam pipeline."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mammo_tfds import generation
from mammo_tfds.synthetic import synthetic_dataset_builder


def _build(data_dir, monkeypatch, workers=1, beam=False):
  monkeypatch.setenv("MAMMO_BUILD_WORKERS", str(workers))
  builder = synthetic_dataset_builder.Builder(config="tiny", data_dir=str(data_dir))
  download_config = tfds.download.DownloadConfig()
  if beam:
    import apache_beam as beam_lib  # pylint: disable=import-outside-toplevel
    download_config = tfds.download.DownloadConfig(
        beam_options=beam_lib.options.pipeline_options.PipelineOptions(["--runner=DirectRunner"]))
  builder.download_and_prepare(download_config=download_config)
  return builder


def _examples(builder):
  """split -> {source: example as numpy}, independent of storage order."""
  result = {}
  for split in builder.info.splits:
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    result[split] = {ex["source"]: ex for ex in tfds.as_numpy(dataset)}
  return result


def _assert_same(left, right):
  assert left.keys() == right.keys()
  for split in left:
    assert left[split].keys() == right[split].keys()
    for source, example in left[split].items():
      other = right[split][source]
      for name, value in example.items():
        np.testing.assert_array_equal(value, other[name], err_msg=f"{split}/{source}/{name}")


def test_pool_and_beam_builds_equal_the_serial_build(tmp_path, monkeypatch):
  serial = _examples(_build(tmp_path / "serial", monkeypatch, workers=1))
  _assert_same(serial, _examples(_build(tmp_path / "pool", monkeypatch, workers=2)))
  _assert_same(serial, _examples(_build(tmp_path / "beam", monkeypatch, beam=True)))
  assert sum(len(v) for v in serial.values()) == 94


def test_bad_worker_count_is_a_clear_error(monkeypatch):
  monkeypatch.setenv("MAMMO_BUILD_WORKERS", "two")
  with pytest.raises(ValueError, match="MAMMO_BUILD_WORKERS"):
    generation.build_workers()


def _worker_pid(_):
  return os.getpid()


def test_one_build_forks_its_workers_once(monkeypatch):
  """Every map inside worker_pool() (a scan, then each split) runs on the same processes."""
  monkeypatch.setenv("MAMMO_BUILD_WORKERS", "2")
  with generation.worker_pool():
    first = set(generation.parallel_map(_worker_pid, list(range(8))))
    second = set(generation.parallel_map(_worker_pid, list(range(8))))
  assert os.getpid() not in first
  assert len(first | second) <= 2
  outside = set(generation.parallel_map(_worker_pid, list(range(8))))
  assert not outside & (first | second)  # a map outside a build gets (and ends) its own pool


_FAULTS_OF_PREPROCESSING = """
import resource, sys
import numpy as np
from mammo_tfds import generation, imaging
if sys.argv[1] == "keep":
  assert generation.keep_freed_memory()
pixels = np.zeros((2294, 1914), np.uint8)
pixels[200:2000, :1500] = 120
def images():
  for _ in range(5):
    imaging.encode_png(imaging.preprocess(pixels.copy(), 600).image, 600)
images()  # the first round faults its memory in, either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
images()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.slow  # counts the machine's page faults: glibc- and kernel-dependent, so not in the default run
def test_kept_memory_stops_page_faults_per_image():
  """keep_freed_memory: preprocessing a CMMD-sized image reuses memory instead of faulting it in."""

  def faults(mode):
    run = subprocess.run([sys.executable, "-c", _FAULTS_OF_PREPROCESSING, mode], capture_output=True, text=True,
                         check=True)
    return int(run.stdout.strip().splitlines()[-1])

  default, kept = faults("default"), faults("keep")
  assert default > 5000  # about 6,000 a 2294x1914 image (24 MB) with glibc's defaults
  assert kept < default / 20
