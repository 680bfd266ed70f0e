"""mammo_tfds.sources on the real vendor / converter files, and pydicom-written fixtures for what they lack.

Each case asserts pixel values or polarity, not only that reading succeeds.
"""
import numpy as np
from PIL import Image
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom import encaps, uid
import pytest

from mammo_tfds import imaging, phantom, sources
from mammo_tfds.reasons import Reason

MAMMOGRAPHY = "1.2.840.10008.5.1.4.1.1.1.2"
MAMMOGRAPHY_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(scope="module")
def real(shared_data):
  folder = shared_data / "real-mammograms"
  if not folder.is_dir():
    pytest.skip(f"{folder} not found")
  return folder


def _sigmoid(values, centre, width):
  return np.rint(255.0 / (1.0 + np.exp(-4.0 * (np.asarray(values, np.float64) - centre) / width)))


# ---- the real files ---------------------------------------------------------


def test_ge_jpeg_lossless_decodes_through_its_first_sigmoid_window(real):
  path = real / "ge_senographe_mlo_jpeg_lossless.dcm"
  image = sources.read(path)
  stored = pydicom.dcmread(path).pixel_array
  assert image.format == "dicom" and image.pixels.dtype == np.uint8 and image.pixels.shape == (3062, 2394)
  assert (image.laterality, image.view, image.chest_wall) == ("R", "MLO", "right")
  assert image.grayscale == "window 1 of 3 SIGMOID centre 2653 width 900, padding black"  # PixelPaddingValue 0
  sample = stored[::37, ::41]
  np.testing.assert_array_equal(image.pixels[::37, ::41], _sigmoid(sample, 2653, 900))
  # Bright = dense: background (stored 0) black, fatty tissue above the breast threshold, dense tissue bright.
  assert image.pixels[stored == 0].max() == 0
  breast = image.pixels[stored > 2000]
  assert np.median(breast) > imaging.BREAST_THRESHOLD and np.percentile(breast, 99) > 150


def test_ge_file_is_oriented_by_its_patient_orientation(real):
  image = sources.read(real / "ge_senographe_mlo_jpeg_lossless.dcm")
  result = imaging.preprocess(image.pixels, 64, image.path, image.chest_wall, image.laterality)
  assert result.flipped and result.orientation == "tags"
  assert result.image[:, :8].mean() > result.image[:, -8:].mean()  # chest wall now on the left


@pytest.mark.parametrize("name, window", [
    ("openrem_MG-Im-GE_Seno_1_ForPresentation.dcm", (2262, 380)),
    ("openrem_MG-Im-GE_Seno_2_ForPresentation.dcm", (1792, 380)),
])
def test_ge_for_presentation_headers_use_the_first_window_but_their_stub_pixels_are_refused(real, name, window):
  ds = pydicom.dcmread(real / name)
  pixels, grayscale = sources.to_uint8(ds.pixel_array, ds, name)
  np.testing.assert_array_equal(pixels, _sigmoid(ds.pixel_array, *window))
  assert grayscale == f"window 1 of 3 SIGMOID centre {window[0]} width {window[1]}"
  # PatientOrientation R\P: valid letters, but the rows run left-right of the patient, not A/P.
  assert sources.chest_wall_from_orientation(ds) is None
  with pytest.raises(sources.SourceError, match=f"{name}: 1x2 pixels: too small to be a mammogram"):
    sources.read(real / name)


@pytest.mark.parametrize("name", ["openrem_MG-Im-GE_Seno_1_ForProcessing.dcm", "openrem_MG-Im-GE-SenDS-scaled.dcm"])
def test_for_processing_images_are_refused(real, name):
  with pytest.raises(sources.SourceError, match=f"{name}: a For Processing \\(raw detector\\) image"):
    sources.read(real / name)


def test_header_without_pixel_data_says_so(real):
  name = "openrem_MG-Im-Hologic-PropProj.dcm"
  with pytest.raises(sources.SourceError, match=f"{name}: no pixel data: the header declares 425x266"):
    sources.read(real / name)


