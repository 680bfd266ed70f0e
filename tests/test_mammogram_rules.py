"""What counts as a mammogram, polarity, padding and view modifiers: fixtures written to break each rule.

Each fixture is a pydicom-written file shaped like a real archive's (a
digitized film stored as Secondary Capture, RSNA's stripped DX export, a
tomosynthesis slice stored as CT, ...); each test asserts the rule that
admitted or refused it and, where pixels matter, that a planted bright
lesion is still bright after reading.
"""
import json

import numpy as np
import pydicom
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
import pytest

from mammo_tfds import sources
from mammo_tfds.reasons import Reason
from mammo_train.inference import discovery, predictor
from tests.test_sources import _dataset, _write

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CT = "1.2.840.10008.5.1.4.1.1.2"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
BREAST_TOMOSYNTHESIS = "1.2.840.10008.5.1.4.1.1.13.1.3"
BACKGROUND, TISSUE, LESION = 0, 1500, 3500  # 12-bit stored values, higher = brighter on MONOCHROME2
LESION_AT = (48, 20)


def _breast(padding_value=None) -> np.ndarray:
  """96x80 12-bit: a half-disc breast on the left, a bright lesion in it, padding in the far corner."""
  yy, xx = np.mgrid[:96, :80]
  pixels = np.full((96, 80), BACKGROUND, np.uint16)
  pixels[(yy - 48) ** 2 + xx ** 2 < 60 ** 2] = TISSUE
  pixels[(yy - LESION_AT[0]) ** 2 + (xx - LESION_AT[1]) ** 2 < 36] = LESION
  if padding_value is not None:
    pixels[:10, -10:] = padding_value
  return pixels


def _assert_lesion_bright(image: sources.SourceImage):
  """The lesion brighter than the tissue, the tissue brighter than the background (not a negative)."""
  lesion, tissue, background = image.pixels[LESION_AT], image.pixels[48, 40], image.pixels[90, 75]
  assert lesion > tissue > background, (lesion, tissue, background)


def _code(value: str, meaning: str, scheme="SCT", modifiers=()) -> Dataset:
  item = Dataset()
  item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
  if modifiers:
    item.ViewModifierCodeSequence = Sequence(list(modifiers))
  return item


def _film(tmp_path, name, **tags):
  """A digitized film as Secondary Capture: no ImageLaterality or ViewPosition, a window over 12 bits."""
  ds = _dataset(_breast(), sop_class=SECONDARY_CAPTURE, bits=12, WindowCenter=2048, WindowWidth=4096, **tags)
  del ds.ImageLaterality, ds.ViewPosition
  return _write(tmp_path, ds, name)


# ---- what counts as a mammogram -----------------------------------------------------


@pytest.mark.parametrize("modality", ["RG", "OT"])
def test_digitized_film_as_secondary_capture_with_breast_and_laterality_is_admitted(tmp_path, modality):
  path = _film(tmp_path, "film.dcm", modality=modality, BodyPartExamined="BREAST", Laterality="R")
  image = sources.read(path)
  assert image.admitted_by == "body part BREAST + laterality" and image.laterality == "R"
  _assert_lesion_bright(image)
  # Without the laterality (or the body part) nothing says it is a breast: one line, its own code.
  bare = _film(tmp_path, "bare.dcm", modality=modality, BodyPartExamined="BREAST")
  with pytest.raises(sources.SourceError, match=f"bare.dcm: not a mammogram: Modality {modality}, Secondary "
                     "Capture Image Storage, BodyPartExamined BREAST, no laterality") as refused:
    sources.read(bare)
  assert refused.value.code == Reason.not_mammogram


def test_mammography_view_code_with_a_laterality_is_admitted(tmp_path):
  path = _film(tmp_path, "view.dcm", modality="OT", Laterality="L",
               ViewCodeSequence=Sequence([_code("R-10242", "cranio-caudal", "SRT")]))
  image = sources.read(path)
  assert (image.admitted_by, image.view) == ("view code + laterality", "CC")


