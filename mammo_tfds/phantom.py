"""Procedural mammogram-like images: the built-in `synthetic` dataset and fake CMMD trees.

Each image is a breast silhouette on black with low-frequency tissue texture,
a pectoral muscle on MLO views, a bright film label in the background (which
the crop must drop), and one lesion: benign lesions are round, smooth-edged,
low-contrast masses; malignant ones are irregular masses with spicules. Sizes
and contrasts of the two classes overlap, so the task is learnable but not
trivial. Everything is drawn from the `numpy.random.Generator` passed in, so a
seed fixes the whole dataset.

`draw_film` also says where it drew the lesion (`Film.lesion_box`), so a
saliency map can be checked against the truth; `draw` is the pixels alone.
"""
import dataclasses

import numpy as np
from scipy import ndimage
from scipy.special import expit

# Lesion radius as a fraction of the film height, drawn per breast.
LESION_RADIUS = (0.045, 0.08)
# Lesion contrast over the tissue, grey levels: overlapping ranges, malignant
# masses denser on average (as in real films), so contrast alone is a weak cue.
CONTRAST = {False: (30.0, 60.0), True: (45.0, 80.0)}
# Spicule width as a fraction of the lesion radius: wide enough to survive
# resizing the stored 600 px image to 128 px for training.
SPICULE_WIDTH = 0.12
# The lesion box holds the breast pixels where the lesion adds at least this
# share of its peak contrast: the half-maximum extent. Benign masses reach it
# at their outline; a malignant core likewise, and its spicules out to about
# 1.1 radii (where their taper has fallen to this level), so their faint tips
# lie outside the box.
LESION_BOX_LEVEL = 0.5
# The lesion box of an image without a lesion: [0, 0, 0, 0], an empty
# end-exclusive box that contains no pixel.
NO_LESION_BOX = (0, 0, 0, 0)


@dataclasses.dataclass(frozen=True)
class Film:
  pixels: np.ndarray  # (height, width) uint8
  lesion_box: np.ndarray  # int32 [y0, x0, y1, x1] in these pixels, end-exclusive


def smooth_noise(rng, shape, sigma):
  """Unit-variance Gaussian-filtered noise; drawn coarse and upsampled, which is
  much cheaper than filtering at full size with a large sigma."""
  factor = max(1, int(sigma / 3))
  coarse = (-(-shape[0] // factor) + 1, -(-shape[1] // factor) + 1)
  noise = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), sigma / factor)
  if factor > 1:
    noise = ndimage.zoom(noise, factor, order=1)
  noise = noise[:shape[0], :shape[1]]
  return noise / (noise.std() + 1e-6)


def _lesion(rng, yy, xx, cy, cx, radius, malignant):
  """Additive intensity profile (0..1) of one lesion centred at (cy, cx)."""
  dy, dx = yy - cy, xx - cx
  distance = np.hypot(dy, dx)
  if not malignant:
    # Round or slightly oval, smooth edge.
    squash = rng.uniform(0.8, 1.0)
    angle = rng.uniform(0, np.pi)
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / squash
    return expit((radius - np.hypot(u, v)) / (0.12 * radius))
  # Irregular core: radius modulated by a few random harmonics.
  theta = np.arctan2(dy, dx)
  wobble = sum(rng.uniform(0.05, 0.18) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (3, 5, 7))
  core = expit((radius * 0.8 * (1 + wobble) - distance) / (0.06 * radius))
  # Spicules: thin bright lines radiating beyond the core.
  spicules = np.zeros_like(distance)
  for angle in rng.uniform(0, 2 * np.pi, size=rng.integers(6, 13)):
    length = radius * rng.uniform(1.6, 3.0)
    width = max(1.2, radius * SPICULE_WIDTH)
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = np.abs(-dx * np.sin(angle) + dy * np.cos(angle))
    taper = np.clip(1 - along / length, 0, 1)
    spicules = np.maximum(spicules, (along > 0) * taper * np.exp(-(across / width) ** 2))
  return np.maximum(core, 0.8 * spicules)


def draw(rng: np.random.Generator, height: int, width: int, malignant: bool,
         laterality: str = "L", view: str = "CC", lesion=None) -> np.ndarray:
  """Draws one mammogram-like image as 2-D uint8 (`draw_film`'s pixels)."""
  return draw_film(rng, height, width, malignant, laterality, view, lesion).pixels


