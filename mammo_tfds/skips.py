"""Skip-and-count bookkeeping for builds, with a strict mode that stops instead.

Which bad inputs stop a build and which are skipped is decided per case in
each builder; every skip is logged with the file and the reason when it
happens and counted by its `Reason` code in one summary line at the end, so
nothing is lost silently. `strict=True` (or MAMMO_STRICT=1 for `tfds build`)
turns every skip into an error carrying the same code.
"""
import collections
import os

from absl import logging

from mammo_tfds.reasons import Reason
from mammo_tfds.sources import SourceError


def strict_from_env() -> bool:
  return os.environ.get("MAMMO_STRICT", "").strip().lower() in ("1", "true", "yes")


class SkipLog:
  """Collects skipped inputs of one build, grouped by reason code."""

  def __init__(self, dataset: str, strict: bool = False):
    self.dataset = dataset
    self.strict = strict
    self.skipped = collections.defaultdict(list)
    self.entries = []  # (path, reason, detail) of every skip, in order: the build audit's skipped rows

  def skip(self, path, reason: Reason, detail: str = ""):
    """Records that `path` is left out because of `reason` (or raises in strict mode).

    `reason` is a `Reason`; a builder's own phrase (a plain str) is counted
    under it as given and raised in strict mode as `Reason.unusable`.
    """
    message = f"{path}: {reason}" + (f" ({detail})" if detail else "")
    if self.strict:
      raise SourceError(path, f"{reason}" + (f" ({detail})" if detail else "") + " [strict mode]",
                        reason if isinstance(reason, Reason) else Reason.unusable)
    logging.warning("%s: skipping %s", self.dataset, message)
    self.skipped[reason].append(str(path))
    self.entries.append((str(path), reason, detail))

  def count(self) -> int:
    return sum(len(paths) for paths in self.skipped.values())

  def counts(self) -> dict:
    """{code: number of inputs skipped for it}, sorted by code."""
    return {str(reason): len(paths) for reason, paths in sorted(self.skipped.items())}

  def summary(self, kept: int) -> str:
    """One line for the end of the build, e.g. 'cmmd: kept 3744 images; skipped 2: 1 blank, 1 unreadable'."""
    parts = [f"{n} {reason}" for reason, n in self.counts().items()]
    line = f"{self.dataset}: kept {kept} images; skipped {self.count()}"
    line += (": " + ", ".join(parts)) if parts else ""
    if not self.strict and self.count():
      line += " (MAMMO_STRICT=1 makes these errors)"
    return line
