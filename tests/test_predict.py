"""mammo_train.predict: files -> scores per image and per breast, on real files, fixtures and a built CMMD tree."""
import csv
import json
import pathlib
import shutil
import tarfile

import keras
import numpy as np
import pydicom
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from mammo_tfds import builder_configs, imaging, sources
from mammo_tfds.cmmd import cmmd_dataset_builder as cmmd
from mammo_tfds.mias import mias_dataset_builder as mias
from mammo_tfds.reasons import Reason
from mammo_train import predict, run_folder
from mammo_train.evaluation import evaluator
from mammo_train.inference import discovery, predictor, reading, runtimes
from mammo_train.inputs import data
from tests.test_explain import SQUARE, film_with_square, square_detector
from tools import write_cmmd

STORED, SIZE = 64, 32
THRESHOLDS = {"image": 0.3, "breast": 0.35}


def brightness(images):
  """A stub model: P(malignant) = mean brightness, [B, 1]."""
  return np.asarray(images, dtype=float).mean(axis=(1, 2, 3))[:, None] / 255.0


def _tiny_model():
  keras.utils.set_random_seed(0)
  return keras.Sequential([keras.Input((SIZE, SIZE, 1)), keras.layers.Rescaling(1 / 255),
                           keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
                           keras.layers.Dense(1, activation="sigmoid")])


@pytest.fixture(scope="module")
def cmmd_tree(tmp_path_factory):
  root = tmp_path_factory.mktemp("cmmd")
  written = write_cmmd.write(root, write_cmmd.plan(4, 5), 5, (240, 200))
  return root, written


