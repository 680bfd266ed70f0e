"""Read one source file (DICOM, PNG, JPEG, TIFF, PGM) -> 8-bit pixels, bright = dense, + tags.

Everything a builder or a prediction needs from a file goes through here, and
every failure is one `SourceError` naming the file and what is wrong with it.
Nothing is taken from file or folder names: CMMD downloads name files `1-1.dcm`,
`1-<hash>.dcm` or `00000001.dcm` depending on the client, so patient,
laterality and view come from the DICOM tags.

DICOM, in the order the standard's grayscale pipeline applies it (PS3.4 N.2):

1. Decoding: native, deflated and RLE data by pydicom itself; JPEG Lossless
   (Process 14) and 12-bit JPEG by pylibjpeg-libjpeg, JPEG-LS by pyjpegls
   (about 3x faster than libjpeg on a 3062x2394 image), JPEG 2000 by
   pylibjpeg-openjpeg: small numpy-only wheels that pydicom 3 finds as pixel
   plugins (see setup.cfg). What still cannot be decoded is one line naming
   the transfer syntax.
2. Modality LUT: Modality LUT Sequence or RescaleSlope / RescaleIntercept.
3. VOI: the FIRST window (WindowCenter / WindowWidth) with its VOILUTFunction
   (LINEAR, LINEAR_EXACT, SIGMOID); the first VOI LUT Sequence item only when
   the file has no window. DICOM calls the first the default; on the GE
   Senographe file the three LUT items are the three windows' sigmoids in
   table form (they agree to 1.2e-4), so preferring the window loses nothing.
   A window spanning exactly the stored range (CMMD's 8-bit files: centre 128,
   width 256, SIGMOID) is read as "show the stored values": applying CMMD's
   sigmoid would lift the black background to 30 of 255, above the breast
   threshold, and the pixels are already rendered for presentation. Without
   a window or LUT, 8-bit data is kept as stored and deeper data scaled
   linearly from 0 to the image's maximum (0 stays black).
4. Polarity: MONOCHROME1 or Presentation LUT Shape INVERSE inverts once (the
   MG IOD pairs them, so both together are still one inversion). Where
   PixelIntensityRelationship is LIN or LOG and its sign says the opposite
   (sign -1: higher stored values are less X-ray, i.e. denser), the sign is
   honoured: it states what the stored values measure; a warning says so.
5. 8 bits: the result of 2-4 is a table over the stored values, applied in
   one lookup (for CMMD's plain 8-bit files the table is the identity and the
   pixels are returned untouched).

Refused with one line (never turned into a picture): For Processing (raw
detector) images, files that are not mammograms (Modality MG or a
mammography SOP class) unless `allow_non_mammogram=True`, more than one frame
(tomosynthesis), colour, no Pixel Data element, fewer than MIN_SIDE pixels
on a side (stub pixels).

Raster files: 8-bit grayscale as stored; 16-bit PNG / TIFF / PGM scaled by
their actual bit depth, the fewest bits (8-16) that hold the image's largest
value (NYU's 16-bit PNGs hold 12-bit data: divided by 4095), so nothing is
clipped and 0 stays black; a colour file whose channels are equal (gray saved
as RGB) is converted with a warning, true colour is refused.
"""
import dataclasses
import os
from typing import Optional

from absl import logging
import numpy as np
import pydicom
from pydicom import pixels as dicom_pixels
from pydicom import uid as dicom_uid
from PIL import Image

_VIEW_MEANINGS = {"cranio-caudal": "CC", "medio-lateral oblique": "MLO"}
_VIEW_POSITIONS = {"CC": "CC", "MLO": "MLO"}
# Digital Mammography X-Ray (For Presentation, For Processing), Breast
# Tomosynthesis, Breast Projection X-Ray (For Presentation, For Processing).
MAMMOGRAPHY_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.1.2.1", "1.2.840.10008.5.1.4.1.1.13.1.3",
    "1.2.840.10008.5.1.4.1.1.13.1.4", "1.2.840.10008.5.1.4.1.1.13.1.5"})
# DX, Mammography, Intra-oral and Breast Projection X-Ray For Processing.
FOR_PROCESSING_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.2.1", "1.2.840.10008.5.1.4.1.1.1.3.1",
    "1.2.840.10008.5.1.4.1.1.13.1.5"})