def test_tomosynthesis_slice_stored_as_ct_is_refused_with_its_own_code(tmp_path):
  ds = _dataset(_breast(), sop_class=CT, modality="CT", bits=12, BodyPartExamined="BREAST",
                ImageType=["DERIVED", "PRIMARY", "TOMO"])
  path = _write(tmp_path, ds, "slice.dcm")
  for allow in (False, True):  # allow_non_mammogram does not make a slice a 2-D mammogram
    with pytest.raises(sources.SourceError, match="slice.dcm: a tomosynthesis image \\(ImageType TOMO, Modality "
                       "CT\\)") as refused:
      sources.read(path, allow_non_mammogram=allow)
    assert refused.value.code == Reason.tomosynthesis
  one_frame = _write(tmp_path, _dataset(_breast(), sop_class=BREAST_TOMOSYNTHESIS, bits=12), "bto.dcm")
  with pytest.raises(sources.SourceError, match="Breast Tomosynthesis Image Storage") as refused:
    sources.read(one_frame)
  assert refused.value.code == Reason.tomosynthesis


def test_synthesized_2d_view_is_admitted_and_named(tmp_path):
  ds = _dataset(_breast(), bits=12, WindowCenter=2048, WindowWidth=4096,
                ImageType=["DERIVED", "PRIMARY", "TOMOSYNTHESIS", "GENERATED_2D"])
  image = sources.read(_write(tmp_path, ds))
  assert image.admitted_by == "modality MG" and image.view_modifiers == (sources.SYNTHESIZED,)


def _stripped_dx(tmp_path, name="rsna.dcm", **tags):
  """RSNA's export: no Modality, SOP class only in the file meta, JPEG 2000 lossless, LOG +1, padding."""
  pixels = _breast(padding_value=4095)
  ds = _dataset(pixels, sop_class=DX_FOR_PRESENTATION, bits=12, WindowCenter=2000, WindowWidth=4000,
                PixelIntensityRelationship="LOG", PixelIntensityRelationshipSign=1, PixelPaddingValue=4095,
                PresentationLUTShape="IDENTITY", **tags)
  del ds.Modality, ds.SOPClassUID, ds.ViewPosition
  ds.compress(uid.JPEG2000Lossless, pixels)
  return _write(tmp_path, ds, name)


def test_stripped_dx_for_presentation_is_admitted_not_inverted_and_padding_is_black(tmp_path):
  path = _stripped_dx(tmp_path)
  image = sources.read(path)
  assert image.admitted_by == "DX for presentation + ImageLaterality"
  _assert_lesion_bright(image)
  assert image.pixels[:10, -10:].max() == 0  # padding (stored 4095, the brightest value) is background
  assert "padding black" in image.grayscale
  assert image.polarity_note.startswith("PixelIntensityRelationship LOG sign +1 contradicts MONOCHROME2")
  # The same file with another body part is not a mammogram.
  with pytest.raises(sources.SourceError, match="not a mammogram: Modality missing, Digital X-Ray Image Storage - "
                     "For Presentation, BodyPartExamined CHEST"):
    sources.read(_stripped_dx(tmp_path, "chest.dcm", BodyPartExamined="CHEST"))


def test_monochrome2_identity_keeps_a_bright_lesion_bright_whatever_the_sign(tmp_path):
  for sign in (1, -1):
    ds = _dataset(_breast(), bits=12, WindowCenter=2048, WindowWidth=4096, PresentationLUTShape="IDENTITY",
                  PixelIntensityRelationship="LOG", PixelIntensityRelationshipSign=sign)
    image = sources.read(_write(tmp_path, ds, f"sign{sign}.dcm"))
    _assert_lesion_bright(image)
    assert bool(image.polarity_note) == (sign == 1)


def test_a_manifest_row_vouches_for_a_file_no_tag_rule_admits(tmp_path):
  path = _film(tmp_path, "untagged.dcm", modality="OT")
  with pytest.raises(sources.SourceError, match="not a mammogram"):
    sources.read(path)
  assert sources.read(path, evidence="manifest").admitted_by == "manifest"
  with pytest.raises(ValueError, match="evidence must be one of"):
    sources.read(path, evidence="trust me")
  manifest = tmp_path / "manifest.csv"
  manifest.write_text("path,patient_id,laterality\nuntagged.dcm,P9,R\n")
  result = predictor.predict_files(_brightness, [str(path)], stored_size=64, image_size=64, workers=1,
                                   manifest=discovery.read_manifest(manifest))
  image_rows, _ = predictor.rows(result, {"image": 0.5, "breast": 0.5})
  assert not result.failures and image_rows[0]["admitted_by"] == "manifest"


# ---- view modifiers ----------------------------------------------------------------

CC = ("399162004", "cranio-caudal")
VIEWS = {
    "stereotactic": dict(ImageType=["ORIGINAL", "PRIMARY", "STEREOTACTIC"]),
    "specimen": dict(ViewCodeSequence=Sequence([_code("127457009", "tissue specimen from breast")])),
    "spot": dict(ViewCodeSequence=Sequence([_code(*CC, modifiers=[_code("399055006", "Spot Compression")])])),
    "magnification": dict(ViewPosition="MAG CC"),
    "implant displaced": dict(ViewPosition="CCID"),
}


