"""Turn a list of independent work items into examples, on all cores or on Beam.

Every mammo builder makes its examples item by item (a file, a breast, a
patient) with no state shared between items. That lets one per-item function
serve two engines:

* a plain `tfds build` runs it in a pool of worker processes
  (`MAMMO_BUILD_WORKERS`, default: all cores; 1 = in this process), ordered,
  so the output is identical to a serial build;
* `tfds build ... --beam_pipeline_options=...` (or a DownloadConfig with Beam
  options) runs it as an Apache Beam pipeline, for collections larger than
  one machine (Dataflow, Flink, Spark).

The per-item function returns a list of `(key, example)` pairs, `Skip`
records and `audit.Seen` records; skips are logged and counted by the
builder's SkipLog (plain build) or logged and counted as a Beam metric (Beam
build). A plain build also writes the audit (`mammo_tfds.audit`): every file
it looked at, its fate and the decisions made about it, as `audit.csv` and
`audit.html` beside `dataset_info.json`; a Beam build does not.
"""
import contextlib
import ctypes
import ctypes.util
import dataclasses
import multiprocessing
import os
from typing import Callable, Iterable, Iterator, List, Union

import tensorflow_datasets as tfds
from absl import logging

from mammo_tfds import audit, builder_configs, skips
from mammo_tfds.reasons import Reason


@dataclasses.dataclass(frozen=True)
class Skip:
  """An input left out of the dataset, with the reason (a `reasons.Reason` code) and details."""
  path: str
  reason: Reason
  detail: str = ""


Outcome = Union[tuple, Skip]
ItemFn = Callable[[object], List[Outcome]]


def build_workers() -> int:
  value = os.environ.get("MAMMO_BUILD_WORKERS", "").strip()
  if not value:
    return os.cpu_count() or 1
  if not value.isdigit() or int(value) < 1:
    raise ValueError(f"MAMMO_BUILD_WORKERS must be a positive integer, got {value!r}")
  return int(value)


def _only_examples(outcomes: List[Outcome]):
  """Beam: keeps the examples, logs and counts the skips (the audit's records are dropped)."""
  import apache_beam as beam  # pylint: disable=import-outside-toplevel
  for outcome in outcomes:
    if isinstance(outcome, Skip):
      logging.warning("skipping %s: %s (%s)", outcome.path, outcome.reason, outcome.detail)
      beam.metrics.Metrics.counter("mammo", f"skipped: {outcome.reason}").inc()
    elif isinstance(outcome, tuple):
      yield outcome


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
  """Asks glibc to reuse freed memory instead of handing it back to the kernel.

  Each source image passes through a dozen 4-17 MB temporaries (file bytes,
  pixels, masks, crop, padded square). By default glibc maps and unmaps
  blocks that size, so every image faults its memory in afresh: on 2294x1914
  CMMD files that was 2.0 of 10.5 s of a serial pass over 100 files spent in
  the kernel. Keeping up to `trim_threshold` of freed heap cut that to 0.3 s
  and the first pass from 30 to 18 ms a file.
  It holds for the rest of the process and is inherited by forked workers.
  Returns False where it cannot apply (not glibc).
  """
  name = ctypes.util.find_library("c")
  try:
    libc = ctypes.CDLL(name)
    mallopt = libc.mallopt
  except (OSError, AttributeError, TypeError):
    return False
  return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


# The pool of the build in progress (`worker_pool`), or None.
_active_pool = None


def _fork_pool():
  """fork: workers inherit the loaded modules (builders that `tfds build` loads
  from a folder are not importable by name in a fresh process). They run
  numpy / Pillow / pydicom only, never TF."""
  return multiprocessing.get_context("fork").Pool(build_workers())


@contextlib.contextmanager
def worker_pool():
  """Keeps one pool of `build_workers()` processes for every `parallel_map` in the block.

  A build maps over its items several times (a scan, then each split); forking
  the builder process once instead of each time saves about 0.1 s a map here.
  """
  global _active_pool  # pylint: disable=global-statement
  if build_workers() == 1 or _active_pool is not None:
    yield
    return
  with _fork_pool() as pool:
    _active_pool = pool
    try:
      yield
    finally:
      _active_pool = None


def parallel_map(fn: Callable, items: list) -> Iterator:
  """fn(item) for each item, in order, on `build_workers()` processes.

  Inside `worker_pool()`, streamed from its pool. Elsewhere (a scan called on
  its own), on a pool of its own whose results are all collected before the
  first is yielded: a pool left open in a suspended generator is torn down
  whenever the generator is garbage-collected, and a consumer that stopped
  early (strict mode raising on a skip) then hung in that teardown.
  """
  if build_workers() == 1 or len(items) < 2:
    yield from map(fn, items)
  elif _active_pool is not None:
    yield from _active_pool.imap(fn, items, chunksize=1)
  else:
    with _fork_pool() as pool:
      results = pool.map(fn, items, chunksize=1)
    yield from results