# Patient directions (PS3.3 C.7.6.1.1.1): anterior, posterior, left, right, head, foot.
_DIRECTIONS = frozenset("APLRHF")
# Pillow format -> SourceImage.format. Pillow reads PGM with its PPM plugin.
_RASTER_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff", "PPM": "pgm"}
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm")
DICOM_SUFFIXES = (".dcm", ".dicom")
# Fewer pixels than this on a side is no mammogram: test files with stub pixels
# (the OpenREM GE headers hold 1x2) would otherwise be scored as an image.
MIN_SIDE = 32


class SourceError(ValueError):
  """A source file cannot be used; the message names the file and the problem."""

  def __init__(self, path, problem: str):
    super().__init__(f"{path}: {problem}")
    self.path = str(path)
    self.problem = problem


@dataclasses.dataclass(frozen=True)
class SourceImage:
  """One image as the model's preprocessing takes it, with what its tags say."""
  pixels: np.ndarray  # 2-D uint8, bright = dense tissue
  path: str
  format: str  # "dicom", "png", "jpeg", "tiff", "pgm"
  patient_id: Optional[str]  # DICOM tags; None for raster files
  study_uid: Optional[str]
  laterality: Optional[str]  # "L" / "R"
  view: Optional[str]  # "CC" / "MLO"; None when absent or another view
  chest_wall: Optional[str]  # "left" / "right" from PatientOrientation when valid, else None
  grayscale: str = ""  # how the stored values became these pixels, e.g. "window 1 of 3 SIGMOID"
  admitted_by: str = ""  # the rule that admitted the file as a 2-D mammogram (the build audit shows it)
  view_modifiers: tuple = ()  # e.g. ("spot compression",): what kind of view beyond CC / MLO


def read(path, *, allow_non_mammogram: bool = False) -> SourceImage:
  """Reads any supported source file: raster files by suffix, everything else as DICOM.

  DICOM files often have no suffix at all (PACS exports), so anything that is
  not a known raster suffix is tried as DICOM.

  Args:
    path: the file.
    allow_non_mammogram: read a DICOM whose Modality and SOP class do not say
      mammography (a converted or secondary-capture file that lost its tags).

  Raises:
    SourceError: the file cannot be used, with the reason.
  """
  if str(path).lower().endswith(RASTER_SUFFIXES):
    pixels, file_format, grayscale = _read_raster(path)
    return SourceImage(pixels, str(path), file_format, None, None, None, None, None, grayscale)
  return _read_dicom(path, allow_non_mammogram, strict_tags=False)


def read_dicom(path) -> SourceImage:
  """Reads a mammogram DICOM that must carry PatientID, laterality and view (builders)."""
  return _read_dicom(path, allow_non_mammogram=False, strict_tags=True)


def read_pgm(path, fileobj=None) -> np.ndarray:
  """Reads a PGM (as mini-MIAS ships them) as 2-D uint8.

  Args:
    path: the file; with `fileobj`, only its name in error messages.
    fileobj: an open binary file to read instead, e.g. a member of the
      mini-MIAS archive, which is read in place rather than extracted.
  """
  return _read_raster(path, fileobj)[0]


# ---- DICOM ------------------------------------------------------------------


def _read_dicom(path, allow_non_mammogram: bool, strict_tags: bool) -> SourceImage:
  try:
    # Values over 1 MB (pixel data) are read when used: a tomosynthesis stack
    # or a For Processing image is refused without reading its pixels.
    ds = pydicom.dcmread(path, defer_size="1 MB")
  except FileNotFoundError:
    raise SourceError(path, "file not found") from None
  except pydicom.errors.InvalidDicomError:
    raise SourceError(path, "not a readable DICOM file (no DICM marker) and not a "
                      f"{'/'.join(RASTER_SUFFIXES)} image") from None
  except Exception as error:  # pydicom raises several types for bad files
    raise SourceError(path, f"not a readable DICOM file ({type(error).__name__}: {error})") from None
  if len(ds) == 0:
    raise SourceError(path, "not a readable DICOM file: no data elements after the file header, corrupt or truncated?")
  _check_is_mammogram(ds, path, allow_non_mammogram)
  patient_id = _text(ds, "PatientID")
  laterality = _laterality(ds, path, strict_tags)
  view = _view(ds, path, strict_tags)
  if strict_tags and not patient_id:
    raise SourceError(path, "no PatientID (0010,0020)")
  pixels = _decoded_pixels(ds, path)
  values, grayscale = to_uint8(pixels, ds, path)
  return SourceImage(values, str(path), "dicom", patient_id or None, _text(ds, "StudyInstanceUID") or None,
                     laterality, view, chest_wall_from_orientation(ds), grayscale)


