"""A build gives the same examples serially, on a process pool and as a Beam pipeline."""
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