KNOWN_TFDS = ("4.9.",)  # ParallelBuilder._download_and_prepare overrides a private of these


class ParallelBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the mammo builders: `_generate_examples(items)` maps `_item_fn()` over items.

  A dataset is built at 600x600 unless it lists configs of its own; other
  sizes are JSON configs of `builder_configs.MammoConfig` (its docstring).
  """

  BUILDER_CONFIGS = [builder_configs.MammoConfig(name="600", description="Stored 600x600.")]
  DEFAULT_CONFIG_NAME = "600"
  builder_config_cls = builder_configs.MammoConfig
  _use_beam = False

  def __init__(self, *, strict: bool | None = None, write_audit: bool = True, **kwargs):
    """`strict=True` (or MAMMO_STRICT=1) stops the build at the first skipped input; `write_audit=False`
    leaves out audit.csv / audit.html (and their thumbnails' cost)."""
    super().__init__(**kwargs)
    self.strict = skips.strict_from_env() if strict is None else strict
    self.skip_log = skips.SkipLog(self.name, self.strict)
    self.write_audit = write_audit
    self.audit = None  # the build's audit.Collector, made when a build starts
    self._final_data_path = self.data_path  # a build writes into a temporary folder renamed to this

  def _mammo_info(self, schema: dict, subgroups: dict | None = None, homepage: str | None = None):
    """The DatasetInfo of a mammo dataset: its features, (image, label) as supervised keys, and the
    subgroups its evaluation reports (mammo_train/evaluation/subgroups.py), kept in metadata.json."""
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(schema), supervised_keys=("image", "label"), homepage=homepage,
        metadata=tfds.core.MetadataDict(**({"subgroups": subgroups} if subgroups else {})))

  def _splits_of(self, by_split: dict) -> dict:
    """split -> its examples, for the splits that have items: TFDS cannot write an empty split, and
    only a tree of a few patients has one (it is logged)."""
    for split in [split for split in by_split if not by_split[split]]:
      logging.warning("%s: no items fall in split %r; it is left out", self.name, split)
    return {split: self._generate_examples(items, split) for split, items in by_split.items() if items}

  def _download_and_prepare(self, dl_manager, download_config):
    # Overrides TFDS's private GeneratorBasedBuilder._download_and_prepare (tensorflow_datasets/core/
    # dataset_builder.py) to run it inside the worker pool; only the TFDS versions checked are accepted.
    if not tfds.__version__.startswith(KNOWN_TFDS):
      raise RuntimeError(f"tensorflow-datasets {tfds.__version__} is not a version mammo_tfds's builders were "
                         f"checked against ({', '.join(KNOWN_TFDS)}x): install it as setup.cfg pins it")
    self._use_beam = bool(download_config.beam_options or download_config.beam_runner)
    self.audit = audit.Collector(self.info.features["label"].names)
    if self._use_beam:
      super()._download_and_prepare(dl_manager, download_config)
      return
    keep_freed_memory()
    with audit.recording(self.write_audit), worker_pool():
      super()._download_and_prepare(dl_manager, download_config)
    line = self._summary_line()
    if self.write_audit:
      for path, reason, detail in self.skip_log.entries:
        self.audit.skipped(path, reason, detail)
      self.audit.write(self.data_path, f"{self.name}/{self.builder_config.name} {self.version}: build audit", line)
      line += f"; audit: {self._final_data_path / audit.PAGE_NAME}"
    print(line, flush=True)
    if self.info.metadata is not None:  # kept with the dataset, in its metadata.json
      self.info.metadata["summary"] = line

  def _summary_line(self) -> str:
    """The line that ends a plain build: what was kept and what was skipped, and why."""
    kept = sum(split.num_examples for split in self.info.splits.values())
    return self.skip_log.summary(kept)

  def _item_fn(self) -> ItemFn:
    """A picklable callable: one work item -> list of (key, example) and Skip records.

    It must not hold open files or TF objects: it is sent to worker processes.
    """
    raise NotImplementedError

  def _generate_examples(self, items: Iterable, split: str = ""):
    """The examples of `items`, which all fall in `split` (the audit's split column)."""
    item_fn = self._item_fn()
    items = list(items)
    if self._use_beam:
      import apache_beam as beam  # pylint: disable=import-outside-toplevel
      return (beam.Create(items) | beam.Map(item_fn) | beam.FlatMap(_only_examples))
    return self._record(self.audit.outcomes(parallel_map(item_fn, items), split))

  def _record(self, results):
    for outcomes in results:
      for outcome in outcomes:
        if isinstance(outcome, Skip):
          self.skip_log.skip(outcome.path, outcome.reason, outcome.detail)
        else:
          yield outcome