def _text(ds, keyword: str) -> str:
  return str(ds.get(keyword, "") or "").strip()


def _check_is_mammogram(ds, path, allow_non_mammogram: bool):
  """Refuses what is not one For Presentation grayscale mammogram, before decoding anything."""
  modality, sop_class = _text(ds, "Modality").upper(), _text(ds, "SOPClassUID")
  if modality != "MG" and sop_class not in MAMMOGRAPHY_SOP_CLASSES and not allow_non_mammogram:
    kind = dicom_uid.UID(sop_class).name if sop_class else "no SOP class"
    raise SourceError(path, f"not a mammogram: Modality {modality or 'missing'}, {kind} "
                      "(pass allow_non_mammogram=True to read it anyway)")
  intent = _text(ds, "PresentationIntentType").upper()
  if intent == "FOR PROCESSING" or sop_class in FOR_PROCESSING_SOP_CLASSES:
    raise SourceError(path, "a For Processing (raw detector) image, not meant to be shown or scored: "
                      "use the For Presentation image of this view")
  frames = int(ds.get("NumberOfFrames", 1) or 1)
  if frames > 1:
    raise SourceError(path, f"{frames} frames (a tomosynthesis stack or multi-frame file): expected one 2-D image")
  photometric = _text(ds, "PhotometricInterpretation").upper()
  samples = int(ds.get("SamplesPerPixel", 1) or 1)
  if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
    raise SourceError(path, f"not grayscale: PhotometricInterpretation {photometric or 'missing'}, "
                      f"{samples} samples per pixel (expected MONOCHROME1/2)")
  if "PixelData" not in ds:
    other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
    if other:
      raise SourceError(path, f"{other[0]} (floating-point pixels) is not supported: expected integer Pixel Data")
    raise SourceError(path, f"no pixel data: the header declares {ds.get('Rows', '?')}x{ds.get('Columns', '?')} "
                      "but there is no Pixel Data element (7FE0,0010)")


def _decoded_pixels(ds, path) -> np.ndarray:
  syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
  try:
    pixels = ds.pixel_array
  except Exception as error:  # decoders raise RuntimeError, ValueError, NotImplementedError...
    if syntax is not None and syntax.is_compressed:
      raise SourceError(path, f"pixel data cannot be decoded: transfer syntax {syntax.name} ({syntax}) "
                        f"({type(error).__name__}: {error})") from None
    raise SourceError(path, "pixel data cannot be decoded, file corrupt or truncated? "
                      f"({type(error).__name__}: {error})") from None
  if pixels.ndim != 2:
    raise SourceError(path, f"expected one 2-D grayscale frame, got pixel array of shape {pixels.shape}")
  _check_size(pixels, path)
  if not np.issubdtype(pixels.dtype, np.integer):
    raise SourceError(path, f"{pixels.dtype} pixels are not supported: expected integer stored values")
  return pixels


def _check_size(pixels: np.ndarray, path):
  if min(pixels.shape) < MIN_SIDE:
    raise SourceError(path, f"{pixels.shape[0]}x{pixels.shape[1]} pixels: too small to be a mammogram "
                      f"(under {MIN_SIDE} on a side; stub pixels?)")


def _laterality(ds, path, strict: bool) -> Optional[str]:
  for keyword in ("ImageLaterality", "Laterality"):
    value = _text(ds, keyword).upper()
    if value in ("L", "R"):
      return value
    if value:
      raise SourceError(path, f"unknown {keyword} {value!r} (expected L or R)")
  if strict:
    raise SourceError(path, "no laterality tag: neither ImageLaterality (0020,0062) nor Laterality (0020,0060)")
  return None


def _view(ds, path, strict: bool) -> Optional[str]:
  """View from View Code Sequence (0054,0220), else ViewPosition; CMMD has no ViewPosition tag.

  Builders (`strict`) need CC or MLO; for prediction another view (ML, XCCL)
  or none is None: the view is reported, not needed for a score.
  """
  for item in ds.get("ViewCodeSequence", []) or []:
    meaning = str(getattr(item, "CodeMeaning", "")).strip().lower()
    if meaning in _VIEW_MEANINGS:
      return _VIEW_MEANINGS[meaning]
    if meaning and strict:
      raise SourceError(path, f"unknown view {meaning!r} in View Code Sequence (0054,0220)")
    if meaning:
      return None
  position = _text(ds, "ViewPosition").upper()
  if position in _VIEW_POSITIONS:
    return _VIEW_POSITIONS[position]
  if strict:
    raise SourceError(path, "no view: View Code Sequence (0054,0220) and ViewPosition are missing or empty")
  return None