@pytest.fixture()
def mixed(tmp_path, shared_data, cmmd_tree):
  """CMMD-style DICOMs, NYU's four PNGs, a broken file, a CT slice and a For Processing header.

  NYU's left breast is named as GMIC names it (`0_L-CC.png`), the right one as
  breast_cancer_classifier does (`0_R_CC.png`): both must group into breasts.
  """
  folder = tmp_path / "in"
  shutil.copytree(cmmd_tree[0] / "CMMD", folder / "cmmd")
  real = shared_data / "real-mammograms"
  (folder / "nyu").mkdir()
  for view in ("L-CC", "L-MLO", "R-CC", "R-MLO"):
    shutil.copy(real / f"nyu_gmic_0_{view}.png", folder / "nyu" / f"0_{view.replace('R-', 'R_')}.png")
  shutil.copy(real / "openrem_MG-Im-GE_Seno_1_ForProcessing.dcm", folder / "raw.dcm")
  (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
  ct = pydicom.dcmread(next((folder / "cmmd").rglob("*.dcm")))
  ct.Modality, ct.SOPClassUID = "CT", "1.2.840.10008.5.1.4.1.1.2"
  # A body part BREAST or a mammography view code, with a laterality, would make it a mammogram.
  ct.BodyPartExamined = "CHEST"
  del ct.ViewCodeSequence
  ct.save_as(folder / "ct.dcm")
  (folder / "notes.txt").write_text("not an image")
  return folder


def test_expand_paths_takes_files_folders_and_globs(mixed):
  files = discovery.expand_paths([str(mixed)])
  assert not any(f.endswith("notes.txt") for f in files)
  assert sum(f.endswith(".png") for f in files) == 4 and sum("cmmd" in f for f in files) > 4
  assert discovery.expand_paths([str(mixed / "nyu" / "*.png")]) == sorted(str(p) for p in (mixed / "nyu").glob("*.png"))
  # A DICOM without a suffix is found in a folder by its DICM marker.
  shutil.copy(mixed / "ct.dcm", mixed / "nyu" / "IM0001")
  assert str(mixed / "nyu" / "IM0001") in discovery.expand_paths([str(mixed / "nyu")])
  with pytest.raises(ValueError, match="missing: no such file or folder"):
    discovery.expand_paths([str(mixed / "missing")])
  with pytest.raises(ValueError, match=r"\*\.jpg: the pattern matches nothing"):
    discovery.expand_paths([str(mixed / "*.jpg")])


def test_mixed_folder_scores_breasts_and_skips_bad_files_with_one_line_each(mixed, tmp_path):
  files = discovery.expand_paths([str(mixed)])
  result = predictor.predict_files(brightness, files, stored_size=STORED, image_size=STORED, batch_size=5,
                                   workers=2, save_inputs=str(tmp_path / "inputs"))
  reasons = {f.path.rsplit("/", 1)[-1]: f.reason for f in result.failures}
  assert reasons == {"broken.dcm": Reason.unreadable, "ct.dcm": Reason.not_mammogram,
                     "raw.dcm": Reason.for_processing}
  image_rows, breast_rows = predictor.rows(result, THRESHOLDS, calibrate=lambda level, s: 1 - s)
  assert len(image_rows) == len(files) - 3
  for row in image_rows:  # each score is the model on exactly what read + preprocess give
    image = sources.read(row["source"])
    stored = imaging.preprocess(image.pixels, STORED, row["source"], image.chest_wall, image.laterality).image
    assert row["score"] == pytest.approx(stored.mean() / 255.0)
    assert row["decision"] == ("malignant" if row["score"] >= 0.3 else "benign")
    assert row["probability"] == pytest.approx(1 - row["score"])
  nyu = [row for row in breast_rows if row["placed_by"] == "file name"]
  assert sorted((row["laterality"], row["view"], row["views"]) for row in nyu) == [("L", "CC+MLO", 2), ("R", "CC+MLO", 2)]
  assert {row["patient_id"] for row in nyu} == {str(mixed / "nyu" / "0")}
  by_source = {row["source"]: row for row in image_rows}
  for row in breast_rows:
    views = [by_source[path]["score"] for path in row["source"].split(";")]
    assert row["score"] == pytest.approx(np.mean(views))
    assert row["decision"] == ("malignant" if row["score"] >= 0.35 else "benign")
  assert all(row["placed_by"] == "DICOM tags" for row in breast_rows if row not in nyu)
  assert len(list((tmp_path / "inputs").glob("*.png"))) == len(image_rows)
  line = predictor.summary(result, image_rows, breast_rows)
  assert line.endswith("skipped 3: 1 for_processing, 1 not_mammogram, 1 unreadable")
  csv_path, json_path = predictor.write(tmp_path / "out", {"dataset": "cmmd/600:1.0.0", "model": "best.keras"},
                                        result, image_rows, breast_rows)
  with open(csv_path) as file:
    table = list(csv.DictReader(file))
  assert len(table) == len(image_rows) + len(breast_rows) and {r["dataset"] for r in table} == {"cmmd/600:1.0.0"}
  stored = json.loads(json_path.read_text())
  assert stored["run"]["model"] == "best.keras" and len(stored["skipped"]) == 3 and stored["summary"] == line
  assert stored["skipped_by_reason"] == {"for_processing": 1, "not_mammogram": 1, "unreadable": 1}
  assert {row["source"].rsplit("/", 1)[-1]: row["reason"] for row in stored["skipped"]}["ct.dcm"] == "not_mammogram"
  assert {r["admitted_by"] for r in table if r["level"] == "image"} == {"modality MG", "raster file"}


def test_parallel_and_serial_reading_give_the_same_scores(cmmd_tree):
  files = discovery.expand_paths([str(cmmd_tree[0])])
  serial, parallel = (predictor.predict_files(brightness, files, stored_size=STORED, image_size=SIZE, workers=w)
                      for w in (1, 2))
  assert [(i.prepared.path, i.score) for i in serial.images] == [(i.prepared.path, i.score) for i in parallel.images]


def test_stream_keeps_at_most_a_window_of_files_in_flight(cmmd_tree):
  files = discovery.expand_paths([str(cmmd_tree[0])])
  pulled = []

  def feed():
    for path in files:
      pulled.append(path)
      yield path

  taken = 0
  for outcome in reading.prepared_stream(feed(), STORED, workers=2, window=3):
    taken += 1
    assert len(pulled) - taken <= 3 and isinstance(outcome, reading.Prepared)
  assert taken == len(files)


def test_unplaced_images_are_scored_per_image_only(tmp_path, shared_data):
  shutil.copy(shared_data / "real-mammograms" / "nyu_gmic_0_L-CC.png", tmp_path / "scan.png")
  files = [str(tmp_path / "scan.png")]
  result = predictor.predict_files(brightness, files, stored_size=STORED, image_size=STORED, workers=1)
  image_rows, breast_rows = predictor.rows(result, THRESHOLDS)
  assert breast_rows == [] and image_rows[0]["not_placed"] == "no manifest row or <exam>_<L|R>[-_]<CC|MLO> name"
  manifest = tmp_path / "manifest.csv"
  manifest.write_text("path,patient_id,laterality,view\nscan.png,P7,L,CC\n")
  placed = predictor.predict_files(brightness, files, stored_size=STORED, image_size=STORED, workers=1,
                                   manifest=discovery.read_manifest(manifest))
  _, breast_rows = predictor.rows(placed, THRESHOLDS)
  assert [(r["patient_id"], r["laterality"], r["placed_by"]) for r in breast_rows] == [("P7", "L", "manifest")]


def test_bad_manifest_rows_name_the_row(tmp_path):
  manifest = tmp_path / "m.csv"
  manifest.write_text("path,patient_id,laterality\na.png,P1,X\n")
  with pytest.raises(ValueError, match="m.csv row 2: needs a patient_id, laterality L or R"):
    discovery.read_manifest(manifest)
  manifest.write_text("file,patient\n")
  with pytest.raises(ValueError, match="lacks column\\(s\\) path, patient_id, laterality"):
    discovery.read_manifest(manifest)


def test_summary_counts_orientation_disagreements():
  tags = sources.SourceImage(np.zeros((0, 0), np.uint8), "a.png", "png", None, None, None, None, None)
  images = [predictor.Scored(reading.Prepared(f"{i}.png", np.zeros((0, 0, 1)), tags, np.zeros(4), False, how), None,
                           0.5, "no name") for i, how in enumerate(["pixels", "tags, pixels disagree", "tags"])]
  result = predictor.Result(images, [])
  image_rows, breast_rows = predictor.rows(result, THRESHOLDS)
  assert predictor.summary(result, image_rows, breast_rows) == (
      "scored 3 of 3 files, 0 breasts; 3 scored per image only (no breast); chest wall side 1 tags, pixels disagree")


def test_thresholds_must_name_both_levels():
  with pytest.raises(ValueError, match="thresholds lack level\\(s\\) breast"):
    predictor.rows(predictor.Result([], []), {"image": 0.5})


def test_prediction_on_source_files_matches_evaluation_on_the_built_split(cmmd_tree, tmp_path):
  """The proof that build-time and prediction-time preprocessing are one: same model, same scores."""
  root, _ = cmmd_tree
  builder = cmmd.Builder(data_dir=tmp_path / "data", config=builder_configs.MammoConfig(name="64", image_size=STORED))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  model = _tiny_model()
  evaluated = evaluator.predict(model, builder, "all", SIZE, batch_size=8)
  views = data.split_metadata(builder, "all")["view"]
  expected = {(p, lat, v): s for p, lat, v, s in zip(evaluated.patient_id, evaluated.laterality, views,
                                                      evaluated.scores)}
  result = predictor.predict_files(model, discovery.expand_paths([str(root)]), stored_size=STORED, image_size=SIZE,
                                   batch_size=8, workers=1)
  got = {(i.placement.patient_id, i.placement.laterality, i.placement.view): i.score for i in result.images}
  assert set(expected) <= set(got) and len(expected) >= 8
  assert max(abs(got[key] - expected[key]) for key in expected) <= 1e-4
  assert len({round(s, 6) for s in expected.values()}) > 1  # the model tells images apart


def test_prediction_on_real_mias_films_matches_evaluation_on_the_built_split(shared_data, tmp_path):
  """The same proof for the real mini-MIAS archive: PGMs without tags, chest-wall side from the pixels alone."""
  archive = shared_data / "mias" / "all-mias.tar.gz"
  if not archive.is_file():
    pytest.skip(f"{archive} not found")
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / archive.name).symlink_to(archive)
  builder = mias.Builder(data_dir=tmp_path / "data",
                         config=builder_configs.MammoConfig(name="abnormal64", task="abnormal", image_size=STORED))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  model = _tiny_model()
  evaluated = evaluator.predict(model, builder, "test", SIZE, batch_size=8)
  names = data.split_metadata(builder, "test", extra=("source",))["source"]
  expected = dict(zip(names, evaluated.scores))
  films = tmp_path / "films"
  with tarfile.open(archive, "r:gz") as tar:
    tar.extractall(films, members=[tar.getmember(name) for name in names], filter="data")
  result = predictor.predict_files(model, discovery.expand_paths([str(films)]), stored_size=STORED, image_size=SIZE,
                                   batch_size=8, workers=1)
  assert not result.failures
  got = {pathlib.Path(i.prepared.path).name: i.score for i in result.images}
  assert set(got) == set(expected) and len(expected) == 17
  assert max(abs(got[name] - expected[name]) for name in expected) <= 1e-4
  assert len({round(s, 6) for s in expected.values()}) > 1  # the model tells films apart


