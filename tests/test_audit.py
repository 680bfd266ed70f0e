"""The build audit (mammo_tfds.audit): audit.csv and audit.html account for every file a build looked at.

Parsed back as a user's tools would (csv, html.parser): every example and
every skip is a row and a card, every image on the page is a file, and the
page's menus and counts agree with the CSV. Built on the synthetic tiny
dataset (conftest), the real mini-MIAS archive and a manifest folder with a
missing, an unreadable and a For Processing file.
"""
import collections
import csv
import html.parser
import pathlib
import shutil

import pytest
import tensorflow_datasets as tfds

from mammo_tfds import audit, builder_configs
from mammo_tfds.reasons import Reason
from mammo_tfds.manifest import manifest_dataset_builder
from mammo_tfds.mias import examples as mias_examples
from mammo_tfds.mias import mias_dataset_builder
from tools import write_manifest

FOR_PROCESSING = "real-mammograms/openrem_MG-Im-GE_Seno_1_ForProcessing.dcm"


class _Page(html.parser.HTMLParser):
  """The cards of an audit page: their data- attributes, fields and image sources; the filter menus."""

  def __init__(self):
    super().__init__()
    self.cards, self.menus, self.images = [], collections.defaultdict(list), []
    self._menu, self._field, self._in_dd = None, None, False

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == "div" and attrs.get("class") == "card":
      self.cards.append({"attributes": {k[5:]: v for k, v in attrs.items() if k.startswith("data-")},
                         "fields": {}, "images": []})
    elif tag == "img":
      self.images.append(attrs)
      self.cards[-1]["images"].append(attrs["src"])
    elif tag == "select":
      self._menu = attrs["name"]
    elif tag == "option" and self._menu:
      self.menus[self._menu].append(attrs["value"])
    self._in_dd = tag == "dd"
    if tag == "dt":
      self._field = ""

  def handle_data(self, data):
    if self._field == "" and not self._in_dd:
      self._field = data
    elif self._in_dd and self._field:
      self.cards[-1]["fields"][self._field] = data
      self._field, self._in_dd = None, False

  def handle_endtag(self, tag):
    if tag == "select":
      self._menu = None


def _read_audit(dataset_dir: pathlib.Path):
  """(CSV rows, parsed page), checking what holds for every audit: links resolve, rows and cards agree."""
  with open(dataset_dir / audit.CSV_NAME, newline="", encoding="utf-8") as stream:
    rows = list(csv.DictReader(stream))
  page = _Page()
  page.feed((dataset_dir / audit.PAGE_NAME).read_text(encoding="utf-8"))
  assert rows and list(rows[0]) == list(audit.COLUMNS)
  on_page = [card["fields"]["path"] for card in page.cards]
  on_page += [path for card in page.cards for path in card["fields"].get("roi_files", "").split(" ; ") if path]
  assert sorted(on_page) == sorted(row["path"] for row in rows)
  for image in page.images:
    assert image["loading"] == "lazy"
    assert (dataset_dir / image["src"]).is_file(), image["src"]
  for row in rows:
    assert row["fate"] in (audit.EXAMPLE, audit.ROI, audit.SKIPPED, audit.LEFT_OUT), row
    if row["fate"] == audit.EXAMPLE:
      assert row["split"] and row["label"] and len(row["crop_box"].split()) == 4, row
      assert row["chest_wall"] in ("left", "right") and row["chest_wall_by"], row
      for name in ("source_thumbnail", "stored_thumbnail"):
        assert (dataset_dir / row[name]).stat().st_size < 20_000, row  # a few kB each
    if row["fate"] in (audit.SKIPPED, audit.LEFT_OUT):
      assert row["reason"], row
  for name, column in (("split", "split"), ("label", "label"), ("reason", "reason")):
    assert set(page.menus[name]) == {""} | {row[column] for row in rows if row[column]}
  return rows, page


def _dataset_dir(builder) -> pathlib.Path:
  return pathlib.Path(builder.data_dir)


def test_synthetic_build_audits_every_example(tiny_data_dir):
  (dataset_dir,) = (tiny_data_dir / "synthetic" / "tiny").iterdir()
  rows, page = _read_audit(dataset_dir)
  assert len(rows) == 94 and {row["fate"] for row in rows} == {audit.EXAMPLE}
  assert all(len(card["images"]) == 2 for card in page.cards)
  assert {row["split"] for row in rows} == {"train", "validation", "test"}
  assert len({row["source_thumbnail"] for row in rows}) == 94