def chest_wall_from_orientation(ds) -> Optional[str]:
  """"left" / "right": the chest wall's side by PatientOrientation (0020,0020), or None.

  Its first value is the patient direction of the rows (towards increasing
  column): "P" (posterior, towards the chest wall) means the chest wall is on
  the right, "A" on the left. None when the tag is missing, is not two
  values of the letters A P L R H F (CBIS-DDSM writes the view, "CC", there),
  or its row direction has no A/P part (a rotated image).
  """
  value = ds.get("PatientOrientation", None)
  values = [] if value is None else ([value] if isinstance(value, str) else list(value))
  values = [str(v).strip().upper() for v in values]
  if len(values) != 2 or not all(values) or set("".join(values)) - _DIRECTIONS:
    return None
  row = values[0]
  if ("P" in row) == ("A" in row):
    return None
  return "right" if "P" in row else "left"


def to_uint8(pixels: np.ndarray, ds, path):
  """(uint8 pixels, description): the grayscale chain of the module docstring, steps 2-5.

  The chain is evaluated once per possible stored value (at most 65,536 for
  16-bit data) and applied as a table, which is faster than per pixel; wider
  data (32-bit) is evaluated per pixel.
  """
  low, high = (0, 255) if pixels.dtype == np.uint8 else (min(0, int(pixels.min())), int(pixels.max()))
  per_pixel = high - low >= 1 << 16
  stored = pixels.astype(np.int64) if per_pixel else np.arange(low, high + 1, dtype=np.int64)
  values = np.asarray(dicom_pixels.apply_modality_lut(stored, ds), dtype=np.float64)
  shown, voi = _voi(values, ds, path)
  inverted, polarity = _inverted(ds, path)
  if inverted:
    shown = 1.0 - shown
  table = np.rint(np.clip(shown, 0.0, 1.0) * 255.0).astype(np.uint8)
  description = ", ".join(part for part in (voi, polarity) if part)
  if per_pixel:
    return table, description
  if pixels.dtype == np.uint8 and np.array_equal(table, np.arange(256)):
    return pixels, description
  return table[pixels if low == 0 else pixels.astype(np.int32) - low], description


def _voi(values: np.ndarray, ds, path):
  """(values in [0, 1], description) after the VOI step."""
  bits = int(ds.get("BitsStored", 8) or 8)
  centres, widths = _multi(ds.get("WindowCenter")), _multi(ds.get("WindowWidth"))
  if centres and widths:
    centre, width = centres[0], widths[0]
    function = _text(ds, "VOILUTFunction").upper() or "LINEAR"
    which = f"window 1 of {len(centres)}"
    if 2 ** (bits - 1) - 1 <= centre <= 2 ** (bits - 1) and 2 ** bits - 1 <= width <= 2 ** bits:
      return values / (2 ** bits - 1), f"{which} ({function} over the whole {bits}-bit range: stored values shown)"
    return _window(values, centre, width, function, path), f"{which} {function} centre {centre:g} width {width:g}"
  lut_items = ds.get("VOILUTSequence", None)
  if lut_items:
    descriptor = [int(v) for v in lut_items[0].LUTDescriptor]
    table = np.asarray(dicom_pixels.apply_voi(np.rint(values).astype(np.int64), ds, index=0), dtype=np.float64)
    top = 2 ** max(descriptor[2], int(table.max()).bit_length()) - 1
    return table / top, f"VOI LUT 1 of {len(lut_items)}"
  if bits <= 8 and values.min() >= 0:
    return values / 255.0, ""
  floor = min(0.0, float(values.min()))
  return (values - floor) / max(float(values.max()) - floor, 1.0), "no window: 0..max"


def _multi(value) -> list:
  if value is None or value == "":
    return []
  return [float(v) for v in (value if isinstance(value, pydicom.multival.MultiValue) else [value])]


