"""Why an input was left out: one short code per cause, counted by builds and predictions.

A `SourceError` carries its code from the line that raises it and a builder's
`generation.Skip` its own, so a summary ("skipped 3: 1 for_processing, 2
not_mammogram") and predictions.json count causes without parsing messages.
Codes are `str` values (`Reason.blank == "blank"`), so they serialise as the
bare code in JSON, CSV and log lines. Each member's name is its value: Enum
hashes a member by its name, so only then does a code read back from JSON
(a plain str) find its entry in a dict keyed by Reason, and the reverse.
"""
import enum


class Reason(str, enum.Enum):
  """The cause of a skip or refusal; the value is the code written in summaries."""
  # Reading a file.
  not_found = "not_found"  # no such file
  unreadable = "unreadable"  # neither DICOM nor a supported raster image, or corrupt
  changed = "changed"  # the file changed between a build's two passes
  # What the file holds.
  not_mammogram = "not_mammogram"  # no rule of sources' "what counts as a mammogram" admits it
  tomosynthesis = "tomosynthesis"  # a tomosynthesis reconstruction or projection, not a 2-D mammogram
  for_processing = "for_processing"  # raw detector data, not meant to be shown
  multi_frame = "multi_frame"  # more than one frame or page
  not_grayscale = "not_grayscale"  # colour
  no_pixel_data = "no_pixel_data"  # a header without Pixel Data
  undecodable = "undecodable"  # pixel data the decoders cannot turn into values
  unsupported_pixels = "unsupported_pixels"  # floating-point or over-wide values
  bad_tag = "bad_tag"  # a tag with a value the grayscale chain cannot use (window, laterality)
  too_small = "too_small"  # fewer than sources.MIN_SIDE pixels on a side (stub pixels)
  wrong_size = "wrong_size"  # not the size the dataset's coordinates are for (mini-MIAS)
  blank = "blank"  # no breast found in the pixels
  # What the file says about itself.
  no_patient_id = "no_patient_id"
  no_laterality = "no_laterality"
  no_view = "no_view"
  stereotactic = "stereotactic"  # a stereotactic (biopsy guidance) view: refused by predict
  specimen = "specimen"  # a specimen radiograph: refused by predict
  # Labels and listings.
  missing_images = "missing_images"  # a label row whose images are not there
  no_label_row = "no_label_row"  # a file where the label table's rows say its images are, named by no row
  laterality_disagrees = "laterality_disagrees"  # the file's laterality tag contradicts its label row
  full_mammogram_missing = "full_mammogram_missing"  # CBIS-DDSM: a film's full-mammogram file is not there
  full_mammogram_unusable = "full_mammogram_unusable"  # CBIS-DDSM: undecodable, a binary mask, or blank
  unusable = "unusable"  # a SourceError raised without a more specific code
  unexpected_error = "unexpected_error"  # a reader or decoder bug: one file must not lose the others

  def __str__(self) -> str:
    return self.value

  def __format__(self, spec: str) -> str:
    return format(self.value, spec)