def test_an_unexpected_error_in_one_file_loses_only_that_file(cmmd_tree, monkeypatch):
  files = discovery.expand_paths([str(cmmd_tree[0])])[:3]
  real_read = sources.read

  def read(path, **kwargs):
    if path == files[1]:
      raise RuntimeError("decoder crashed")
    return real_read(path, **kwargs)

  monkeypatch.setattr(sources, "read", read)
  result = predictor.predict_files(brightness, files, stored_size=STORED, image_size=STORED, workers=1)
  assert [i.prepared.path for i in result.images] == [files[0], files[2]]
  assert [(f.path, f.reason, f.detail) for f in result.failures] == [
      (files[1], Reason.unexpected_error, "RuntimeError: decoder crashed")]


# --- The command line, on a real training run. -------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tiny_data_dir, tmp_path_factory):
  """A finished 1-epoch training run on synthetic/tiny at 32 px (stored at 64): model, thresholds, calibration."""
  from absl import flags as absl_flags  # pylint: disable=import-outside-toplevel
  from mammo_train import config  # pylint: disable=import-outside-toplevel
  from mammo_train.training import loop  # pylint: disable=import-outside-toplevel
  workdir = tmp_path_factory.mktemp("runs") / "tiny"
  values = absl_flags.FlagValues()
  config.define_train_flags(values)
  values(["mammo_train", "--dataset=synthetic/tiny", f"--data_dir={tiny_data_dir}", f"--workdir={workdir}",
          f"--image_size={SIZE}", "--batch_size=8", "--epochs=1", "--precision=float32", "--n_bootstrap=20"])
  loop.train(config.train_from_flags(values), "")
  return workdir


