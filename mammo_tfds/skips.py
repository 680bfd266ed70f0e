"""Skip-and-count bookkeeping for builds, with a strict mode that stops instead.

Which bad inputs stop a build and which are skipped is decided per case in
each builder; every skip is logged with the file and the reason when it
happens and counted in one summary line at the end, so nothing is lost
silently. `strict=True` (or MAMMO_STRICT=1 for `tfds build`) turns every skip
into an error.
"""
import collections
import os

from absl import logging

from mammo_tfds.sources import SourceError


def strict_from_env() -> bool:
  return os.environ.get("MAMMO_STRICT", "").strip().lower() in ("1", "true", "yes")


class SkipLog:
  """Collects skipped inputs of one build, grouped by reason."""

  def __init__(self, dataset: str, strict: bool = False):
    self.dataset = dataset
    self.strict = strict
    self.skipped = collections.defaultdict(list)
    self.entries = []  # (path, reason, detail) of every skip, in order: the build audit's skipped rows

  def skip(self, path, reason: str, detail: str = ""):
    """Records that `path` is left out because of `reason` (or raises in strict mode)."""
    message = f"{path}: {reason}" + (f" ({detail})" if detail else "")
    if self.strict:
      raise SourceError(path, f"{reason}" + (f" ({detail})" if detail else "") + " [strict mode]")
    logging.warning("%s: skipping %s", self.dataset, message)
    self.skipped[reason].append(str(path))
    self.entries.append((str(path), reason, detail))

  def count(self) -> int:
    return sum(len(paths) for paths in self.skipped.values())

  def summary(self, kept: int) -> str:
    """One line for the end of the build, e.g. 'cmmd: kept 3744; skipped 2: 1 unreadable, ...'."""
    parts = [f"{len(paths)} {reason}" for reason, paths in sorted(self.skipped.items())]
    line = f"{self.dataset}: kept {kept} images; skipped {self.count()}"
    line += (": " + ", ".join(parts)) if parts else ""
    if not self.strict and self.count():
      line += " (MAMMO_STRICT=1 makes these errors)"
    return line
