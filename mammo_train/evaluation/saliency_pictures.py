"""What a reader sees of a saliency map: heatmaps over the image they explain, and the grid of the most
confident right and wrong cases of a split (the evaluation report shows it).
"""
import pathlib

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from mammo_train.evaluation import explain, metrics, report


def overlay(pixels: np.ndarray, heatmap: np.ndarray, colormap: str = "jet", opacity: float = 0.5) -> np.ndarray:
  """RGB uint8: the grayscale image with the heatmap coloured over it, more opaque where hotter.

  Where the heatmap is 0 the image shows unchanged, so the breast stays
  readable around the hot spots.
  """
  pixels = np.asarray(pixels)
  heatmap = np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1)
  if pixels.ndim != 2 or heatmap.shape != pixels.shape:
    raise ValueError(f"overlay: expected a 2-D image and a heatmap of its shape, got {pixels.shape} and "
                     f"{heatmap.shape}")
  # uint8 colours and float32 [H, W, 1] factors: a full-field film's overlay
  # costs a few bytes per pixel and channel, not matplotlib's float64 RGBA.
  colour = colormaps[colormap](heatmap, bytes=True)[..., :3]
  alpha = (np.float32(opacity) * heatmap)[..., None]
  blended = (1 - alpha) * pixels[..., None].astype(np.float32) + alpha * colour
  return np.round(blended, out=blended).astype(np.uint8)


def write_overlay(path, pixels: np.ndarray, heatmap: np.ndarray) -> list:
  """Writes PATH.png (the overlay on the source image) and PATH.npy (the heatmap, float32); returns both paths.

  `pixels` is the source image as the reader gives it (2-D uint8) and
  `heatmap` the map in its pixels (`to_source`).
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  png, npy = path.with_name(path.name + ".png"), path.with_name(path.name + ".npy")
  Image.fromarray(overlay(pixels, heatmap)).save(png)
  np.save(npy, np.asarray(heatmap, dtype=np.float32))
  return [png, npy]


# Rows of the grid figure: (label, whether the decision was right).
GRID_ROWS = ((1, True), (1, False), (0, True), (0, False))


def grid_cases(labels, scores, threshold: float, per_row: int) -> list:
  """Per row of GRID_ROWS, the indices of its `per_row` most confident cases.

  Most confident: highest scores first where the decision was malignant,
  lowest first where it was benign (so the wrong rows show the worst
  mistakes).
  """
  labels, scores = np.asarray(labels), np.asarray(scores)
  decided = scores >= threshold
  rows = []
  for label, correct in GRID_ROWS:
    members = np.flatnonzero((labels == label) & ((decided == bool(label)) == correct))
    decided_malignant = (label == 1) == correct
    order = np.argsort(-scores[members] if decided_malignant else scores[members], kind="stable")
    rows.append(members[order][:per_row])
  return rows


def grid_figure(images, heatmaps, labels, scores, threshold: float, per_row: int = 6, boxes=None,
                class_names=metrics.BINARY_NAMES) -> Figure:
  """Test images with their heatmaps: malignant / benign x correct / wrong, one row each (`grid_cases`).

  For binary tasks: `scores` are P(malignant), decided at `threshold`. The score is above each case; a row without a case says so. `images`
  [N, S, S(, 1)] and `heatmaps` [N, S, S] are in the model's input frame;
  `boxes`, optional, per image [K, 4] lesion boxes in that frame
  (`box_to_output`), drawn as outlines.
  """
  images, scores = np.asarray(images), np.asarray(scores)
  images = images[..., 0] if images.ndim == 4 else images
  figure = Figure(figsize=(1.6 * per_row, 1.8 * len(GRID_ROWS)), dpi=100, layout="constrained")
  axes = figure.subplots(len(GRID_ROWS), per_row, squeeze=False)
  for row, ((label, correct), members) in enumerate(zip(GRID_ROWS, grid_cases(labels, scores, threshold,
                                                                               per_row))):
    for column in range(per_row):
      cell = axes[row, column]
      cell.set_xticks([])
      cell.set_yticks([])
      if column == 0:
        cell.set_ylabel(f"{class_names[label]}\n{'correct' if correct else 'wrong'}", fontsize=8)
      if column >= len(members):
        if column == 0:
          cell.text(0.5, 0.5, "none", ha="center", va="center", transform=cell.transAxes)
        for spine in cell.spines.values():
          spine.set_visible(column == 0)
        continue
      index = members[column]
      cell.imshow(overlay(images[index], heatmaps[index]))
      cell.set_title(f"p={scores[index]:.2f}", fontsize=8)
      for y0, x0, y1, x1 in ([] if boxes is None else explain.as_boxes(np.round(boxes[index]))):
        cell.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="white",
                                 linewidth=0.8))
  figure.suptitle(f"Grad-CAM of the malignant score; decided at threshold {threshold:.3f}", fontsize=9)
  return figure


def grid_png(*args, **kwargs) -> bytes:
  """`grid_figure` as PNG bytes (for report.md and TensorBoard's image tab)."""
  return report.png(grid_figure(*args, **kwargs))