@pytest.fixture()
def modified_views(tmp_path):
  paths = {}
  for name, tags in VIEWS.items():
    ds = _dataset(_breast(), bits=12, WindowCenter=2048, WindowWidth=4096, PatientID=name, **tags)
    paths[name] = str(_write(tmp_path, ds, name.replace(" ", "_") + ".dcm"))
  return paths


def test_view_modifiers_are_read_from_codes_image_type_and_view_position(modified_views):
  for name, path in modified_views.items():
    assert sources.read(path).view_modifiers == (name,), name
  assert sources.read(modified_views["implant displaced"]).view == "CC"


def _brightness(images):
  return np.asarray(images, dtype=float).mean(axis=(1, 2, 3))[:, None] / 255.0


def test_predict_refuses_stereotactic_and_specimen_and_flags_the_others(modified_views, tmp_path):
  files = list(modified_views.values())
  result = predictor.predict_files(_brightness, files, stored_size=64, image_size=64, workers=1)
  assert {(f.path, f.reason) for f in result.failures} == {
      (modified_views["stereotactic"], Reason.stereotactic), (modified_views["specimen"], Reason.specimen)}
  image_rows, breast_rows = predictor.rows(result, {"image": 0.5, "breast": 0.5})
  assert {row["source"]: row["view_modifiers"] for row in image_rows} == {
      modified_views[name]: name for name in ("spot", "magnification", "implant displaced")}
  assert {row["view_modifiers"] for row in breast_rows} == {"spot", "magnification", "implant displaced"}
  line = predictor.summary(result, image_rows, breast_rows)
  assert line.endswith("view modifiers 1 implant displaced, 1 magnification, 1 spot; "
                       "skipped 2: 1 specimen, 1 stereotactic")
  _, json_path = predictor.write(tmp_path / "out", {"model": "stub"}, result, image_rows, breast_rows)
  assert json.loads(json_path.read_text())["skipped_by_reason"] == {"specimen": 1, "stereotactic": 1}
  allowed = predictor.predict_files(_brightness, files, stored_size=64, image_size=64, workers=1,
                                    allow_view_modifiers=True)
  assert not allowed.failures and len(allowed.images) == len(files)


# ---- the real GE file -------------------------------------------------------------


def test_real_ge_for_presentation_image_is_not_inverted(shared_data):
  path = shared_data / "real-mammograms" / "ge_senographe_mlo_jpeg_lossless.dcm"
  if not path.exists():
    pytest.skip(f"{path} not found")
  image = sources.read(path)
  assert image.admitted_by == "modality MG" and image.view_modifiers == () and image.polarity_note == ""
  stored = pydicom.dcmread(path).pixel_array
  breast = stored > 0
  assert 0.1 < breast.mean() < 0.9  # a breast on a background
  # Breast brighter than the background (black, not white as in a negative), denser stored values brighter.
  assert image.pixels[~breast].max() == 0 and image.pixels[breast].mean() > 50
  low, high = np.percentile(stored[breast], [10, 90])
  assert image.pixels[stored >= high].mean() > image.pixels[breast & (stored <= low)].mean() + 50


def test_reason_codes_are_their_own_names_so_json_keys_find_them():
  assert all(reason.name == reason.value for reason in Reason)
  assert {Reason.blank: 1}["blank"] == 1 and f"{Reason.not_mammogram}" == "not_mammogram"


@pytest.mark.parametrize("name, code", [
    ("openrem_MG-Im-GE_Seno_1_ForPresentation.dcm", Reason.too_small),
    ("openrem_MG-Im-GE_Seno_2_ForPresentation.dcm", Reason.too_small),
    ("openrem_MG-Im-GE_Seno_1_ForProcessing.dcm", Reason.for_processing),
    ("openrem_MG-Im-GE-SenDS-scaled.dcm", Reason.for_processing),
    ("openrem_MG-Im-Hologic-PropProj.dcm", Reason.no_pixel_data),
])
def test_real_refusals_carry_their_codes(shared_data, name, code):
  path = shared_data / "real-mammograms" / name
  if not path.exists():
    pytest.skip(f"{path} not found")
  with pytest.raises(sources.SourceError) as refused:
    sources.read(path)
  assert refused.value.code == code
