"""Writes a contact sheet of a built mammo dataset: every stored image as a thumbnail.

  python tools/contact_sheet.py --dataset=mias/density --data_dir=/tmp/tfds \
      --out=/tmp/mias_contact.png

For looking at the crops by eye: film labels cut away, chest wall on the
left, no breast tissue lost. Where examples carry `findings` with positions
(mini-MIAS), each is drawn as a red circle mapped into the stored frame the
way `mammo_tfds.imaging` maps it; a finding drawn off the breast means the
crop, the flip or the coordinate conversion is wrong.
"""
from absl import app
from absl import flags
from PIL import Image, ImageDraw
import tensorflow_datasets as tfds

from mammo_tfds import imaging

_DATASET = flags.DEFINE_string("dataset", "mias/density", "Dataset name, with its config.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir it was built into.")
_SPLIT = flags.DEFINE_string("split", "all", "Split to show; 'all' shows every split.")
_OUT = flags.DEFINE_string("out", "/tmp/contact_sheet.png", "PNG to write.")
_THUMB = flags.DEFINE_integer("thumb", 128, "Side of one thumbnail in pixels.")
_COLUMNS = flags.DEFINE_integer("columns", 18, "Thumbnails per row.")


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


def load(dataset: str, data_dir: str, split: str):
  """Examples of one split, or of all splits, ordered by source file."""
  builder = tfds.builder(dataset, data_dir=data_dir)
  names = list(builder.info.splits) if split == "all" else [split]
  examples = [ex for name in names for ex in tfds.as_numpy(builder.as_dataset(split=name))]
  return sorted(examples, key=lambda ex: ex["source"])


def main(argv):
  del argv
  examples = load(_DATASET.value, _DATA_DIR.value, _SPLIT.value)
  sheet(examples, _THUMB.value, _COLUMNS.value).save(_OUT.value)
  print(f"wrote {_OUT.value}: {len(examples)} images")


if __name__ == "__main__":
  app.run(main)