def _predict_cli(argv, capsys, monkeypatch) -> tuple:
  from absl import flags as absl_flags  # pylint: disable=import-outside-toplevel
  from mammo_train import cli, config  # pylint: disable=import-outside-toplevel
  values = absl_flags.FlagValues()
  config.define_predict_flags(values)
  monkeypatch.setattr(absl_flags, "FLAGS", values)
  status = 0
  try:
    cli.invoke("mammo_train.predict", predict.main, cli.parse("mammo_train.predict", values,
                                                              ["mammo_train.predict", *argv], takes_paths=True))
  except SystemExit as exit_:
    status = exit_.code
  return status, capsys.readouterr()


def test_command_line_scores_a_mixed_folder_and_exits_1_for_the_skipped_files(trained_run, mixed, tmp_path,
                                                                              capsys, monkeypatch):
  out = tmp_path / "out"
  status, printed = _predict_cli([f"--run={trained_run}", f"--out={out}", "--save_inputs", str(mixed)], capsys,
                                 monkeypatch)
  assert status == 1, printed.err
  skipped = [line for line in printed.err.splitlines() if line.startswith("mammo_train.predict: skipped")]
  assert {line.split(": ")[1].split()[1] for line in skipped} == {
      str(mixed / name) for name in ("raw.dcm", "broken.dcm", "ct.dcm")}
  with open(out / "predictions.csv") as f:
    table = list(csv.DictReader(f))
  images = [row for row in table if row["level"] == "image"]
  breasts = [row for row in table if row["level"] == "breast"]
  assert len(images) == len(discovery.expand_paths([str(mixed)])) - 3
  assert {(row["patient_id"], row["laterality"]) for row in breasts if "nyu" in row["source"]} == {
      (str(mixed / "nyu" / "0"), "L"), (str(mixed / "nyu" / "0"), "R")}
  operating = json.loads((trained_run / "eval" / "operating_point.json").read_text())["thresholds"]
  for row in table:
    assert row["dataset"] == "synthetic/tiny" and row["dataset_version"] == "1.1.0" and row["model"] == "cnn"
    assert float(row["threshold"]) == pytest.approx(operating[row["level"]])
    assert row["decision"] == ("malignant" if float(row["score"]) >= float(row["threshold"]) else "benign")
    assert 0 <= float(row["probability"]) <= 1  # calibrated on the run's validation split
  assert len(list((out / "inputs").glob("*.png"))) == len(images)
  assert (out / "flags.txt").read_text().splitlines()[-1] == str(mixed)


