"""The build audit: every source file a build looked at, its fate and why, as `audit.csv` and `audit.html`.

A plain `tfds build` writes both beside `dataset_info.json`, with the
thumbnails of the page in `audit/`:

* `audit.csv`, one row per source file: `example` (it became an example),
  `roi` (a CBIS-DDSM ROI file that gave an example its lesion box),
  `skipped` (could not become one: the reason code and a message) or
  `left_out` (left out by design, e.g. normal films of an abnormality task:
  the reason and a message), and every decision
  made about it: patient, laterality, view and view modifiers, label, split,
  crop box, the chest wall's side and what decided it, and the rule that
  admitted the file as a mammogram.
* `audit.html`, a page to check those decisions by eye: each example's
  source image with the crop box drawn on it beside the stored image, grouped
  by split and label, every skipped and left-out file with its reason, counts at the top,
  filters by split, label, reason and view modifier. Plain HTML and a few
  lines of JavaScript; thumbnails are small JPEGs loaded lazily, so the page
  stays quick at CBIS-DDSM's ~3,100 films.

Thumbnails are made where the source pixels are (a build worker) and only
they travel back: `seen` is what a per-item function adds to its outcomes
next to each example. `write_page` knows nothing of builds (cards of images,
fields and filter attributes), so other commands can write the same kind of
page.
"""
import collections
import contextlib
import csv
import dataclasses
import html
import io
import pathlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

EXAMPLE, ROI, SKIPPED, LEFT_OUT = "example", "roi", "skipped", "left_out"
CSV_NAME, PAGE_NAME, THUMBNAIL_DIR = "audit.csv", "audit.html", "audit"
SOURCE_SIDE = 200  # longest side of a source thumbnail, pixels
STORED_SIDE = 160  # side of a stored-image thumbnail
JPEG_QUALITY = 70  # 3-6 kB a thumbnail at these sides
BOX_COLOUR = (255, 40, 40)

# Whether per-item functions make thumbnails. Off unless a plain build turns it on (`recording`):
# a Beam build does not write the audit, and its workers import this module afresh.
_recording = False


@contextlib.contextmanager
def recording(enabled: bool = True):
  """A block in which `seen` makes thumbnails (or not); worker processes forked inside it inherit that."""
  global _recording  # pylint: disable=global-statement
  before, _recording = _recording, enabled
  try:
    yield
  finally:
    _recording = before


@dataclasses.dataclass(frozen=True)
class Seen:
  """What a worker reports of one example besides the example: decisions and small thumbnails."""
  key: str
  chest_wall_by: str
  admitted_by: str = ""
  view_modifiers: Tuple[str, ...] = ()
  rois: Tuple[str, ...] = ()  # ROI files that gave the example its lesion boxes (CBIS-DDSM)
  source_thumbnail: bytes = b""
  stored_thumbnail: bytes = b""


