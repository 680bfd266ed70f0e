"""What a finished evaluation leaves on disk (`write_predictions`), read back (`load`) so that several can be
compared on the same examples.

Four kinds of folder hold one model's scores on a dataset:

- an evaluation folder (`mammo_train.evaluate`'s workdir): predictions.csv
  (one row per image: source, patient_id, laterality, view, label, then
  `score`, P(malignant), for a binary task, or one `p_<class>` column per
  class otherwise), metrics.json (the dataset's name, version, split and
  class names; for a binary task the thresholds that were applied, chosen on
  validation, and how: a multi-class evaluation decides by argmax);
- a training run: its `eval/` folder is that evaluation;
- a cross-validation folder: `cv/` holds the same two files over the pooled
  out-of-fold predictions, predictions.csv with one more column, `fold`;
- one baseline of a `mammo_train.baselines` workdir (BASELINES/pixel_logistic):
  the same two files, so a model can be compared with it.

An image is identified by its `source` (the file it was built from,
relative to the dataset's manual dir), which is unique within a dataset.
Two folders are comparable only if they scored the same examples: same
dataset name and version, same split, the same classes, the same set of
sources, with the same labels, patients and breasts (and, for cv, each in
the same fold).
"""
import csv
import dataclasses
import json
import pathlib

import numpy as np

from mammo_train.evaluation import assessment
from mammo_train.inputs import data

PREDICTIONS = "predictions.csv"
METRICS = "metrics.json"


class NotComparableError(ValueError):
  """Folders that cannot be compared: not an evaluation, or not scored on the same examples."""


@dataclasses.dataclass
class Scored:
  """One model's evaluation, its rows ordered by source."""
  name: str
  folder: pathlib.Path
  dataset: str
  version: str
  split: str
  class_names: tuple
  sources: np.ndarray
  predictions: assessment.Predictions
  operating: assessment.OperatingPoint | None  # None for multi-class: argmax decisions
  folds: np.ndarray | None = None
  described: str = ""  # metrics.json's "model": a model path, or "baseline NAME: how" for a baseline


def score_columns(class_names) -> list:
  """predictions.csv's score columns."""
  return ["score"] if len(class_names) == 2 else [f"p_{name}" for name in class_names]


def kind(class_names) -> str:
  """"binary (benign / malignant)" or "3-class (fatty / fatty-glandular / dense)": how refusals name a task."""
  return f"{'binary' if len(class_names) == 2 else f'{len(class_names)}-class'} ({' / '.join(class_names)})"


def write_predictions(workdir, builder, split, target: assessment.Predictions, class_names) -> pathlib.Path:
  """workdir/predictions.csv: one row per scored image (source, patient, laterality, view, label, score),
  the rows `mammo_train.predict` writes for the same files, so the two can be compared."""
  metadata = data.split_metadata(builder, split, ("source",))
  scores = np.asarray(target.scores, dtype=float)
  path = pathlib.Path(workdir) / PREDICTIONS
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["source", "patient_id", "laterality", "view", "label", *score_columns(class_names)])
    for i, label in enumerate(target.labels):
      writer.writerow([metadata["source"][i], metadata["patient_id"][i], metadata["laterality"][i],
                       metadata["view"][i], class_names[int(label)], *np.atleast_1d(scores[i]).tolist()])
  return path


def evaluation_folder(path) -> pathlib.Path:
  """The folder holding predictions.csv for a run (eval/), a cv folder (cv/) or an evaluation folder."""
  path = pathlib.Path(path)
  for candidate in (path / "cv", path / "eval", path):
    if (candidate / PREDICTIONS).is_file():
      if not (candidate / METRICS).is_file():
        raise NotComparableError(f"{candidate}: {PREDICTIONS} without {METRICS} (an unfinished evaluation?)")
      return candidate
  inside = sorted(candidate.parent.name for candidate in path.glob(f"*/{PREDICTIONS}"))
  if inside:  # a baselines workdir, or a folder of evaluations: the example is one that decides by its scores
    example = next((name for name in inside if not _own_decisions(path / name)), inside[0])
    raise NotComparableError(f"{path}: holds evaluations in its folders, not one itself: name one of them "
                             f"({', '.join(inside)}), e.g. {path / example}")
  raise NotComparableError(f"{path}: not a training run, evaluation, cv or baseline folder (no {PREDICTIONS} in "
                           "it, its eval/ or its cv/)")


def _own_decisions(folder: pathlib.Path) -> bool:
  """Whether the evaluation in `folder` records decisions not made from its scores (`assessment.OWN_DECISIONS`)."""
  try:
    return json.loads((folder / METRICS).read_text()).get("decisions") == assessment.OWN_DECISIONS
  except (OSError, ValueError, AttributeError):
    return False