def test_command_line_exits_0_when_every_file_is_scored(trained_run, shared_data, tmp_path, capsys, monkeypatch):
  nyu = sorted(str(p) for p in (shared_data / "real-mammograms").glob("nyu_gmic_0_*.png"))
  status, printed = _predict_cli([f"--run={trained_run}", f"--out={tmp_path}", *nyu], capsys, monkeypatch)
  assert status == 0, printed.err
  assert printed.out.startswith("scored 4 of 4 files")


@pytest.mark.parametrize("argv, message", [
    (["--out=o", "x.png"], "--run is required"),
    (["--run={run}", "--out=o"], "no files given"),
    (["--run={run}", "--out=o", "nowhere/*.dcm"], "the pattern matches nothing"),
    (["--run={run}", "--out=o", "--model=nowhere.keras", "x.png"], "--model=nowhere.keras: no such file"),
    (["--run={tmp}", "--out=o", "x.png"], "no run.json"),
])
def test_command_line_usage_errors_are_one_line(argv, message, trained_run, tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  status, printed = _predict_cli([arg.format(run=trained_run, tmp=tmp_path) for arg in argv], capsys, monkeypatch)
  lines = printed.err.splitlines()
  assert status == 2 and len(lines) == 1 and lines[0].startswith("mammo_train.predict: error:") and message in lines[0]


def test_command_line_explain_writes_a_heatmap_and_an_overlay_per_scored_file(trained_run, mixed, tmp_path, capsys,
                                                                             monkeypatch):
  out = tmp_path / "out"
  status, printed = _predict_cli([f"--run={trained_run}", f"--out={out}", "--explain", "--batch_size=4", str(mixed)],
                                 capsys, monkeypatch)
  assert status == 1, printed.err  # the three unusable files of the folder
  scored = json.loads((out / "predictions.json").read_text())["images"]
  heatmaps = sorted((out / "explain").glob("*.npy"))
  overlays = sorted((out / "explain").glob("*.png"))
  assert len(heatmaps) == len(overlays) == len(scored) > 4
  # The CMMD-style folders repeat file names (1-1.dcm): each file still gets its own pair.
  assert any(path.name.endswith(".dcm-2.npy") for path in heatmaps)
  shapes = sorted(sources.read(row["source"]).pixels.shape for row in scored)
  assert sorted(np.load(path).shape for path in heatmaps) == shapes
  for heatmap in heatmaps:
    values = np.load(heatmap)
    assert values.dtype == np.float32 and 0 <= values.min() and values.max() <= 1
    overlay = np.asarray(Image.open(heatmap.with_suffix(".png")))
    assert overlay.shape == values.shape + (3,)
  assert "--explain" in (out / "flags.txt").read_text().splitlines()


def test_explain_heatmap_lands_on_the_planted_square_of_the_source_file(tmp_path):
  """A known answer through the whole path: file -> crop, flip, pad, resize -> Grad-CAM -> back onto the file."""
  pixels = film_with_square()
  Image.fromarray(pixels).save(tmp_path / "film.png")
  result = predictor.predict_files(square_detector(SIZE), [str(tmp_path / "film.png")], stored_size=STORED,
                                   image_size=SIZE, workers=1, explain_dir=str(tmp_path / "explain"))
  assert result.images[0].prepared.flipped and result.images[0].prepared.source.pixels.size == 0  # dropped
  heatmap = np.load(tmp_path / "explain" / "film.png.npy")
  assert heatmap.shape == pixels.shape
  row, col = np.unravel_index(np.argmax(heatmap), heatmap.shape)
  assert SQUARE[0].start <= row < SQUARE[0].stop and SQUARE[1].start <= col < SQUARE[1].stop
  assert heatmap[SQUARE].sum() > 0.5 * heatmap.sum()


def test_command_line_explain_refuses_a_model_without_a_known_grad_cam_layer(trained_run, shared_data, tmp_path,
                                                                            capsys, monkeypatch):
  model_file = tmp_path / "other.keras"
  images = keras.Input((SIZE, SIZE, 1), dtype="uint8")
  pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(images))
  keras.Model(images, keras.layers.Dense(1, activation="sigmoid")(pooled), name="brightness").save(model_file)
  status, printed = _predict_cli([f"--run={trained_run}", f"--model={model_file}", f"--out={tmp_path / 'o'}",
                                  "--explain", str(shared_data / "real-mammograms" / "nyu_gmic_0_L-CC.png")],
                                 capsys, monkeypatch)
  lines = printed.err.splitlines()
  assert status == 2 and len(lines) == 1 and "--explain: no Grad-CAM layer is known" in lines[0], printed.err


