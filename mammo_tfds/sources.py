"""Read one source file (DICOM via pydicom, PGM via Pillow) -> 8-bit pixels + tags.

Everything a builder or a prediction needs from a file goes through here, and
every failure names the file and says what is wrong with it. Nothing is taken
from file or folder names: CMMD downloads name files `1-1.dcm`,
`1-<hash>.dcm` or `00000001.dcm` depending on the client, so patient,
laterality and view come from the DICOM tags.
"""
import dataclasses
import os

import numpy as np
import pydicom
from PIL import Image

try:  # pydicom >= 3
  from pydicom.pixels import apply_voi_lut
except ImportError:  # pydicom 2.x
  from pydicom.pixel_data_handlers.util import apply_voi_lut

_VIEW_MEANINGS = {"cranio-caudal": "CC", "medio-lateral oblique": "MLO"}
_VIEW_POSITIONS = {"CC": "CC", "MLO": "MLO"}


class SourceError(ValueError):
  """A source file cannot be used; the message names the file and the problem."""

  def __init__(self, path, problem: str):
    super().__init__(f"{path}: {problem}")
    self.path = str(path)
    self.problem = problem


@dataclasses.dataclass(frozen=True)
class DicomImage:
  pixels: np.ndarray  # 2-D uint8, bright = dense tissue
  patient_id: str
  laterality: str  # "L" or "R"
  view: str  # "CC" or "MLO"
  bits_stored: int
  photometric: str


def _laterality(ds, path) -> str:
  for keyword in ("ImageLaterality", "Laterality"):
    value = str(ds.get(keyword, "") or "").strip().upper()
    if value in ("L", "R"):
      return value
    if value:
      raise SourceError(path, f"unknown {keyword} {value!r} (expected L or R)")
  raise SourceError(path, "no laterality tag: neither ImageLaterality (0020,0062) nor Laterality (0020,0060)")


def _view(ds, path) -> str:
  """View from View Code Sequence (0054,0220); CMMD has no ViewPosition tag."""
  for item in ds.get("ViewCodeSequence", []) or []:
    meaning = str(getattr(item, "CodeMeaning", "")).strip().lower()
    if meaning in _VIEW_MEANINGS:
      return _VIEW_MEANINGS[meaning]
    if meaning:
      raise SourceError(path, f"unknown view {meaning!r} in View Code Sequence (0054,0220)")
  position = str(ds.get("ViewPosition", "") or "").strip().upper()
  if position in _VIEW_POSITIONS:
    return _VIEW_POSITIONS[position]
  raise SourceError(path, "no view: View Code Sequence (0054,0220) and ViewPosition are missing or empty")


def to_uint8(pixels: np.ndarray, ds, path) -> np.ndarray:
  """Applies the file's VOI LUT / window, BitsStored and photometric inversion.

  Without a VOI LUT, 8-bit data is kept as is; deeper data is scaled from
  0..max so 12-bit values stored in 16 bits do not come out nearly black.
  """
  bits = int(ds.get("BitsStored", 8) or 8)
  photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
  if photometric not in ("MONOCHROME1", "MONOCHROME2"):
    raise SourceError(path, f"unsupported PhotometricInterpretation {photometric!r} (expected MONOCHROME1/2)")
  has_window = "VOILUTSequence" in ds or "WindowCenter" in ds
  if pixels.dtype == np.uint8 and bits <= 8 and not has_window:
    # Already the stored scale: skips a float round trip that costs ~10x the
    # file read on a 2294x1914 CMMD image, with the same result.
    return 255 - pixels if photometric == "MONOCHROME1" else pixels
  values = pixels.astype(np.float64)
  if has_window:
    values = np.asarray(apply_voi_lut(pixels, ds), dtype=np.float64)
    low, high = values.min(), values.max()
  elif bits <= 8:
    low, high = 0.0, 255.0
  else:
    low, high = 0.0, max(float(values.max()), 1.0)
  scaled = np.clip((values - low) / max(high - low, 1e-9), 0.0, 1.0) * 255.0
  if photometric == "MONOCHROME1":
    scaled = 255.0 - scaled
  return np.rint(scaled).astype(np.uint8)


def read_dicom(path) -> DicomImage:
  """Reads a mammogram DICOM: pixels as 8-bit, bright = dense, plus its tags."""
  try:
    ds = pydicom.dcmread(path)
  except FileNotFoundError:
    raise SourceError(path, "file not found") from None
  except Exception as error:  # pydicom raises several types for bad files
    raise SourceError(path, f"not a readable DICOM file ({type(error).__name__}: {error})") from None
  patient_id = str(ds.get("PatientID", "") or "").strip()
  if not patient_id:
    raise SourceError(path, "no PatientID (0010,0020)")
  laterality = _laterality(ds, path)
  view = _view(ds, path)
  try:
    pixels = ds.pixel_array
  except Exception as error:
    raise SourceError(path, f"pixel data cannot be decoded, file corrupt or truncated? ({type(error).__name__}: {error})") from None
  if pixels.ndim != 2:
    raise SourceError(path, f"expected one 2-D grayscale frame, got pixel array of shape {pixels.shape}")
  return DicomImage(
      pixels=to_uint8(pixels, ds, path), patient_id=patient_id, laterality=laterality, view=view,
      bits_stored=int(ds.get("BitsStored", 8) or 8),
      photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper())


def read_pgm(path, fileobj=None) -> np.ndarray:
  """Reads a binary PGM (as mini-MIAS ships them) as 2-D uint8.

  Args:
    path: the file; with `fileobj`, only its name in error messages.
    fileobj: an open binary file to read instead, e.g. a member of the
      mini-MIAS archive, which is read in place rather than extracted.
  """
  if fileobj is None and not os.path.exists(path):
    raise SourceError(path, "file not found")
  try:
    with Image.open(fileobj or path) as image:
      image.load()
      if image.mode == "L":
        return np.asarray(image, dtype=np.uint8).copy()
      if image.mode in ("I", "I;16", "I;16B"):
        values = np.asarray(image, dtype=np.float64)
        return np.rint(values / max(values.max(), 1.0) * 255.0).astype(np.uint8)
      raise SourceError(path, f"expected a grayscale PGM, got image mode {image.mode}")
  except SourceError:
    raise
  except Exception as error:
    raise SourceError(path, f"not a readable PGM image, corrupt or truncated? ({type(error).__name__}: {error})") from None


def read_image(path) -> np.ndarray:
  """8-bit pixels of any supported source file, chosen by extension (for prediction)."""
  if str(path).lower().endswith(".dcm"):
    return read_dicom(path).pixels
  if str(path).lower().endswith((".pgm", ".png", ".jpg", ".jpeg", ".tif", ".tiff")):
    return read_pgm(path) if str(path).lower().endswith(".pgm") else _read_raster(path)
  raise SourceError(path, "unknown file type (expected .dcm, .pgm, .png, .jpg or .tif)")


def _read_raster(path) -> np.ndarray:
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert("L"), dtype=np.uint8).copy()
  except FileNotFoundError:
    raise SourceError(path, "file not found") from None
  except Exception as error:
    raise SourceError(path, f"not a readable image ({type(error).__name__}: {error})") from None