def load(path, name: str | None = None) -> Scored:
  """Reads one folder (`evaluation_folder`); a damaged or unsuitable one is a NotComparableError naming it."""
  folder = evaluation_folder(path)
  try:
    stored = json.loads((folder / METRICS).read_text())
    dataset = stored["dataset"]
    what = (dataset["name"], str(dataset["version"]), dataset["split"])
    class_names = tuple(dataset.get("class_names", ()))
    threshold = stored.get("threshold")
    operating = threshold and assessment.OperatingPoint(threshold["values"], threshold["how"],
                                                        threshold.get("rule"), threshold.get("target_recall"),
                                                        threshold.get("by_fold"))
    with open(folder / PREDICTIONS, newline="") as f:
      rows = list(csv.DictReader(f))
  except (OSError, ValueError, KeyError, TypeError) as error:
    raise NotComparableError(f"{folder}: unreadable evaluation ({error!r})") from None
  if len(class_names) < 2:
    raise NotComparableError(f"{folder / METRICS}: no class names (dataset.class_names) to read labels by")
  if stored.get("decisions") == assessment.OWN_DECISIONS:
    raise NotComparableError(f"{folder}: its decisions are its own, not made from its scores (the majority and "
                             "prior_random baselines: constant scores): compare pairs models that decide by their "
                             "scores")
  if len(class_names) == 2 and not operating:
    raise NotComparableError(f"{folder / METRICS}: a binary evaluation without the thresholds it applied")
  columns = score_columns(class_names)
  missing = [name for name in ("source", *columns) if name not in (rows[0] if rows else ())]
  if missing:
    raise NotComparableError(f"{folder / PREDICTIONS}: no rows, or no {' / '.join(missing)} column for the "
                             f"{kind(class_names)} task its {METRICS} names")
  rows.sort(key=lambda row: row["source"])
  sources = np.array([row["source"] for row in rows])
  repeated = sources[1:][sources[1:] == sources[:-1]]
  if len(repeated):
    raise NotComparableError(f"{folder / PREDICTIONS}: source {repeated[0]} appears more than once")
  try:
    labels = np.array([class_names.index(row["label"]) for row in rows])
    scores = np.array([[float(row[name]) for name in columns] for row in rows])
    scores = scores[:, 0] if len(class_names) == 2 else scores
    predictions = assessment.Predictions(labels, scores, np.array([row["patient_id"] for row in rows]),
                                         np.array([row["laterality"] for row in rows]))
  except ValueError as error:
    raise NotComparableError(f"{folder / PREDICTIONS}: {error}") from None
  except KeyError as error:
    raise NotComparableError(f"{folder / PREDICTIONS}: no column {error}") from None
  folds = np.array([row["fold"] for row in rows]) if "fold" in rows[0] else None
  if folds is not None:  # a cv folder: each unit decided at its own fold's thresholds (`OperatingPoint.by_fold`)
    predictions.features = {"fold": folds}
  return Scored(name or str(path), folder, *what, class_names, sources, predictions, operating or None, folds,
                str(stored.get("model") or ""))


def check_same_examples(scored: list) -> None:
  """Raises NotComparableError, naming the first difference, unless all scored the very same examples."""
  first = scored[0]
  for other in scored[1:]:
    where = f"{other.folder} against {first.folder}"
    for what in ("dataset", "version", "split"):
      if getattr(other, what) != getattr(first, what):
        raise NotComparableError(f"{where}: different {what} ({getattr(other, what)} vs {getattr(first, what)})")
    if other.class_names != first.class_names:
      mixed = (len(other.class_names) == 2) != (len(first.class_names) == 2)
      raise NotComparableError(f"{where}: {'a binary and a multi-class task' if mixed else 'different classes'} "
                               f"({kind(other.class_names)} vs {kind(first.class_names)})")
    if (first.folds is None) != (other.folds is None):
      raise NotComparableError(f"{where}: one is cross-validated, the other a single split")
    if not np.array_equal(other.sources, first.sources):
      missing = sorted(set(first.sources) ^ set(other.sources))
      raise NotComparableError(f"{where}: different examples ({len(missing)} sources in one only, e.g. "
                               f"{missing[0]})" if missing else f"{where}: different examples")
    if not other.predictions.same_examples(first.predictions):
      raise NotComparableError(f"{where}: the same sources with different labels, patients or breasts")
    if first.folds is not None and not np.array_equal(other.folds, first.folds):
      raise NotComparableError(f"{where}: different folds (cross-validated with another fold assignment)")