@pytest.mark.parametrize("view", ["L-CC", "L-MLO", "R-CC", "R-MLO"])
def test_nyu_sixteen_bit_png_keeps_its_twelve_bits(real, view):
  path = real / f"nyu_gmic_0_{view}.png"
  image = sources.read(path)
  with Image.open(path) as raw:
    values = np.asarray(raw).astype(np.float64)
  assert values.max() == 4095  # 12-bit data in a 16-bit container
  assert image.format == "png" and image.patient_id is None and image.laterality is None
  assert image.grayscale == "I;16 image with 12-bit values, divided by 4095"
  np.testing.assert_array_equal(image.pixels, np.rint(values * 255 / 4095))
  breast = image.pixels[values > 0]
  assert (breast == 255).mean() < 0.05 and np.std(breast) > 20  # tissue detail, not a white silhouette
  # No tags: the image border the breast touches puts the chest wall left (the edge rule alone flips all four).
  result = imaging.preprocess(image.pixels, 64, image.path)
  assert result.flipped == view.startswith("R") and result.orientation == "pixels"


# ---- fixtures for what the real files lack ------------------------------------


def _dataset(values, sop_class=MAMMOGRAPHY, modality="MG", bits=None, **tags) -> Dataset:
  values = np.asarray(values)
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = sop_class
  meta.MediaStorageSOPInstanceUID = uid.generate_uid()
  meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
  ds = Dataset()
  ds.file_meta = meta
  ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
  ds.StudyInstanceUID = "1.2.3.4"
  ds.Modality = modality
  ds.PatientID = "P1"
  ds.ImageLaterality = "L"
  ds.ViewPosition = "CC"
  ds.Rows, ds.Columns = values.shape[-2:]
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = "MONOCHROME2"
  ds.BitsAllocated = values.dtype.itemsize * 8
  ds.BitsStored = bits or ds.BitsAllocated
  ds.HighBit = ds.BitsStored - 1
  ds.PixelRepresentation = 0
  for keyword, value in tags.items():
    setattr(ds, keyword, value)
  ds.PixelData = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()
  return ds


def _write(tmp_path, ds, name="image.dcm"):
  path = tmp_path / name
  ds.save_as(path, enforce_file_format=True)
  return path


RAMP12 = np.arange(4096, dtype=np.uint16).reshape(64, 64)
RAMP = RAMP12.astype(np.float64)


def test_monochrome1_with_a_voi_lut_sequence_is_inverted_after_the_lut(tmp_path):
  item = Dataset()
  item.LUTDescriptor = [2048, 1024, 10]  # 2048 entries from stored value 1024, 10-bit output
  lut = np.linspace(0, 1023, 2048).round().astype(np.uint16)
  item.LUTData = lut.tobytes()
  item["LUTData"].VR = "OW"
  ds = _dataset(RAMP12, bits=12, PhotometricInterpretation="MONOCHROME1", VOILUTSequence=[item])
  image = sources.read(_write(tmp_path, ds))
  expected_lut = lut[np.clip(RAMP12.astype(int) - 1024, 0, 2047)].astype(np.float64)
  np.testing.assert_array_equal(image.pixels, 255 - np.rint(expected_lut * 255 / 1023))
  assert image.pixels.flat[0] == 255 and image.pixels.flat[-1] == 0  # low stored values are dense
  assert image.grayscale == "VOI LUT 1 of 1, inverted (MONOCHROME1)"


def test_presentation_lut_shape_inverse_inverts_monochrome2(tmp_path):
  plain = sources.read(_write(tmp_path, _dataset(RAMP12, bits=12), "plain.dcm"))
  inverse = sources.read(_write(tmp_path, _dataset(RAMP12, bits=12, PresentationLUTShape="INVERSE"), "inverse.dcm"))
  np.testing.assert_array_equal(inverse.pixels, 255 - plain.pixels)
  # Without a window, 12-bit data is scaled 0..max.
  np.testing.assert_array_equal(plain.pixels, np.rint(RAMP * 255 / 4095))


