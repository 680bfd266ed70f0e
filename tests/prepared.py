"""Shared by the builder tests that write a manual dir: prepare a builder from it and read every example back."""
import tensorflow_datasets as tfds


def prepare_and_read(builder, manual_dir, beam=False):
  """(split, example) of every split of `builder` prepared from `manual_dir`, in file order.

  With `beam`, prepared under Beam's DirectRunner: the builders' Beam path
  must write what their plain path writes, and the tests compare the two.
  """
  options = {}
  if beam:
    import apache_beam  # pylint: disable=import-outside-toplevel
    options["beam_options"] = apache_beam.options.pipeline_options.PipelineOptions(["--runner=DirectRunner"])
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir), **options))
  for split in builder.info.splits:
    for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
      yield split, example