def _window(values: np.ndarray, centre: float, width: float, function: str, path) -> np.ndarray:
  """A VOI window per PS3.3 C.11.2.1.2-3, onto [0, 1]."""
  if function == "LINEAR":
    if width < 1:
      raise SourceError(path, f"WindowWidth {width:g} is below 1, invalid for a LINEAR window")
    return np.clip((values - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0) if width > 1 else \
        (values > centre - 0.5).astype(np.float64)
  if width <= 0:
    raise SourceError(path, f"WindowWidth {width:g} must be positive for a {function} window")
  if function == "LINEAR_EXACT":
    return np.clip((values - centre) / width + 0.5, 0.0, 1.0)
  if function == "SIGMOID":
    return 1.0 / (1.0 + np.exp(-4.0 * (values - centre) / width))
  raise SourceError(path, f"unknown VOILUTFunction {function!r} (expected LINEAR, LINEAR_EXACT or SIGMOID)")


def _inverted(ds, path):
  """(whether the chain inverts, description); see the module docstring, step 4."""
  photometric = _text(ds, "PhotometricInterpretation").upper()
  inverted = photometric == "MONOCHROME1" or _text(ds, "PresentationLUTShape").upper() == "INVERSE"
  stated = photometric if photometric == "MONOCHROME1" else "Presentation LUT Shape INVERSE"
  relationship = _text(ds, "PixelIntensityRelationship").upper()
  sign = ds.get("PixelIntensityRelationshipSign", None)
  if relationship in ("LIN", "LOG") and sign in (1, -1):
    # Sign -1: higher stored values are less X-ray, i.e. denser; a negative slope turns that round.
    dense_is_high = (sign == -1) == (float(ds.get("RescaleSlope", 1) or 1) > 0)
    if dense_is_high == inverted:
      said = stated if inverted else f"{photometric} without an INVERSE Presentation LUT Shape"
      logging.warning("%s: PixelIntensityRelationshipSign %+d contradicts %s; following the sign", path, sign, said)
      return not dense_is_high, f"polarity from PixelIntensityRelationshipSign {sign:+d} (contradicts {said})"
  return inverted, f"inverted ({stated})" if inverted else ""


# ---- raster files -----------------------------------------------------------


def _read_raster(path, fileobj=None):
  """(2-D uint8 pixels, format, how they were scaled) of a PNG, JPEG, TIFF or PGM file; see the module docstring."""
  if fileobj is None and not os.path.exists(path):
    raise SourceError(path, "file not found")
  try:
    with Image.open(fileobj or path) as image:
      file_format = _RASTER_FORMATS.get(image.format)
      if file_format is None:
        raise SourceError(path, f"a {image.format} image: expected PNG, JPEG, TIFF or PGM")
      if getattr(image, "n_frames", 1) > 1:
        raise SourceError(path, f"{image.n_frames} frames or pages: expected one 2-D image")
      image.load()
      pixels, scaling = _gray_uint8(image, path)
      _check_size(pixels, path)
      return pixels, file_format, scaling
  except SourceError:
    raise
  except Exception as error:
    raise SourceError(path, f"not a readable image, corrupt or truncated? ({type(error).__name__}: {error})") from None


def _gray_uint8(image: Image.Image, path):
  """(2-D uint8 pixels, how they were scaled) of an open image."""
  if image.mode == "L":
    return np.asarray(image, dtype=np.uint8).copy(), "8-bit"
  if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
    values = np.asarray(image)
    if values.min() < 0 or values.max() > 65535:
      raise SourceError(path, f"values {values.min()}..{values.max()} do not fit 16 bits")
    bits = max(8, int(values.max()).bit_length())
    scaling = f"{image.mode} image with {bits}-bit values, divided by {2 ** bits - 1}"
    return np.rint(values * (255.0 / (2 ** bits - 1))).astype(np.uint8), scaling
  if image.mode in ("RGB", "RGBA", "P", "PA", "LA", "CMYK", "YCbCr"):
    if image.mode == "LA":
      channels = [np.asarray(image.getchannel("L"))]
    else:
      channels = [np.asarray(image.convert("RGB"))[:, :, i] for i in range(3)]
    if all(np.array_equal(channels[0], other) for other in channels[1:]):
      logging.warning("%s: %s image with equal channels, read as grayscale", path, image.mode)
      return channels[0].astype(np.uint8).copy(), f"{image.mode} with equal channels, read as 8-bit grayscale"
    raise SourceError(path, f"a colour ({image.mode}) image: expected grayscale")
  raise SourceError(path, f"image mode {image.mode} is not supported: expected 8- or 16-bit grayscale")