def test_monochrome1_with_inverse_shape_is_inverted_once(tmp_path):
  ds = _dataset(RAMP12, bits=12, PhotometricInterpretation="MONOCHROME1", PresentationLUTShape="INVERSE")
  image = sources.read(_write(tmp_path, ds))
  assert image.pixels.flat[0] == 255 and image.pixels.flat[-1] == 0


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_sixteen_bit_window_functions_follow_the_standard(tmp_path, function):
  values = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
  centre, width = 30000.0, 20001.0
  ds = _dataset(values, WindowCenter=[centre, 100.0], WindowWidth=[width, 50.0], VOILUTFunction=function,
                RescaleSlope=1, RescaleIntercept=0)
  image = sources.read(_write(tmp_path, ds))
  x = values.astype(np.float64)
  if function == "LINEAR":
    expected = np.clip((x - (centre - 0.5)) / (width - 1) + 0.5, 0, 1) * 255
  elif function == "LINEAR_EXACT":
    expected = np.clip((x - centre) / width + 0.5, 0, 1) * 255
  else:
    expected = 255 / (1 + np.exp(-4 * (x - centre) / width))
  np.testing.assert_array_equal(image.pixels, np.rint(expected))
  assert image.grayscale.startswith(f"window 1 of 2 {function}")


def test_rescale_is_applied_before_the_window(tmp_path):
  ds = _dataset(RAMP12, bits=12, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=3000, WindowWidth=2001)
  image = sources.read(_write(tmp_path, ds))
  x = RAMP * 2 - 1000
  np.testing.assert_array_equal(image.pixels, np.rint(np.clip((x - 2999.5) / 2000 + 0.5, 0, 1) * 255))


def test_thirty_two_bit_values_are_windowed_per_pixel(tmp_path):
  values = (RAMP12.astype(np.uint32) << 16)  # values up to 2^28: no table over every stored value
  ds = _dataset(values, WindowCenter=2.0 ** 27, WindowWidth=2.0 ** 27, VOILUTFunction="LINEAR_EXACT")
  image = sources.read(_write(tmp_path, ds))
  np.testing.assert_array_equal(image.pixels, np.rint(np.clip(values / 2.0 ** 27 - 0.5, 0, 1) * 255))


def test_cmmd_full_range_sigmoid_window_keeps_8_bit_pixels_as_stored(tmp_path):
  pixels = phantom.draw(np.random.default_rng(0), 120, 100, True, "L", "MLO")
  ds = _dataset(pixels, WindowCenter=128, WindowWidth=256, VOILUTFunction="SIGMOID")
  image = sources.read_dicom(_write(tmp_path, ds))
  np.testing.assert_array_equal(image.pixels, pixels)
  assert "whole 8-bit range: stored values shown" in image.grayscale


def test_contradicting_intensity_sign_is_noted_not_followed(tmp_path):
  # MONOCHROME2 with sign +1 (RSNA's For Presentation files): the display chain decides, the sign is only noted.
  ds = _dataset(RAMP12, bits=12, PixelIntensityRelationship="LOG", PixelIntensityRelationshipSign=1)
  image = sources.read(_write(tmp_path, ds))
  assert image.pixels.flat[0] == 0 and image.pixels.flat[-1] == 255
  assert image.polarity_note.startswith("PixelIntensityRelationship LOG sign +1 contradicts MONOCHROME2")
  consistent = _dataset(RAMP12, bits=12, PixelIntensityRelationship="LOG", PixelIntensityRelationshipSign=-1)
  image = sources.read(_write(tmp_path, consistent, "consistent.dcm"))
  assert image.pixels.flat[0] == 0 and image.polarity_note == ""


@pytest.mark.parametrize("syntax", [uid.RLELossless, uid.JPEGLSLossless, uid.JPEG2000Lossless,
                                    uid.DeflatedExplicitVRLittleEndian])