def _scores_by_file(out) -> dict:
  with open(out / "predictions.csv") as f:
    return {row["source"]: row for row in csv.DictReader(f) if row["level"] == "image"}


def _rows_per_runtime(names, trained_run, shared_data, tmp_path, capsys, monkeypatch) -> dict:
  """{runtime: image rows by source} of predict on the NYU films, once per runtime in `names`."""
  nyu = sorted(str(p) for p in (shared_data / "real-mammograms").glob("nyu_gmic_0_*.png"))
  rows = {}
  for name in names:
    status, printed = _predict_cli([f"--run={trained_run}", f"--out={tmp_path / name}", f"--runtime={name}", *nyu],
                                   capsys, monkeypatch)
    assert status == 0, printed.err
    rows[name] = _scores_by_file(tmp_path / name)
  return rows


@pytest.mark.skipif(not runtimes.installed("onnxruntime"), reason="onnxruntime is not installed")
def test_command_line_runtime_is_recorded_and_scores_as_keras(trained_run, shared_data, tmp_path, capsys,
                                                              monkeypatch):
  rows = _rows_per_runtime(("keras", "onnxruntime"), trained_run, shared_data, tmp_path, capsys, monkeypatch)
  assert {row["runtime"] for row in rows["onnxruntime"].values()} == {"onnxruntime"}
  assert {row["runtime"] for row in rows["keras"].values()} == {"keras"}
  for source, row in rows["keras"].items():
    assert float(rows["onnxruntime"][source]["score"]) == pytest.approx(float(row["score"]), rel=1e-4, abs=1e-6)
  assert list((trained_run / "runtimes").glob("*.onnx")), "converted beside the run's model"
  assert {row["runtime_difference"] for row in rows["keras"].values()} == {""}  # nothing to compare with
  assert all(0 <= float(row["runtime_difference"]) <= runtimes.TOLERANCE for row in rows["onnxruntime"].values())