def _box(mask: np.ndarray, top: int, left: int) -> np.ndarray:
  """End-exclusive bounding box of `mask`, offset by (top, left); NO_LESION_BOX if empty."""
  rows, cols = np.nonzero(mask)
  if rows.size == 0:
    return np.array(NO_LESION_BOX, dtype=np.int32)
  return np.array([top + rows.min(), left + cols.min(), top + rows.max() + 1, left + cols.max() + 1],
                  dtype=np.int32)


def draw_film(rng: np.random.Generator, height: int, width: int, malignant: bool,
              laterality: str = "L", view: str = "CC", lesion=None) -> Film:
  """Draws one mammogram-like image and the box of its lesion.

  Args:
    rng: source of randomness; the same state gives the same image.
    height, width: image size in pixels (CMMD films are 2294 x 1914).
    malignant: lesion type.
    laterality: "L" puts the chest wall on the left edge, "R" on the right.
    view: "MLO" adds a pectoral muscle triangle at the top of the chest wall.
    lesion: optional (row, col, radius) fractions of the breast, so that two
      views of one breast can share a lesion; drawn at random when None.
  """
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  # Breast: half-ellipse against the chest wall (column 0 before mirroring).
  depth = width * rng.uniform(0.55, 0.8)
  half_height = height * rng.uniform(0.36, 0.46)
  centre_y = height * rng.uniform(0.47, 0.53)
  boundary_noise = 1 + 0.03 * smooth_noise(rng, (height, width), sigma=height / 20)
  radial = np.hypot(xx / depth, (yy - centre_y) / half_height) * boundary_noise
  breast = radial < 1.0
  # Tissue: fatty-to-dense texture, falling off towards the skin line.
  density = rng.uniform(0.25, 0.7)
  texture = (0.6 * smooth_noise(rng, (height, width), sigma=height / 40)
             + 0.25 * smooth_noise(rng, (height, width), sigma=height / 150))
  intensity = 70 + 90 * density + 25 * texture
  intensity *= np.clip(1.25 - 0.55 * radial, 0.45, 1.0)
  if view == "MLO":
    muscle = xx / (width * rng.uniform(0.25, 0.4)) + yy / (height * rng.uniform(0.35, 0.55)) < 1
    intensity = np.where(muscle, intensity + 45, intensity)
  if lesion is None:
    lesion = (rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.6), rng.uniform(*LESION_RADIUS))
  row_frac, col_frac, radius_frac = lesion
  cy = centre_y + (row_frac - 0.5) * 1.4 * half_height
  cx = col_frac * depth * 0.8
  radius = radius_frac * height
  contrast = rng.uniform(*CONTRAST[bool(malignant)])
  # The lesion (spicules included) stays within 3.2 radii: draw it in that window only.
  reach = int(3.2 * radius) + 2
  top, bottom = max(0, int(cy) - reach), min(height, int(cy) + reach)
  left, right = max(0, int(cx) - reach), min(width, int(cx) + reach)
  profile = _lesion(rng, yy[top:bottom, left:right], xx[top:bottom, left:right], cy, cx, radius, malignant)
  intensity[top:bottom, left:right] += contrast * profile
  # Outside the breast the background replaces the lesion: it is drawn where both are.
  box = _box((profile >= LESION_BOX_LEVEL * profile.max()) & breast[top:bottom, left:right], top, left)
  image = np.where(breast, intensity, rng.uniform(0, 6, size=(height, width)))
  # Film label: a bright block with dark "text" in a background corner.
  label_h, label_w = int(height * 0.06), int(width * 0.16)
  top = int(height * rng.choice([0.03, 0.88]))
  left = int(width - label_w - width * 0.04)
  image[top:top + label_h, left:left + label_w] = 235
  image[top + label_h // 3:top + 2 * label_h // 3, left + label_w // 8:left + 7 * label_w // 8:6] = 40
  image = np.clip(image + rng.normal(0, 2.0, size=image.shape), 0, 255).astype(np.uint8)
  if laterality == "R":
    image = image[:, ::-1].copy()
    if box[3] > box[1]:
      box = np.array([box[0], width - box[3], box[2], width - box[1]], dtype=np.int32)
  return Film(image, box)