def test_compressed_transfer_syntaxes_decode_to_the_native_pixels(tmp_path, syntax):
  values = (RAMP12 * 7 % 4096).astype(np.uint16)
  native = sources.read(_write(tmp_path, _dataset(values, bits=12, WindowCenter=2048, WindowWidth=1000), "n.dcm"))
  ds = _dataset(values, bits=12, WindowCenter=2048, WindowWidth=1000)
  if syntax == uid.DeflatedExplicitVRLittleEndian:
    ds.file_meta.TransferSyntaxUID = syntax
  else:
    ds.compress(syntax, values, encoding_plugin="pyjpegls" if syntax == uid.JPEGLSLossless else "")
  path = _write(tmp_path, ds, "c.dcm")
  assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
  np.testing.assert_array_equal(sources.read(path).pixels, native.pixels)


def test_undecodable_pixel_data_names_the_transfer_syntax(tmp_path):
  ds = _dataset(RAMP12, bits=12)
  ds.file_meta.TransferSyntaxUID = uid.JPEGLosslessSV1
  ds.PixelData = encaps.encapsulate([b"\xff\xd8 not a jpeg stream"])
  ds["PixelData"].VR = "OB"
  with pytest.raises(sources.SourceError, match=r"image.dcm: pixel data cannot be decoded: transfer syntax "
                     r"JPEG Lossless, Non-Hierarchical, First-Order Prediction .*\(1\.2\.840\.10008\.1\.2\.4\.70\)"):
    sources.read(_write(tmp_path, ds))


def test_for_processing_fixture_is_refused_by_its_intent(tmp_path):
  ds = _dataset(RAMP12, bits=12, PresentationIntentType="FOR PROCESSING")
  with pytest.raises(sources.SourceError, match="For Processing"):
    sources.read(_write(tmp_path, ds))
  with pytest.raises(sources.SourceError, match="For Processing"):
    sources.read(_write(tmp_path, _dataset(RAMP12, bits=12, sop_class=MAMMOGRAPHY_FOR_PROCESSING), "sop.dcm"))


def test_multi_frame_file_is_refused(tmp_path):
  frames = np.stack([RAMP12] * 3)
  ds = _dataset(frames, bits=12, NumberOfFrames=3)
  with pytest.raises(sources.SourceError, match="3 frames \\(a tomosynthesis stack or multi-frame file\\)"):
    sources.read(_write(tmp_path, ds))


def test_ct_image_is_refused_unless_allowed(tmp_path):
  ds = _dataset(RAMP12, sop_class=CT, modality="CT", bits=12, RescaleSlope=1, RescaleIntercept=-1024,
                BodyPartExamined="CHEST")
  path = _write(tmp_path, ds)
  with pytest.raises(sources.SourceError, match="not a mammogram: Modality CT, CT Image Storage, BodyPartExamined "
                     r"CHEST, a laterality \(pass allow_non_mammogram=True") as refused:
    sources.read(path)
  assert refused.value.code == Reason.not_mammogram
  image = sources.read(path, allow_non_mammogram=True)
  assert image.admitted_by == "allow_non_mammogram"
  # Rescaled to -1024..3071, no window: scaled from the lowest value to the highest.
  np.testing.assert_array_equal(image.pixels, np.rint(RAMP * 255 / 4095))


def test_colour_dicom_is_refused(tmp_path):
  ds = _dataset(np.zeros((4, 4, 3), np.uint8), PhotometricInterpretation="RGB", SamplesPerPixel=3)
  with pytest.raises(sources.SourceError, match="not grayscale: PhotometricInterpretation RGB"):
    sources.read(_write(tmp_path, ds))


@pytest.mark.parametrize("orientation, side", [
    (["A", "R"], "left"), (["P", "L"], "right"), (["P", "FL"], "right"), (["AL", "F"], "left"),
    ("CC", None), ("MLO", None), (["R", "P"], None), (["X", "Y"], None), (["A"], None), (None, None),
])
def test_patient_orientation_is_validated_before_it_is_trusted(orientation, side):
  ds = Dataset()
  if orientation is not None:
    ds.PatientOrientation = orientation
  assert sources.chest_wall_from_orientation(ds) == side


def test_dicom_tags_without_laterality_or_view_are_none_for_read_but_fail_read_dicom(tmp_path):
  ds = _dataset(RAMP12, bits=12)
  del ds.ImageLaterality
  del ds.ViewPosition
  path = _write(tmp_path, ds)
  image = sources.read(path)
  assert (image.laterality, image.view, image.patient_id, image.study_uid) == (None, None, "P1", "1.2.3.4")
  with pytest.raises(sources.SourceError, match="no laterality tag"):
    sources.read_dicom(path)