@pytest.mark.skipif(not runtimes.available("openvino_bf16"),
                    reason="openvino is not installed or this CPU has no bfloat16 instructions")
def test_bfloat16_scores_carry_their_measured_difference_from_keras(trained_run, shared_data, tmp_path, capsys,
                                                                    monkeypatch):
  rows = _rows_per_runtime(("keras", "openvino_bf16"), trained_run, shared_data, tmp_path, capsys, monkeypatch)
  differences = {float(row["runtime_difference"]) for row in rows["openvino_bf16"].values()}
  assert len(differences) == 1 and 0 < differences.pop() < 1e-2
  assert {row["runtime"] for row in rows["openvino_bf16"].values()} == {"openvino_bf16"}
  for source, row in rows["keras"].items():
    assert float(rows["openvino_bf16"][source]["score"]) == pytest.approx(float(row["score"]), abs=1e-2)


@pytest.mark.skipif(not runtimes.installed("onnxruntime"), reason="onnxruntime is not installed")
def test_command_line_stops_in_one_line_when_the_converted_model_disagrees(trained_run, shared_data, tmp_path,
                                                                         capsys, monkeypatch):
  import onnx  # pylint: disable=import-outside-toplevel
  from onnx import numpy_helper  # pylint: disable=import-outside-toplevel
  run = tmp_path / "run"
  shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("runtimes"))
  path = runtimes.onnx_file(run_folder.load(str(run)).model, str(run / "runtimes"))
  graph = onnx.load(path)
  for tensor in graph.graph.initializer:  # every weight 5% off: the file still answers for the run's weights
    if numpy_helper.to_array(tensor).dtype == np.float32 and numpy_helper.to_array(tensor).size > 1:
      tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 1.05, tensor.name))
  onnx.save(graph, path)
  nyu = sorted(str(p) for p in (shared_data / "real-mammograms").glob("nyu_gmic_0_*.png"))
  status, printed = _predict_cli([f"--run={run}", f"--out={tmp_path / 'out'}", "--runtime=onnxruntime", *nyu],
                                 capsys, monkeypatch)
  lines = printed.err.splitlines()
  assert status == 2 and len(lines) == 1, printed.err
  assert "--runtime=onnxruntime: outputs on 4 check images differ from Keras's by" in lines[0]
  assert "above the tolerance 0.0001" in lines[0]


def test_command_line_names_a_damaged_converted_model_in_one_line(trained_run, shared_data, tmp_path, capsys,
                                                                  monkeypatch):
  run = tmp_path / "run"
  shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("runtimes"))
  path = runtimes.onnx_file(run_folder.load(str(run)).model, str(run / "runtimes"))
  pathlib.Path(path).write_bytes(pathlib.Path(path).read_bytes()[:1000])  # a truncated copy
  status, printed = _predict_cli([f"--run={run}", f"--out={tmp_path / 'out'}", "--runtime=onnxruntime",
                                  str(shared_data / "real-mammograms" / "nyu_gmic_0_L-CC.png")], capsys, monkeypatch)
  lines = printed.err.splitlines()
  assert status == 2 and len(lines) == 1 and f"{path}: onnxruntime cannot load it" in lines[0], printed.err