def _jpeg(image: Image.Image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
  return buffer.getvalue()


def source_thumbnail(pixels: np.ndarray, crop_box) -> bytes:
  """A small JPEG of the source pixels with the crop box drawn on it."""
  height, width = pixels.shape[:2]
  scale = SOURCE_SIDE / max(height, width)
  image = Image.fromarray(pixels)
  image.thumbnail((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR,
                  reducing_gap=2.0)
  sy, sx = image.height / height, image.width / width
  y0, x0, y1, x1 = (int(v) for v in crop_box)
  image = image.convert("RGB")
  ImageDraw.Draw(image).rectangle([x0 * sx, y0 * sy, max(x0 * sx, x1 * sx - 1), max(y0 * sy, y1 * sy - 1)],
                                  outline=BOX_COLOUR, width=2)
  return _jpeg(image)


def stored_thumbnail(image: np.ndarray) -> bytes:
  """A small JPEG of the stored (size, size, 1) image."""
  small = Image.fromarray(np.asarray(image)[:, :, 0])
  small.thumbnail((STORED_SIDE, STORED_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
  return _jpeg(small)


def seen(key, pixels: np.ndarray, result, source_image=None, *, admitted_by: str = "", rois=()) -> Seen:
  """The audit's record of one example, made in the worker that preprocessed it.

  Args:
    key: the example's key.
    pixels: the source pixels `result` was made from (2-D uint8).
    result: its `imaging.Preprocessed`.
    source_image: the `sources.SourceImage` read, if any: its admission rule and view modifiers.
    admitted_by: the rule that admitted a file read without a SourceImage (e.g. a label table row).
    rois: ROI files read for the example.
  """
  thumbnails = {}
  if _recording:
    thumbnails = dict(source_thumbnail=source_thumbnail(pixels, result.crop_box),
                      stored_thumbnail=stored_thumbnail(result.image))
  return Seen(str(key), result.orientation,
              admitted_by=admitted_by or getattr(source_image, "admitted_by", ""),
              view_modifiers=tuple(getattr(source_image, "view_modifiers", ())), rois=tuple(rois), **thumbnails)


@dataclasses.dataclass
class Row:
  """One source file's line of audit.csv."""
  path: str
  fate: str
  reason: str = ""
  message: str = ""
  key: str = ""
  patient_id: str = ""
  laterality: str = ""
  view: str = ""
  view_modifiers: str = ""  # space-separated
  label: str = ""
  split: str = ""
  crop_box: str = ""  # "y0 x0 y1 x1", source pixels, end-exclusive
  chest_wall: str = ""  # side of the chest wall in the source: left / right
  chest_wall_by: str = ""  # what decided it (imaging.chest_wall_side)
  admitted_by: str = ""
  source_thumbnail: str = ""  # relative to the audit's folder
  stored_thumbnail: str = ""


COLUMNS = tuple(field.name for field in dataclasses.fields(Row))


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


class Collector:
  """The audit of one build, filled as outcomes pass (`outcomes`) and from the builder's own left-outs."""

  def __init__(self, label_names: Sequence[str]):
    self.label_names = list(label_names)
    self.rows: List[Row] = []
    self.thumbnails: Dict[str, bytes] = {}  # relative path -> JPEG

  def outcomes(self, results: Iterable[list], split: str) -> Iterable[list]:
    """Records the examples and their `Seen` records of `results` (per-item outcome lists) as rows of
    `split`; passes on each list without the `Seen` records. Skips are recorded from the skip log."""
    for outcome_list in results:
      seen_by_key = {item.key: item for item in outcome_list if isinstance(item, Seen)}
      for item in outcome_list:
        if isinstance(item, tuple):
          self.example(item[0], item[1], split, seen_by_key.get(str(item[0])))
      yield [item for item in outcome_list if not isinstance(item, Seen)]

  def example(self, key, example: dict, split: str, seen_record: Optional[Seen]):
    flipped = bool(example.get("flipped", False))
    row = Row(
        path=_text(example["source"]), fate=EXAMPLE, key=str(key), patient_id=_text(example["patient_id"]),
        laterality=str(example["laterality"]), view=str(example["view"]), label=self.label_names[int(example["label"])],
        split=split, crop_box=" ".join(str(int(v)) for v in example["crop_box"]),
        chest_wall="right" if flipped else "left")
    if seen_record is not None:
      row.chest_wall_by, row.admitted_by = seen_record.chest_wall_by, seen_record.admitted_by
      row.view_modifiers = " ".join(seen_record.view_modifiers)
      for kind, data in (("source", seen_record.source_thumbnail), ("stored", seen_record.stored_thumbnail)):
        if data:
          name = f"{THUMBNAIL_DIR}/{len(self.rows):05d}-{kind}.jpg"
          self.thumbnails[name] = data
          setattr(row, f"{kind}_thumbnail", name)
      for path in seen_record.rois:
        self.rows.append(Row(path=path, fate=ROI, message=f"ROI of {row.path}", key=row.key,
                             patient_id=row.patient_id, laterality=row.laterality, view=row.view, label=row.label,
                             split=split))
    self.rows.append(row)

  def skipped(self, path, reason: str, message: str = "", **fields):
    """A file that could not become an example (from the skip log)."""
    self._left(SKIPPED, path, reason, message, fields)

  def left_out(self, path, reason: str, message: str = "", **fields):
    """A file left out by design (e.g. a normal film of an abnormality task): counted apart from skips,
    as the build's summary line counts it."""
    self._left(LEFT_OUT, path, reason, message, fields)

  def _left(self, fate: str, path, reason: str, message: str, fields: dict):
    self.rows.append(Row(path=str(path), fate=fate, reason=str(reason), message=message,
                         **{name: str(value) for name, value in fields.items()}))

  def write(self, folder, title: str, summary: str = "") -> pathlib.Path:
    """Writes audit.csv, the thumbnails and audit.html (headed `title`, then `summary`) into `folder`;
    returns the page's path."""
    folder = pathlib.Path(folder)
    (folder / THUMBNAIL_DIR).mkdir(parents=True, exist_ok=True)
    for name, data in self.thumbnails.items():
      (folder / name).write_bytes(data)
    with open(folder / CSV_NAME, "w", newline="", encoding="utf-8") as stream:
      writer = csv.DictWriter(stream, fieldnames=COLUMNS)
      writer.writeheader()
      writer.writerows(dataclasses.asdict(row) for row in self.rows)
    page = folder / PAGE_NAME
    write_page(page, title, counts(self.rows), cards(self.rows), ("split", "label", "reason", "modifier"), summary)
    return page


def counts(rows: Sequence[Row]) -> List[Tuple[str, collections.Counter]]:
  """The page's count tables: fates, skips and left-outs by reason, examples per split and label."""
  examples = [row for row in rows if row.fate == EXAMPLE]
  return [
      ("Files", collections.Counter(row.fate for row in rows)),
      ("Skipped, by reason", collections.Counter(row.reason for row in rows if row.fate == SKIPPED)),
      ("Left out by design, by reason", collections.Counter(row.reason for row in rows if row.fate == LEFT_OUT)),
      ("Examples, by split and label", collections.Counter(f"{row.split} / {row.label}" for row in examples)),
      ("Examples, by view modifier",
       collections.Counter(row.view_modifiers or "(none)" for row in examples)),
  ]


@dataclasses.dataclass(frozen=True)
class Card:
  """One item of a page: images (thumbnail path, caption), fields (name, value), filter attributes."""
  images: Tuple[Tuple[str, str], ...]
  fields: Tuple[Tuple[str, str], ...]
  attributes: Tuple[Tuple[str, str], ...]  # filter name -> value ("|"-separated for several)


_FIELDS = ("path", "reason", "message", "label", "split", "patient_id", "laterality", "view", "view_modifiers", "crop_box",
           "chest_wall", "chest_wall_by", "admitted_by", "key")


def cards(rows: Sequence[Row]) -> List[Tuple[str, List[Card]]]:
  """The audit's rows as page groups: examples by split and label, then skipped, then left-out files.

  ROI files are listed on their example's card (field `roi_files`), not as
  cards of their own: CBIS-DDSM has about two per abnormality, and the page
  stays at one card per film.
  """
  groups = collections.defaultdict(list)
  order = {"train": 0, "validation": 1, "test": 2}
  rois = collections.defaultdict(list)
  for row in rows:
    if row.fate == ROI:
      rois[row.key].append(row.path)
  for row in rows:
    if row.fate == ROI:
      continue
    images = tuple((getattr(row, f"{kind}_thumbnail"), caption)
                   for kind, caption in (("source", "source, crop box in red"), ("stored", "stored"))
                   if getattr(row, f"{kind}_thumbnail"))
    fields = tuple((name, getattr(row, name)) for name in _FIELDS if getattr(row, name))
    if row.fate == EXAMPLE and rois.get(row.key):
      fields += (("roi_files", " ; ".join(rois[row.key])),)
    attributes = (("split", row.split), ("label", row.label), ("reason", row.reason),
                  ("modifier", "|".join(row.view_modifiers.split())))
    if row.fate == EXAMPLE:
      heading = (order.get(row.split, 3), f"{row.split or '(no split)'} / {row.label}")
    else:
      heading = (4, "Skipped") if row.fate == SKIPPED else (5, "Left out by design")
    groups[heading].append(Card(images, fields, attributes))
  return [(heading, groups[(rank, heading)]) for rank, heading in sorted(groups)]


# Every thumbnail gets a fixed box (lazy images without a size are laid out empty, all "near the viewport")
# and cards off screen are not rendered (content-visibility): a 3,100-film page rendered in 14 s instead of
# 23 in headless Chromium here, which fetches the images anyway; a page without them takes 5-7 s.
_STYLE = """
body{font:13px sans-serif;margin:1em;background:#fafafa}
table{border-collapse:collapse;margin:0 2em 1em 0;display:inline-table;vertical-align:top}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:8px}
.card{content-visibility:auto;contain-intrinsic-size:380px 420px;background:#fff;border:1px solid #ddd;
padding:4px;width:380px;overflow-wrap:anywhere}
.card img{background:#000;vertical-align:top;width:180px;height:180px;object-fit:contain}
.card figure{display:inline-block;margin:0 4px 0 0}
.card figcaption{font-size:11px;color:#666}
.card dl{margin:2px 0;display:grid;grid-template-columns:auto 1fr;column-gap:6px}
.card dt{color:#666}.card dd{margin:0}
#filters{position:sticky;top:0;background:#eee;padding:6px;margin-bottom:8px}
"""

_SCRIPT = """
function applyFilters(){
  var chosen={};
  document.querySelectorAll('#filters select').forEach(function(s){chosen[s.name]=s.value;});
  document.querySelectorAll('.card').forEach(function(c){
    var show=true;
    for(var name in chosen){
      if(chosen[name]&&(c.dataset[name]||'').split('|').indexOf(chosen[name])<0){show=false;}
    }
    c.style.display=show?'':'none';
  });
  document.querySelectorAll('section').forEach(function(s){
    var n=s.querySelectorAll('.card:not([style*="none"])').length;
    s.style.display=n?'':'none';
    s.querySelector('.shown').textContent=n;
  });
}
document.querySelectorAll('#filters select').forEach(function(s){s.addEventListener('change',applyFilters);});
"""


def _card_html(card: Card) -> str:
  attributes = "".join(f' data-{name}="{html.escape(value)}"' for name, value in card.attributes)
  figures = "".join(
      f'<figure><img loading="lazy" src="{html.escape(src)}" alt="{html.escape(caption)}">'
      f"<figcaption>{html.escape(caption)}</figcaption></figure>" for src, caption in card.images)
  fields = "".join(f"<dt>{html.escape(name)}</dt><dd>{html.escape(value)}</dd>" for name, value in card.fields)
  return f'<div class="card"{attributes}>{figures}<dl>{fields}</dl></div>'


def write_page(path, title: str, tables: Sequence[Tuple[str, collections.Counter]],
               groups: Sequence[Tuple[str, Sequence[Card]]], filters: Sequence[str], summary: str = ""):
  """Writes a self-contained page of count tables, filter menus and groups of cards.

  `summary` is a line of text under the title. Image paths in the cards are
  relative to the page. Each filter is a menu of
  the values its attribute takes on the cards; a card shows when it has every
  chosen value.
  """
  parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"]
  for heading, counter in tables:
    rows = "".join(f"<tr><td>{html.escape(str(name))}</td><td>{count}</td></tr>"
                   for name, count in sorted(counter.items())) or "<tr><td colspan=2>none</td></tr>"
    parts.append(f"<table><tr><th colspan=2>{html.escape(heading)}</th></tr>{rows}</table>")
  parts.append('<div id="filters">')
  for name in filters:
    values = sorted({value for _, group in groups for card in group for attribute, joined in card.attributes
                     if attribute == name for value in joined.split("|") if value})
    options = "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values)
    parts.append(f'<label>{html.escape(name)} <select name="{html.escape(name)}"><option value="">all</option>'
                 f"{options}</select></label> ")
  parts.append("</div>")
  for heading, group in groups:
    parts.append(f'<section><h2>{html.escape(heading)} (<span class="shown">{len(group)}</span>)</h2>'
                 f'<div class="cards">{"".join(_card_html(card) for card in group)}</div></section>')
  parts.append(f"<script>{_SCRIPT}</script></body></html>")
  pathlib.Path(path).write_text("".join(parts), encoding="utf-8")
