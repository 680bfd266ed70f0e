"""Read one source file (DICOM, PNG, JPEG, TIFF, PGM) -> 8-bit pixels, bright = dense, + tags.

Everything a builder or a prediction needs from a file goes through here, and
every failure is one `SourceError` naming the file and what is wrong with it,
with its `reasons.Reason` code (`.code`) set where it is raised.
Nothing is taken from file or folder names: CMMD downloads name files `1-1.dcm`,
`1-<hash>.dcm` or `00000001.dcm` depending on the client, so patient,
laterality and view come from the DICOM tags.

What counts as a 2-D mammogram (`admission`; the rule that admits a file is
`SourceImage.admitted_by`), tried in this order:

- "modality MG": Modality MG;
- "mammography SOP class": Digital Mammography X-Ray (For Presentation or
  For Processing) as the dataset's SOPClassUID; "file meta SOP class": the
  same found only in the file meta's MediaStorageSOPClassUID;
- "body part BREAST + laterality": BodyPartExamined BREAST and an
  ImageLaterality or Laterality of L or R (digitized films stored as
  Secondary Capture with Modality RG or OT, as the DDSM / NEMA films are);
- "view code + laterality": a mammography view (View Code Sequence code or
  meaning from CID 4014, or a ViewPosition word CC, MLO, ML, LM, XCCL, ...),
  a laterality, and no other body part;
- "DX for presentation + ImageLaterality": Digital X-Ray For Presentation
  (in the dataset or only in the file meta: RSNA's stripped exports) with an
  ImageLaterality and no body part other than BREAST;
- "manifest": the caller vouches for the file (`read(evidence="manifest")`:
  a user's manifest row with its laterality);
- "allow_non_mammogram": the caller's override.
Raster files are "raster file". Checked first and not overridable:
tomosynthesis (ImageType holding TOMO... or VOLUME, or the Breast
Tomosynthesis / Breast Projection SOP classes, whatever the Modality: a CT
Image Storage slice with ImageType TOMO is one) is refused as
`Reason.tomosynthesis`, unless ImageType says it is a synthesized 2-D view
(SYNTHESIZED..., ..._2D such as GENERATED_2D), which is admitted and named
in view_modifiers; For Processing images are refused.

View modifiers (`SourceImage.view_modifiers`, `view_modifiers`):
stereotactic, specimen, spot, magnification, implant displaced (and
"synthesized 2D"), from View Modifier Code Sequence (0054,0222) inside View
Code Sequence (SNOMED CT codes via pydicom, SNOMED-RT codes, or code
meanings), the view code itself (tissue specimen from breast), ImageType
and ViewPosition words ("SPOT", "MAG", "CCID"). They are recorded, never
refused here: predict refuses stereotactic and specimen images.

DICOM pixels, in the order the standard's grayscale pipeline applies it (PS3.4 N.2):

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
4. Polarity: Photometric Interpretation and Presentation LUT Shape decide,
   as the display chain does (PS3.3 C.11.6): MONOCHROME1 or Presentation LUT
   Shape INVERSE inverts once (the MG IOD pairs them, so both together are
   still one inversion). PixelIntensityRelationshipSign is NOT followed: it
   describes the stored values' relation to X-ray intensity, not the
   display, and real For Presentation files contradict it (RSNA's
   MONOCHROME2 with LOG and sign +1 would come out as a negative). A
   contradicting sign is logged and recorded in `SourceImage.polarity_note`.
5. 8 bits: the result of 2-4 is a table over the stored values, applied in
   one lookup (for CMMD's plain 8-bit files the table is the identity and the
   pixels are returned untouched).
6. Padding: pixels equal to PixelPaddingValue (up to PixelPaddingRangeLimit
   when given) are no image: they take no part in the scaling and come out
   black (background), whatever the polarity.

Refused with one line (never turned into a picture), each with its code:
tomosynthesis images, For Processing (raw detector) images, files no rule
above admits (unless `allow_non_mammogram=True`), more than one frame, colour,
no Pixel Data element, fewer than MIN_SIDE pixels on a side (stub pixels).

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
from pydicom.sr.codedict import codes
from PIL import Image

from mammo_tfds.reasons import Reason

_VIEW_MEANINGS = {"cranio-caudal": "CC", "medio-lateral oblique": "MLO"}
_VIEW_POSITIONS = {"CC": "CC", "MLO": "MLO"}
# Mammography views (CID 4014) as ViewPosition writes them. RL / RM are left
# out: in DX they mean right lateral, not rolled lateral / medial.
MAMMOGRAPHY_VIEW_POSITIONS = frozenset({
    "CC", "MLO", "ML", "LM", "LMO", "XCCL", "XCCM", "FB", "SIO", "ISO", "CV", "AT", "SPECIMEN"})
# Mammography views (CID 4014): SNOMED CT codes from pydicom, plus the older
# SNOMED-RT values of CC, MLO, ML and LM that older files (DDSM, INbreast) carry.
_MAMMOGRAPHY_VIEWS = [getattr(codes.SCT, name) for name in (
    "CranioCaudal", "MedioLateralObliqueProjection", "MedioLateralProjection", "LateroMedial",
    "LateroMedialOblique", "CranioCaudalExaggeratedLaterally", "CranioCaudalExaggeratedMedially",
    "CaudoCranial", "SuperolateralToInferomedialOblique", "InferomedialToSuperolateralOblique",
    "TissueSpecimenFromBreast")]
_MAMMOGRAPHY_VIEW_CODES = frozenset([code.value for code in _MAMMOGRAPHY_VIEWS]
                                    + ["R-10242", "R-10226", "R-10224", "R-10228"])
_MAMMOGRAPHY_VIEW_MEANINGS = frozenset([code.meaning.lower() for code in _MAMMOGRAPHY_VIEWS] + list(_VIEW_MEANINGS))
# Digital Mammography X-Ray For Presentation / For Processing: 2-D mammograms.
MAMMOGRAPHY_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.1.2.1"})
# Breast Tomosynthesis, Breast Projection X-Ray (For Presentation, For Processing):
# tomosynthesis volumes and the projections they are reconstructed from.
TOMOSYNTHESIS_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.13.1.3", "1.2.840.10008.5.1.4.1.1.13.1.4", "1.2.840.10008.5.1.4.1.1.13.1.5"})
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
# Who vouches for a file being a mammogram, besides its tags (`read(evidence=...)`).
EVIDENCE = ("manifest",)
# View modifiers: short name -> code values (SNOMED CT via pydicom, SNOMED-RT)
# and words that name it in code meanings, ImageType or ViewPosition.
_MODIFIER_CODES = {
    "stereotactic": set(),  # no code in CID 4015: named by words only
    "specimen": {codes.SCT.TissueSpecimenFromBreast.value},
    "spot": {codes.SCT.SpotCompression.value, "R-102D6"},
    "magnification": {codes.SCT.Magnification.value, "R-102D2"},
    "implant displaced": {codes.SCT.ImplantDisplaced.value, "R-102D3"},
}
_MODIFIER_WORDS = {
    "spot": ("SPOT",), "magnification": ("MAGNIFICATION", "MAGNIFIED", "MAG"),
    "implant displaced": ("IMPLANT DISPLACED", "IMPLANT_DISPLACED", "ID", "EKLUND"),
    "specimen": ("SPECIMEN",), "stereotactic": ("STEREOTACTIC", "STEREO", "STX", "BIOPSY"),
}
VIEW_MODIFIERS = tuple(_MODIFIER_CODES)
SYNTHESIZED = "synthesized 2D"
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
  """A source file cannot be used; the message names the file and the problem, `.code` its `Reason`.

  The code is set where the error is raised, so callers count causes by code
  rather than by matching message text.
  """

  def __init__(self, path, problem: str, code: Reason = Reason.unusable):
    super().__init__(f"{path}: {problem}")
    self.path = str(path)
    self.problem = problem
    self.code = Reason(code)


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
  admitted_by: str = ""  # the rule that made it a mammogram, e.g. "modality MG"; see the module docstring
  view_modifiers: tuple = ()  # of VIEW_MODIFIERS (and SYNTHESIZED), in that order
  polarity_note: str = ""  # a PixelIntensityRelationshipSign that contradicts the polarity used, or ""


def read(path, *, allow_non_mammogram: bool = False, evidence: Optional[str] = None) -> SourceImage:
  """Reads any supported source file: raster files by suffix, everything else as DICOM.

  DICOM files often have no suffix at all (PACS exports), so anything that is
  not a known raster suffix is tried as DICOM.

  Args:
    path: the file.
    allow_non_mammogram: read a DICOM that no rule admits as a mammogram (a
      converted file that lost its tags).
    evidence: "manifest" when the caller vouches for the file being a
      mammogram (a user's manifest row with its laterality): a DICOM that no
      tag rule admits is then admitted by "manifest".

  Raises:
    SourceError: the file cannot be used, with the reason and its code.
  """
  if evidence not in (None,) + EVIDENCE:
    raise ValueError(f"evidence must be one of {EVIDENCE} or None, got {evidence!r}")
  if str(path).lower().endswith(RASTER_SUFFIXES):
    pixels, file_format, grayscale = _read_raster(path)
    return SourceImage(pixels, str(path), file_format, None, None, None, None, None, grayscale, "raster file")
  return _read_dicom(path, allow_non_mammogram, strict_tags=False, evidence=evidence)


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


def _read_dicom(path, allow_non_mammogram: bool, strict_tags: bool, evidence: Optional[str] = None) -> SourceImage:
  try:
    # Values over 1 MB (pixel data) are read when used: a tomosynthesis stack
    # or a For Processing image is refused without reading its pixels.
    ds = pydicom.dcmread(path, defer_size="1 MB")
  except FileNotFoundError:
    raise SourceError(path, "file not found", Reason.not_found) from None
  except pydicom.errors.InvalidDicomError:
    raise SourceError(path, "not a readable DICOM file (no DICM marker) and not a "
                      f"{'/'.join(RASTER_SUFFIXES)} image", Reason.unreadable) from None
  except Exception as error:  # pydicom raises several types for bad files
    raise SourceError(path, f"not a readable DICOM file ({type(error).__name__}: {error})",
                      Reason.unreadable) from None
  if len(ds) == 0:
    raise SourceError(path, "not a readable DICOM file: no data elements after the file header, corrupt or "
                      "truncated?", Reason.unreadable)
  admitted_by = admission(ds, path, allow_non_mammogram, evidence)
  _check_one_grayscale_image(ds, path)
  patient_id = _text(ds, "PatientID")
  laterality = _laterality(ds, path, strict_tags)
  view = _view(ds, path, strict_tags)
  if strict_tags and not patient_id:
    raise SourceError(path, "no PatientID (0010,0020)", Reason.no_patient_id)
  pixels = _decoded_pixels(ds, path)
  values, grayscale = to_uint8(pixels, ds, path)
  note = polarity_note(ds)
  if note:
    logging.warning("%s: %s", path, note)
  return SourceImage(values, str(path), "dicom", patient_id or None, _text(ds, "StudyInstanceUID") or None,
                     laterality, view, chest_wall_from_orientation(ds), grayscale, admitted_by, view_modifiers(ds),
                     note)


def _text(ds, keyword: str) -> str:
  return str(ds.get(keyword, "") or "").strip()


def _sop_class(ds) -> tuple:
  """(SOP class UID, where it was found): the dataset's, else the file meta's (stripped exports keep only that)."""
  in_dataset = _text(ds, "SOPClassUID")
  if in_dataset:
    return in_dataset, "dataset"
  meta = getattr(ds, "file_meta", None)
  in_meta = str(getattr(meta, "MediaStorageSOPClassUID", "") or "").strip() if meta is not None else ""
  return in_meta, "file meta" if in_meta else ""


def _image_type(ds) -> list:
  value = ds.get("ImageType", None)
  values = [] if value is None else ([value] if isinstance(value, str) else list(value))
  return [str(v).strip().upper() for v in values]


def _is_synthesized(image_type: list) -> bool:
  """A synthesized 2-D view made from a tomosynthesis volume (C-View, "GENERATED_2D", "SYNTHESIZED")."""
  return any("SYNTHE" in v or v.endswith("GENERATED_2D") or v.endswith("_2D") for v in image_type)


def admission(ds, path, allow_non_mammogram: bool = False, evidence: Optional[str] = None) -> str:
  """The rule that admits `ds` as a 2-D mammogram (SourceImage.admitted_by); see the module docstring.

  Raises:
    SourceError: a tomosynthesis image (`Reason.tomosynthesis`, whatever
      admits it), a For Processing image, or no rule admits it
      (`Reason.not_mammogram`, unless `allow_non_mammogram`).
  """
  modality = _text(ds, "Modality").upper()
  sop_class, sop_from = _sop_class(ds)
  image_type = _image_type(ds)
  if not _is_synthesized(image_type):
    tomo = [v for v in image_type if "TOMO" in v or v == "VOLUME"]
    if tomo or sop_class in TOMOSYNTHESIS_SOP_CLASSES:
      said = f"ImageType {tomo[0]}" if tomo else dicom_uid.UID(sop_class).name
      raise SourceError(path, f"a tomosynthesis image ({said}, Modality {modality or 'missing'}): "
                        "expected a 2-D mammogram or a synthesized 2-D view", Reason.tomosynthesis)
  if _text(ds, "PresentationIntentType").upper() == "FOR PROCESSING" or sop_class in FOR_PROCESSING_SOP_CLASSES:
    raise SourceError(path, "a For Processing (raw detector) image, not meant to be shown or scored: "
                      "use the For Presentation image of this view", Reason.for_processing)
  body_part = _text(ds, "BodyPartExamined").upper()
  lateral = any(_text(ds, keyword).upper() in ("L", "R") for keyword in ("ImageLaterality", "Laterality"))
  rules = (
      (modality == "MG", "modality MG"),
      (sop_class in MAMMOGRAPHY_SOP_CLASSES,
       "mammography SOP class" if sop_from == "dataset" else "file meta SOP class"),
      (body_part == "BREAST" and lateral, "body part BREAST + laterality"),
      (_has_mammography_view(ds) and lateral and body_part in ("", "BREAST"), "view code + laterality"),
      (sop_class == DX_FOR_PRESENTATION and _text(ds, "ImageLaterality").upper() in ("L", "R")
       and body_part in ("", "BREAST"), "DX for presentation + ImageLaterality"),
      (evidence == "manifest", "manifest"),
      (allow_non_mammogram, "allow_non_mammogram"),
  )
  for holds, rule in rules:
    if holds:
      return rule
  kind = dicom_uid.UID(sop_class).name if sop_class else "no SOP class"
  raise SourceError(path, f"not a mammogram: Modality {modality or 'missing'}, {kind}, BodyPartExamined "
                    f"{body_part or 'missing'}, {'a' if lateral else 'no'} laterality "
                    "(pass allow_non_mammogram=True to read it anyway)", Reason.not_mammogram)


def _has_mammography_view(ds) -> bool:
  for item in ds.get("ViewCodeSequence", []) or []:
    if (str(getattr(item, "CodeValue", "")).strip() in _MAMMOGRAPHY_VIEW_CODES
        or str(getattr(item, "CodeMeaning", "")).strip().lower() in _MAMMOGRAPHY_VIEW_MEANINGS):
      return True
  return any(token in MAMMOGRAPHY_VIEW_POSITIONS for token in _view_position_tokens(ds))


def _view_position_tokens(ds) -> list:
  """ViewPosition split into words, a trailing implant-displaced "ID" split off ("CCID" -> CC, ID)."""
  tokens = []
  for word in "".join(c if c.isalnum() else " " for c in _text(ds, "ViewPosition").upper()).split():
    if word.endswith("ID") and word[:-2] in MAMMOGRAPHY_VIEW_POSITIONS:
      tokens += [word[:-2], "ID"]
    else:
      tokens.append(word)
  return tokens


def view_modifiers(ds) -> tuple:
  """SourceImage.view_modifiers: what the tags say besides the view, in VIEW_MODIFIERS order.

  Read from View Modifier Code Sequence (0054,0222) inside View Code Sequence
  (codes or meanings), the view code itself (a specimen view), ImageType and
  ViewPosition words; a synthesized 2-D view is named too (SYNTHESIZED).
  Short words (MAG, ID, STX) count only as whole ImageType / ViewPosition
  values, longer ones also inside code meanings ("spot compression").
  """
  phrases, words = [], set(_image_type(ds)) | set(_view_position_tokens(ds))
  code_values = set()
  for item in ds.get("ViewCodeSequence", []) or []:
    for coded in [item] + list(item.get("ViewModifierCodeSequence", []) or []):
      code_values.add(str(getattr(coded, "CodeValue", "")).strip())
      phrases.append(str(getattr(coded, "CodeMeaning", "")).strip().upper())
  found = []
  for name in VIEW_MODIFIERS:
    spelled = _MODIFIER_WORDS[name]
    if (code_values & _MODIFIER_CODES[name] or words & set(spelled)
        or any(word in phrase for phrase in phrases for word in spelled if len(word) > 3)):
      found.append(name)
  if _is_synthesized(_image_type(ds)):
    found.append(SYNTHESIZED)
  return tuple(found)


def _check_one_grayscale_image(ds, path):
  """Refuses what is not one grayscale image with pixels, before decoding anything."""
  frames = int(ds.get("NumberOfFrames", 1) or 1)
  if frames > 1:
    raise SourceError(path, f"{frames} frames (a tomosynthesis stack or multi-frame file): expected one 2-D image",
                      Reason.multi_frame)
  photometric = _text(ds, "PhotometricInterpretation").upper()
  samples = int(ds.get("SamplesPerPixel", 1) or 1)
  if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
    raise SourceError(path, f"not grayscale: PhotometricInterpretation {photometric or 'missing'}, "
                      f"{samples} samples per pixel (expected MONOCHROME1/2)", Reason.not_grayscale)
  if "PixelData" not in ds:
    other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
    if other:
      raise SourceError(path, f"{other[0]} (floating-point pixels) is not supported: expected integer Pixel Data",
                        Reason.unsupported_pixels)
    raise SourceError(path, f"no pixel data: the header declares {ds.get('Rows', '?')}x{ds.get('Columns', '?')} "
                      "but there is no Pixel Data element (7FE0,0010)", Reason.no_pixel_data)


def _decoded_pixels(ds, path) -> np.ndarray:
  syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
  try:
    pixels = ds.pixel_array
  except Exception as error:  # decoders raise RuntimeError, ValueError, NotImplementedError...
    if syntax is not None and syntax.is_compressed:
      raise SourceError(path, f"pixel data cannot be decoded: transfer syntax {syntax.name} ({syntax}) "
                        f"({type(error).__name__}: {error})", Reason.undecodable) from None
    raise SourceError(path, "pixel data cannot be decoded, file corrupt or truncated? "
                      f"({type(error).__name__}: {error})", Reason.undecodable) from None
  if pixels.ndim != 2:
    raise SourceError(path, f"expected one 2-D grayscale frame, got pixel array of shape {pixels.shape}",
                      Reason.multi_frame)
  _check_size(pixels, path)
  if not np.issubdtype(pixels.dtype, np.integer):
    raise SourceError(path, f"{pixels.dtype} pixels are not supported: expected integer stored values",
                      Reason.unsupported_pixels)
  return pixels


def _check_size(pixels: np.ndarray, path):
  if min(pixels.shape) < MIN_SIDE:
    raise SourceError(path, f"{pixels.shape[0]}x{pixels.shape[1]} pixels: too small to be a mammogram "
                      f"(under {MIN_SIDE} on a side; stub pixels?)", Reason.too_small)


def _laterality(ds, path, strict: bool) -> Optional[str]:
  for keyword in ("ImageLaterality", "Laterality"):
    value = _text(ds, keyword).upper()
    if value in ("L", "R"):
      return value
    if value:
      raise SourceError(path, f"unknown {keyword} {value!r} (expected L or R)", Reason.bad_tag)
  if strict:
    raise SourceError(path, "no laterality tag: neither ImageLaterality (0020,0062) nor Laterality (0020,0060)",
                      Reason.no_laterality)
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
      raise SourceError(path, f"unknown view {meaning!r} in View Code Sequence (0054,0220)", Reason.no_view)
    if meaning:
      return None
  views = [token for token in _view_position_tokens(ds) if token in _VIEW_POSITIONS]  # "MAG CC", "CCID"
  if views:
    return _VIEW_POSITIONS[views[0]]
  if strict:
    raise SourceError(path, "no view: View Code Sequence (0054,0220) and ViewPosition are missing or empty",
                      Reason.no_view)
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
  padding = _padding(pixels, ds)
  image = pixels if padding is None else pixels[~padding]  # padding values take no part in the scaling
  if not image.size:
    raise SourceError(path, "every pixel is PixelPaddingValue: no image", Reason.blank)
  low, high = (0, 255) if pixels.dtype == np.uint8 else (min(0, int(image.min())), int(image.max()))
  per_pixel = high - low >= 1 << 16
  stored = np.clip(pixels, low, high).astype(np.int64) if per_pixel else np.arange(low, high + 1, dtype=np.int64)
  values = np.asarray(dicom_pixels.apply_modality_lut(stored, ds), dtype=np.float64)
  shown, voi = _voi(values, ds, path)
  inverted, polarity = _inverted(ds)
  if inverted:
    shown = 1.0 - shown
  table = np.rint(np.clip(shown, 0.0, 1.0) * 255.0).astype(np.uint8)
  description = ", ".join(part for part in (voi, polarity, "padding black" if padding is not None else "") if part)
  if per_pixel:
    result = table
  elif pixels.dtype == np.uint8 and np.array_equal(table, np.arange(256)) and padding is None:
    return pixels, description
  elif padding is None:
    result = table[pixels if low == 0 else pixels.astype(np.int32) - low]
  else:  # padding values may lie outside the image's range
    result = table[np.clip(pixels, low, high).astype(np.int32) - low]
  if padding is not None:
    result[padding] = 0  # padding is no tissue: background, whatever the polarity
  return result, description


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
      raise SourceError(path, f"WindowWidth {width:g} is below 1, invalid for a LINEAR window", Reason.bad_tag)
    return np.clip((values - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0) if width > 1 else \
        (values > centre - 0.5).astype(np.float64)
  if width <= 0:
    raise SourceError(path, f"WindowWidth {width:g} must be positive for a {function} window", Reason.bad_tag)
  if function == "LINEAR_EXACT":
    return np.clip((values - centre) / width + 0.5, 0.0, 1.0)
  if function == "SIGMOID":
    return 1.0 / (1.0 + np.exp(-4.0 * (values - centre) / width))
  raise SourceError(path, f"unknown VOILUTFunction {function!r} (expected LINEAR, LINEAR_EXACT or SIGMOID)",
                    Reason.bad_tag)


def _inverted(ds) -> tuple:
  """(whether the chain inverts, description); see the module docstring, step 4."""
  photometric = _text(ds, "PhotometricInterpretation").upper()
  inverted = photometric == "MONOCHROME1" or _text(ds, "PresentationLUTShape").upper() == "INVERSE"
  stated = photometric if photometric == "MONOCHROME1" else "Presentation LUT Shape INVERSE"
  return inverted, f"inverted ({stated})" if inverted else ""


def polarity_note(ds) -> str:
  """SourceImage.polarity_note: a PixelIntensityRelationshipSign that contradicts the display chain, or "".

  The sign says how stored values relate to X-ray intensity; it is not part
  of the display chain (PS3.3 C.8.11.7 vs C.11.6), and real For Presentation
  files (RSNA's MONOCHROME2 LOG +1) carry signs that contradict their
  Photometric Interpretation. It is noted and counted, never followed.
  """
  relationship = _text(ds, "PixelIntensityRelationship").upper()
  sign = ds.get("PixelIntensityRelationshipSign", None)
  if relationship not in ("LIN", "LOG") or sign not in (1, -1):
    return ""
  inverted, _ = _inverted(ds)
  # Sign -1: higher stored values are less X-ray, i.e. denser; a negative slope turns that round.
  dense_is_high = (sign == -1) == (float(ds.get("RescaleSlope", 1) or 1) > 0)
  if dense_is_high != inverted:
    return ""
  photometric = _text(ds, "PhotometricInterpretation").upper()
  said = "MONOCHROME1 / Presentation LUT Shape INVERSE" if inverted else \
      f"{photometric} without an INVERSE Presentation LUT Shape"
  return (f"PixelIntensityRelationship {relationship} sign {sign:+d} contradicts {said}; "
          "polarity from the Photometric Interpretation and Presentation LUT Shape")


def _padding(pixels: np.ndarray, ds) -> Optional[np.ndarray]:
  """Mask of the pixels PixelPaddingValue (..PixelPaddingRangeLimit) marks as no image, or None."""
  value = ds.get("PixelPaddingValue", None)
  if value is None or isinstance(value, (bytes, list, pydicom.multival.MultiValue)):
    return None
  limit = ds.get("PixelPaddingRangeLimit", None)
  low, high = (int(value), int(value)) if not isinstance(limit, int) else sorted((int(value), int(limit)))
  mask = (pixels >= low) & (pixels <= high)
  return mask if mask.any() else None


# ---- raster files -----------------------------------------------------------


def _read_raster(path, fileobj=None):
  """(2-D uint8 pixels, format, how they were scaled) of a PNG, JPEG, TIFF or PGM file; see the module docstring."""
  if fileobj is None and not os.path.exists(path):
    raise SourceError(path, "file not found", Reason.not_found)
  try:
    with Image.open(fileobj or path) as image:
      file_format = _RASTER_FORMATS.get(image.format)
      if file_format is None:
        raise SourceError(path, f"a {image.format} image: expected PNG, JPEG, TIFF or PGM", Reason.unreadable)
      if getattr(image, "n_frames", 1) > 1:
        raise SourceError(path, f"{image.n_frames} frames or pages: expected one 2-D image", Reason.multi_frame)
      image.load()
      pixels, scaling = _gray_uint8(image, path)
      _check_size(pixels, path)
      return pixels, file_format, scaling
  except SourceError:
    raise
  except Exception as error:
    raise SourceError(path, f"not a readable image, corrupt or truncated? ({type(error).__name__}: {error})",
                      Reason.unreadable) from None


def _gray_uint8(image: Image.Image, path):
  """(2-D uint8 pixels, how they were scaled) of an open image."""
  if image.mode == "L":
    return np.asarray(image, dtype=np.uint8).copy(), "8-bit"
  if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
    values = np.asarray(image)
    if values.min() < 0 or values.max() > 65535:
      raise SourceError(path, f"values {values.min()}..{values.max()} do not fit 16 bits", Reason.unsupported_pixels)
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
    raise SourceError(path, f"a colour ({image.mode}) image: expected grayscale", Reason.not_grayscale)
  raise SourceError(path, f"image mode {image.mode} is not supported: expected 8- or 16-bit grayscale",
                    Reason.not_grayscale)