@pytest.fixture(scope="module")
def mias_build(shared_data, tmp_path_factory):
  archive = shared_data / "mias" / "all-mias.tar.gz"
  if not archive.is_file():
    pytest.skip(f"{archive} not found (set MAMMO_SHARED_DATA to the shared data folder)")
  builder = mias_dataset_builder.Builder(config="abnormal", data_dir=tmp_path_factory.mktemp("mias_audit"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(archive.parent)))
  return builder


def test_real_mias_build_has_a_row_and_a_card_for_each_of_its_322_films(mias_build):
  rows, page = _read_audit(_dataset_dir(mias_build))
  assert sorted(row["path"] for row in rows) == [f"mdb{n:03d}.pgm" for n in range(1, 323)]
  fates = collections.Counter((row["fate"], row["reason"]) for row in rows)
  assert fates == {(audit.EXAMPLE, ""): 115, (audit.LEFT_OUT, mias_examples.NORMAL_LEFT_OUT): 207}
  kept = {row["path"]: row for row in rows if row["fate"] == audit.EXAMPLE}
  assert sum(split.num_examples for split in mias_build.info.splits.values()) == len(kept)
  # The split column is the split each example was written to.
  for split in mias_build.info.splits:
    for example in tfds.as_numpy(mias_build.as_dataset(split=split, shuffle_files=False)):
      row = kept[example["source"].decode()]
      assert row["split"] == split and row["crop_box"] == " ".join(map(str, example["crop_box"]))
      assert row["label"] == ("benign", "malignant")[example["label"]]
      assert row["chest_wall"] == ("right" if example["flipped"] else "left")
  # Normal films are left out by design: on the page and in the CSV, not in the skip count.
  assert "audit: " + str(mias_build._final_data_path / audit.PAGE_NAME) in mias_build.info.metadata["summary"]
  assert "skipped 0" in mias_build.info.metadata["summary"]
  html_text = (_dataset_dir(mias_build) / audit.PAGE_NAME).read_text()
  files_table = html_text[html_text.index("Files</th>"):].split("</table>", 1)[0]
  assert "<td>left_out</td><td>207</td>" in files_table and "skipped" not in files_table  # as the summary says
  assert all(row["patient_id"] and row["split"] for row in rows)
  assert sum(len(card["images"]) == 2 for card in page.cards) == 115


def test_manifest_build_shows_each_bad_file_as_a_skipped_row_with_its_reason(shared_data, tmp_path):
  for_processing = shared_data / FOR_PROCESSING
  if not for_processing.is_file():
    pytest.skip(f"{for_processing} not found (set MAMMO_SHARED_DATA to the shared data folder)")
  root = tmp_path / "manual"
  write_manifest.write(root, num_patients=4, bad_rows=True)
  shutil.copy(for_processing, root / "processing.dcm")
  with open(root / "manifest.csv", "a", newline="", encoding="utf-8") as stream:
    stream.write("processing.dcm,P-processing,malignant,L,MLO,50,east\n")  # line 12: 8 images and 2 bad rows before
  builder = manifest_dataset_builder.Builder(
      data_dir=str(tmp_path / "data"), config=builder_configs.MammoConfig(name="64", image_size=64))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
  rows, page = _read_audit(_dataset_dir(builder))
  skipped = {row["path"]: row for row in rows if row["fate"] == audit.SKIPPED}
  assert {path: row["reason"] for path, row in skipped.items()} == {
      "manifest.csv line 10 (images/missing/cc.png)": Reason.not_found,
      "manifest.csv line 11 (images/corrupt/mlo.png)": Reason.unreadable,
      "manifest.csv line 12 (processing.dcm)": Reason.for_processing,
  }
  assert "processing" in skipped["manifest.csv line 12 (processing.dcm)"]["message"].lower()
  kept = sum(split.num_examples for split in builder.info.splits.values())
  assert collections.Counter(row["fate"] for row in rows) == {audit.EXAMPLE: kept, audit.SKIPPED: 3}
  skipped_cards = [card for card in page.cards if card["attributes"]["reason"]]
  assert {card["fields"]["reason"] for card in skipped_cards} == {Reason.not_found, Reason.unreadable,
                                                                 Reason.for_processing}
  assert all(not card["images"] for card in skipped_cards)