def test_not_a_dicom_file_and_missing_files(tmp_path):
  path = tmp_path / "notes.txt"
  path.write_text("hello")
  with pytest.raises(sources.SourceError, match="notes.txt: not a readable DICOM file"):
    sources.read(path)
  with pytest.raises(sources.SourceError, match="file not found"):
    sources.read(tmp_path / "missing.png")


# ---- raster files -------------------------------------------------------------


def test_sixteen_bit_tiff_is_scaled_by_its_bit_depth(tmp_path):
  values = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 16 bits used
  path = tmp_path / "image.tif"
  Image.fromarray(values).save(path)
  image = sources.read(path)
  assert image.format == "tiff"
  np.testing.assert_array_equal(image.pixels, np.rint(values.astype(np.float64) * 255 / 65535))


def test_eight_bit_png_and_jpeg_are_kept_as_stored(tmp_path):
  pixels = phantom.draw(np.random.default_rng(1), 120, 100, False, "R", "CC")
  Image.fromarray(pixels).save(tmp_path / "a.png")
  Image.fromarray(pixels).save(tmp_path / "a.jpg", quality=95)
  np.testing.assert_array_equal(sources.read(tmp_path / "a.png").pixels, pixels)
  jpeg = sources.read(tmp_path / "a.jpg")
  assert jpeg.format == "jpeg" and np.abs(jpeg.pixels.astype(int) - pixels).mean() < 2


def test_gray_saved_as_rgb_is_converted_and_colour_refused(tmp_path):
  pixels = phantom.draw(np.random.default_rng(1), 120, 100, False, "R", "CC")
  Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(tmp_path / "gray.png")
  np.testing.assert_array_equal(sources.read(tmp_path / "gray.png").pixels, pixels)
  colour = np.stack([pixels, pixels // 2, pixels], axis=-1)
  Image.fromarray(colour).save(tmp_path / "colour.png")
  with pytest.raises(sources.SourceError, match="colour.png: a colour \\(RGB\\) image"):
    sources.read(tmp_path / "colour.png")


# ---- tag hints through imaging.preprocess ------------------------------------------


def _half_disc(chest_wall_right: bool):
  """A breast whose cut edge (chest wall) is decisive for the pixel rule."""
  rows, cols = np.mgrid[0:200, 0:160]
  radius = np.hypot(rows - 100, cols)
  pixels = np.where(radius < 120, 25 + 175 * (1 - radius / 120), 0)  # fades towards the skin
  pixels = pixels.astype(np.uint8)
  return pixels[:, ::-1].copy() if chest_wall_right else pixels


def test_without_hints_preprocess_is_the_pixel_rule():
  pixels = _half_disc(True)
  result = imaging.preprocess(pixels, 32)
  assert result.flipped and result.orientation == "pixels"


def test_patient_orientation_decides_and_a_decisive_disagreement_is_recorded():
  pixels = _half_disc(True)
  agree = imaging.preprocess(pixels, 32, chest_wall="right")
  assert agree.flipped and agree.orientation == "tags"
  disagree = imaging.preprocess(pixels, 32, chest_wall="left")
  assert not disagree.flipped and disagree.orientation == "tags, pixels disagree"


def test_laterality_cannot_overrule_decisive_pixels_but_breaks_a_tie():
  pixels = _half_disc(True)
  result = imaging.preprocess(pixels, 32, laterality="L")
  assert result.flipped and result.orientation == "pixels, laterality disagrees"
  symmetric = np.zeros((100, 100), np.uint8)
  symmetric[20:80, :] = 100  # cut on both sides: the edges cannot tell
  assert imaging.preprocess(symmetric, 32, laterality="R").orientation == "laterality"
  assert imaging.preprocess(symmetric, 32, laterality="R").flipped
  assert not imaging.preprocess(symmetric, 32, laterality="L").flipped
