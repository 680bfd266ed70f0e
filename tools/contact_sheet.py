"""Writes a contact sheet of a built mammo dataset, or of source files: every image as a thumbnail.

  python tools/contact_sheet.py --dataset=mias/density --data_dir=/tmp/tfds \
      --out=/tmp/mias_contact.png
  python tools/contact_sheet.py --files=../shared/data/real-mammograms --out=/tmp/real.png

With --files, each file (folders are searched recursively) goes through
`mammo_tfds.sources.read` and `mammo_tfds.imaging.preprocess` as a prediction
would take it, and shows as a pair: the source with the crop box in red, and
the stored image, captioned with what decided the chest wall's side; a file
that cannot be used shows its one-line reason instead.

For looking at the crops by eye: film labels cut away, chest wall on the
left, no breast tissue lost. Where examples carry `findings` with positions
(mini-MIAS), each is drawn as a red circle mapped into the stored frame the
way `mammo_tfds.imaging` maps it; a finding drawn off the breast means the
crop, the flip or the coordinate conversion is wrong.
"""
import pathlib
import textwrap

from absl import app
from absl import flags
from PIL import Image, ImageDraw
import tensorflow_datasets as tfds

from mammo_tfds import imaging, sources

_DATASET = flags.DEFINE_string("dataset", "mias/density", "Dataset name, with its config.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir it was built into.")
_SPLIT = flags.DEFINE_string("split", "all", "Split to show; 'all' shows every split.")
_OUT = flags.DEFINE_string("out", "/tmp/contact_sheet.png", "PNG to write.")
_THUMB = flags.DEFINE_integer("thumb", 128, "Side of one thumbnail in pixels.")
_COLUMNS = flags.DEFINE_integer("columns", 18, "Thumbnails per row.")
_FILES = flags.DEFINE_list("files", None, "Source files or folders to show instead of a built dataset.")


def _circles(example, size: int):
  """(row, col, radius) in stored pixels of each finding that has a position."""
  findings = example.get("findings")
  if findings is None:
    return []
  result = imaging.Preprocessed(example["image"], example["crop_box"], bool(example.get("flipped", False)))
  y0, x0, y1, x1 = (int(v) for v in example["crop_box"])
  scale = size / max(y1 - y0, x1 - x0)
  return [(*imaging.source_to_output(y, x, result, size), r * scale)
          for x, y, r in zip(findings["x"], findings["y"], findings["radius"]) if x >= 0]


def thumbnail(example, side: int) -> Image.Image:
  """The stored image at `side` pixels, findings circled, source name and label written on it."""
  image = example["image"][:, :, 0]
  size = image.shape[0]
  tile = Image.fromarray(image).convert("RGB")
  draw = ImageDraw.Draw(tile)
  width = max(2, size // 150)
  for row, col, radius in _circles(example, size):
    radius = max(radius, 3 * width)
    draw.ellipse([col - radius, row - radius, col + radius, row + radius], outline=(255, 0, 0), width=width)
  tile = tile.resize((side, side), Image.Resampling.BILINEAR)
  caption = f"{example['source'].decode().rsplit('/', 1)[-1].split('.')[0]} {int(example['label'])}"
  ImageDraw.Draw(tile).text((2, 1), caption, fill=(255, 255, 0))
  return tile


def sheet(examples, side: int, columns: int) -> Image.Image:
  rows = -(-len(examples) // columns)
  result = Image.new("RGB", (columns * side, rows * side), (40, 40, 40))
  for index, example in enumerate(examples):
    result.paste(thumbnail(example, side - 2), ((index % columns) * side + 1, (index // columns) * side + 1))
  return result


def source_files(paths) -> list:
  """Files under `paths` (folders recursively) that are not text or notes, sorted."""
  found = []
  for path in map(pathlib.Path, paths):
    found += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
  return [p for p in found if p.suffix.lower() not in (".md", ".txt", ".csv", ".json")]


def file_tile(path, side: int) -> Image.Image:
  """Source (crop box in red) beside the stored image, or the reason the file cannot be used."""
  tile = Image.new("RGB", (2 * side, side), (40, 40, 40))
  draw = ImageDraw.Draw(tile)
  try:
    image = sources.read(path)
    result = imaging.preprocess(image.pixels, imaging.DEFAULT_SIZE, str(path), image.chest_wall, image.laterality)
  except (sources.SourceError, imaging.BlankImageError) as error:
    draw.text((4, 14), "\n".join(textwrap.wrap(str(error).rsplit(": ", 1)[-1] if isinstance(
        error, imaging.BlankImageError) else error.problem, 2 * side // 7)), fill=(255, 128, 128))
  else:
    height, width = image.pixels.shape
    scale = side / max(height, width)
    source = Image.fromarray(image.pixels).resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                                   Image.Resampling.BILINEAR).convert("RGB")
    y0, x0, y1, x1 = (int(v) * scale for v in result.crop_box)
    ImageDraw.Draw(source).rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 0, 0), width=2)
    tile.paste(source, (0, 0))
    tile.paste(Image.fromarray(result.image[:, :, 0]).resize((side, side), Image.Resampling.BILINEAR), (side, 0))
    tags = "/".join(v for v in (image.laterality, image.view) if v)
    draw.text((side + 2, side - 12), f"{tags} {'flipped' if result.flipped else 'kept'} by {result.orientation}",
              fill=(255, 255, 0))
  draw.text((2, 1), pathlib.Path(path).name, fill=(255, 255, 0))
  return tile


def file_sheet(paths, side: int, columns: int) -> Image.Image:
  rows = -(-len(paths) // columns)
  result = Image.new("RGB", (columns * 2 * side, rows * side), (80, 80, 80))
  for index, path in enumerate(paths):
    result.paste(file_tile(path, side - 2), ((index % columns) * 2 * side + 1, (index // columns) * side + 1))
  return result


def load(dataset: str, data_dir: str, split: str):
  """Examples of one split, or of all splits, ordered by source file."""
  builder = tfds.builder(dataset, data_dir=data_dir)
  names = list(builder.info.splits) if split == "all" else [split]
  examples = [ex for name in names for ex in tfds.as_numpy(builder.as_dataset(split=name))]
  return sorted(examples, key=lambda ex: ex["source"])


def main(argv):
  del argv
  if _FILES.value:
    paths = source_files(_FILES.value)
    file_sheet(paths, _THUMB.value, min(_COLUMNS.value, len(paths))).save(_OUT.value)
    print(f"wrote {_OUT.value}: {len(paths)} files")
    return
  examples = load(_DATASET.value, _DATA_DIR.value, _SPLIT.value)
  sheet(examples, _THUMB.value, _COLUMNS.value).save(_OUT.value)
  print(f"wrote {_OUT.value}: {len(examples)} images")


if __name__ == "__main__":
  app.run(main)
