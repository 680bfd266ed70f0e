"""review.html beside predictions.csv: each scored file's crop, stored input, score and decision, to check by eye.

The same kind of page as a build's audit.html (`mammo_tfds.audit.write_page`):
one card per scored file (its source with the crop box in red, the stored
input the model saw, and with `--explain` the heatmap overlay from
`explain/`), grouped by decision, with score, calibrated probability,
threshold and where the breast came from; one card per file that was not
scored, with the reason; counts at the top; filters by decision, view,
laterality and reason. Thumbnails are made by the workers that read the
files (`reading.prepare`) and written to `review/`.
"""
import collections
import pathlib
from typing import Optional

from mammo_tfds import audit

PAGE_NAME, THUMBNAIL_DIR = "review.html", "review"
_FIELDS = ("source", "score", "probability", "threshold", "decision", "patient_id", "laterality", "view",
           "placed_by", "not_placed", "orientation", "crop_box")


def _text(value) -> str:
  if isinstance(value, float):
    return f"{value:.4f}"
  if isinstance(value, list):
    return " ".join(str(v) for v in value)
  return "" if value is None else str(value)


def write(out_dir, result, image_rows: list, summary: str, explain_dir: Optional[str] = None) -> pathlib.Path:
  """Writes review.html and its thumbnails into `out_dir`; returns the page's path.

  Args:
    result: `predictor.Result` (its images in the order of `image_rows`).
    image_rows: `predictor.rows`' image rows.
    summary: the prediction's summary line, shown under the title.
    explain_dir: the heatmap overlays' folder relative to `out_dir`, if written.
  """
  out = pathlib.Path(out_dir)
  (out / THUMBNAIL_DIR).mkdir(parents=True, exist_ok=True)
  groups = collections.defaultdict(list)
  for number, (scored, row) in enumerate(zip(result.images, image_rows)):
    images = []
    for data, kind, caption in zip(scored.prepared.thumbnails, ("source", "input"),
                                   ("source, crop box in red", "stored input")):
      name = f"{THUMBNAIL_DIR}/{number:05d}-{kind}.jpg"
      (out / name).write_bytes(data)
      images.append((name, caption))
    if explain_dir and scored.name:
      images.append((f"{explain_dir}/{scored.name}.png", "heatmap (malignant)"))
    fields = tuple((name, _text(row[name])) for name in _FIELDS if _text(row.get(name)))
    attributes = (("decision", row["decision"]), ("view", _text(row["view"])),
                  ("laterality", _text(row["laterality"])), ("reason", ""))
    groups[f"decision: {row['decision']}"].append(audit.Card(tuple(images), fields, attributes))
  for failure in result.failures:
    groups["not scored"].append(audit.Card(
        (), (("source", failure.path), ("reason", failure.reason), ("detail", failure.detail)),
        (("decision", ""), ("view", ""), ("laterality", ""), ("reason", failure.reason))))
  tables = [("Files", collections.Counter({"scored": len(image_rows), "not scored": len(result.failures)})),
            ("Image decisions", collections.Counter(row["decision"] for row in image_rows)),
            ("Not scored, by reason", collections.Counter(failure.reason for failure in result.failures))]
  page = out / PAGE_NAME
  audit.write_page(page, "Predictions: review", tables, sorted(groups.items()),
                   ("decision", "view", "laterality", "reason"), summary)
  return page