def test_without_the_audit_nothing_is_written_and_no_thumbnail_is_made(tmp_path):
  builder = manifest_dataset_builder.Builder(
      data_dir=str(tmp_path / "data"), config=builder_configs.MammoConfig(name="64", image_size=64),
      write_audit=False)
  write_manifest.write(tmp_path / "manual", num_patients=3)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual")))
  assert not any((_dataset_dir(builder) / name).exists() for name in (audit.CSV_NAME, audit.PAGE_NAME,
                                                                      audit.THUMBNAIL_DIR))
  assert "audit" not in builder.info.metadata["summary"]


def test_page_filters_list_every_view_modifier_and_escape_values(tmp_path):
  cards = [audit.Card((), (("path", "<a&b>"),), (("modifier", "spot|magnification"),)),
           audit.Card((), (("path", "c"),), (("modifier", ""),))]
  audit.write_page(tmp_path / "p.html", "t", [("n", collections.Counter())], [("g", cards)], ("modifier",))
  page = _Page()
  text = (tmp_path / "p.html").read_text()
  page.feed(text)
  assert page.menus["modifier"] == ["", "magnification", "spot"]
  assert [card["fields"]["path"] for card in page.cards] == ["<a&b>", "c"]
  assert "<a&b>" not in text and "none" in text  # escaped; an empty count table says so


def test_cbis_ddsm_roi_files_are_rows_on_their_films_card(tmp_path):
  from mammo_tfds.cbis_ddsm import cbis_ddsm_dataset_builder  # pylint: disable=import-outside-toplevel
  from tools import write_cbis  # pylint: disable=import-outside-toplevel
  written = write_cbis.write_tree(tmp_path / "manual", 4, "classic", 5, (240, 150))
  builder = cbis_ddsm_dataset_builder.Builder(
      data_dir=str(tmp_path / "data"), config=builder_configs.MammoConfig(name="64", image_size=64))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual")))
  rows, page = _read_audit(_dataset_dir(builder))
  films = {row["key"]: row for row in rows if row["fate"] == audit.EXAMPLE}
  assert len(films) == len(written)
  rois = [row for row in rows if row["fate"] == audit.ROI]
  assert rois and all(row["key"] in films and row["split"] == films[row["key"]]["split"] for row in rois)
  assert len(page.cards) == len(films)  # ROI files are listed on their film's card


def test_predict_review_page_has_a_card_per_scored_and_per_refused_file(shared_data, tmp_path):
  import numpy as np  # pylint: disable=import-outside-toplevel
  from mammo_train.inference import discovery, predictor, review  # pylint: disable=import-outside-toplevel
  folder = shared_data / "real-mammograms"
  if not folder.is_dir():
    pytest.skip(f"{folder} not found (set MAMMO_SHARED_DATA to the shared data folder)")
  files = discovery.expand_paths([str(folder)])
  result = predictor.predict_files(lambda batch: np.full((len(batch), 1), 0.7, np.float32), files,
                                   stored_size=64, image_size=64, workers=1)
  assert result.images and result.failures  # the folder holds refused files (For Processing, stubs)
  image_rows, _ = predictor.rows(result, {"image": 0.5, "breast": 0.5})
  page_path = review.write(tmp_path, result, image_rows, "summary line")
  page = _Page()
  page.feed(page_path.read_text(encoding="utf-8"))
  assert len(page.cards) == len(files) == len(result.images) + len(result.failures)
  scored = [card for card in page.cards if card["attributes"]["decision"]]
  assert {card["fields"]["source"] for card in scored} == {row["source"] for row in image_rows}
  assert all(len(card["images"]) == 2 and card["fields"]["decision"] == "malignant" for card in scored)
  assert all((tmp_path / src).is_file() for card in scored for src in card["images"])
  refused = {card["fields"]["source"]: card["fields"]["reason"] for card in page.cards if card["attributes"]["reason"]}
  assert refused == {failure.path: failure.reason for failure in result.failures}
