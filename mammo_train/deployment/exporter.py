"""Ships a trained model: SavedModel, TFLite (float32 and dynamic-range int8) and ONNX exports, each
checked against Keras in a clean process, and a model card beside them.

Every export serves one signature, `serving_default`: `image`, uint8 [N, S, S, 1] preprocessed as the
run's dataset was built (the model card says exactly how) -> `p_malignant` [N], plus
`p_malignant_calibrated` [N] when the run has a calibration map (a multi-class model gives its class
probabilities [N, K] as `probabilities`, and takes no calibration). The calibration map is part of
the exported graph, so a deployer needs nothing but the export and its runtime.

Exports compute in float32. A run trained under mixed precision keeps bfloat16 compute in the layers
of its .keras file, and the TFLite converter has no bfloat16 kernels ("'tf.Conv2D' op is neither a
custom op nor a flex op"). So the model is rebuilt with float32 layers and the same weights; that
float32 Keras model is the reference every export must match, and the card gives how far it is from
the model as trained (on the checked images).

"Checked, not assumed": each export is run by `clean_check.py` in a fresh isolated interpreter that
imports only numpy and the export's runtime, on the run's test split; float exports must match Keras
to FLOAT_TOLERANCE, the int8 one must keep its test ROC-AUC within INT8_AUC_TOLERANCE of Keras's. A
failed check raises ExportError after the files and the card (with the failing figures) are written.
"""
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from mammo_train import config, run_folder
from mammo_train.deployment import clean_check
from mammo_train.evaluation import metrics, report
from mammo_train.inputs import data
from mammo_train.deployment import serving_graph
from mammo_train.deployment.serving_graph import ExportError
from mammo_train.models import classifiers
from mammo_train.training import runtime

FORMATS = config.EXPORT_FORMATS
FLOAT_TOLERANCE = 1e-4
INT8_AUC_TOLERANCE = 0.005
CARD_JSON, CARD_MD = "model_card.json", "model_card.md"
CHECK_TIMEOUT_S = 600
_FILES = {"saved_model": {"saved_model": "saved_model"},
          "tflite": {"tflite_float32": "model_float32.tflite", "tflite_int8": "model_int8.tflite"},
          "onnx": {"onnx": "model.onnx"}}



# ------------------------------------------------------------------------------------------- serving


# -------------------------------------------------------------------------------------------- checks

def run_clean(exports: list[tuple[str, str]], images: np.ndarray) -> list[dict]:
  """Each (kind, path) export's outputs on `images`, computed by clean_check.py in one fresh,
  isolated interpreter that imports none of this package."""
  with tempfile.TemporaryDirectory(prefix="mammo-export-check-") as scratch:
    images_path, outputs_path = os.path.join(scratch, "images.npy"), os.path.join(scratch, "outputs.npz")
    if isinstance(images, np.memmap) and images.filename:  # already a .npy file (`split_images`)
      images_path = images.filename
    else:
      np.save(images_path, images)
    command = [sys.executable, "-I", clean_check.__file__, images_path, outputs_path]
    command += [str(part) for export in exports for part in export]
    where = ", ".join(str(path) for _, path in exports)
    try:
      done = subprocess.run(command, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
      raise ExportError(f"{where}: the clean-process check did not finish in {CHECK_TIMEOUT_S} s") from None
    if done.returncode != 0:
      tail = done.stderr.strip().splitlines()[-1:] or ["no error output"]
      raise ExportError(f"{where}: loading in a clean process failed: {tail[0]}")
    said = json.loads(done.stdout.strip().splitlines()[-1])
    if said["project_modules_imported"]:
      raise ExportError(f"{where}: the clean-process check imported {said['project_modules_imported']}")
    with np.load(outputs_path) as stored:
      outputs = [{} for _ in exports]
      for key in stored.files:
        index, name = key.split(".", 1)
        outputs[int(index)][name] = stored[key]
      return outputs


def _roc_auc(labels, outputs: dict) -> float:
  """ROC-AUC of P(malignant); for a multi-class model, the mean one-vs-rest ROC-AUC."""
  ones = np.ones((1, len(labels)))
  if serving_graph.P_MALIGNANT in outputs:
    return float(metrics.weighted_roc_auc(labels, outputs[serving_graph.P_MALIGNANT], ones)[0])
  probabilities = outputs[serving_graph.PROBABILITIES]
  return float(np.mean([metrics.weighted_roc_auc(labels == k, probabilities[:, k], ones)[0]
                        for k in range(probabilities.shape[1])]))


def compare(name: str, outputs: dict, reference: dict, labels: np.ndarray | None) -> dict:
  """One export's agreement with Keras; 'passed' by the tolerance that export kind is held to."""
  if set(outputs) != set(reference):
    return {"passed": False, "error": f"outputs {sorted(outputs)}, Keras gives {sorted(reference)}"}
  result = {"images": len(next(iter(reference.values()))), "max_abs_diff": _largest_differences(outputs, reference)}
  if name == "tflite_int8":
    if labels is None or len(np.unique(labels)) < 2:
      return {**result, "passed": False, "error": "the int8 check needs labelled images of every class"}
    keras_auc, export_auc = _roc_auc(labels, reference), _roc_auc(labels, outputs)
    counts = np.bincount(np.asarray(labels, int))
    # One swapped (benign, malignant) pair moves the binary ROC-AUC by this much.
    result["roc_auc_step"] = float(1 / (counts[0] * counts[1])) if len(counts) == 2 else None
    result.update(roc_auc_keras=keras_auc, roc_auc_export=export_auc, tolerance={"roc_auc": INT8_AUC_TOLERANCE},
                  passed=bool(abs(export_auc - keras_auc) <= INT8_AUC_TOLERANCE))
  else:
    result.update(tolerance={"max_abs_diff": FLOAT_TOLERANCE},
                  passed=all(diff <= FLOAT_TOLERANCE for diff in result["max_abs_diff"].values()))
  return result


def keras_reference(model: keras.Model, serving: serving_graph.Serving, images: np.ndarray,
                    batch_size: int = 32) -> dict:
  raw = np.concatenate([np.asarray(model.predict_on_batch(images[start:start + batch_size]))
                        for start in range(0, len(images), batch_size)])
  return {key: value.numpy() for key, value in serving.from_model_outputs(tf.constant(raw)).items()}


# ------------------------------------------------------------------------------------------ run info

def run_builder(run: run_folder.TrainedRun, data_dir: str | None = None):
  """The run's prepared dataset (as run.json names it), set up as every command sets up a dataset.

  Raises:
    config.ConfigError, config.DatasetNotBuiltError: the dataset is not where run.json (or
      `data_dir`) says, or it is another version than the model was trained on.
  """
  dataset = run.info["dataset"]
  name, version = dataset["name"].rsplit("/", 1)
  # run.json names the prepared folder, DATA_DIR/name/config/version.
  builder = runtime.set_up(name, data_dir or str(pathlib.Path(dataset["data_dir"]).parents[2]), batch_size=1,
                           seed=0).builder
  if str(builder.info.version) != version:
    raise config.ConfigError(f"{run.folder.run_json}: the model was trained on {dataset['name']}, but the data "
                             f"dir holds version {builder.info.version}")
  return builder


def split_images(builder, split: str, image_size: int, path) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 images [N, S, S, 1], labels [N]) of a split, exactly as evaluation feeds the model.

  Streamed batch by batch into the .npy file `path` and returned
  memory-mapped, so a large test split never sits in memory: the checks read
  it back in batches, in this process and in the clean one.
  """
  count = data.num_examples(builder, split)
  images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, image_size, image_size, 1))
  labels, start = [], 0
  for batch_images, batch_labels in data.eval_batches(builder, split, image_size, 64).as_numpy_iterator():
    images[start:start + len(batch_images)] = batch_images
    labels.append(batch_labels)
    start += len(batch_images)
  images.flush()
  return images, np.concatenate(labels)


# ------------------------------------------------------------------------------------------ the card

def preprocessing(stored_size: int, image_size: int) -> dict:
  steps = [
      "read the source image's 8-bit pixels (mammo_tfds.sources: DICOM or PNG/PGM)",
      f"mammo_tfds.imaging.preprocess(pixels, size={stored_size}): crop to the breast's bounding box, "
      "flip so the chest wall is on the LEFT, pad with black to a square (breast against the left edge, "
      f"centred vertically), resize to {stored_size} x {stored_size} (Lanczos)",
  ]
  if stored_size != image_size:
    steps.append(f"resize the {stored_size} px image to {image_size} x {image_size} with area averaging, "
                 "round and clip to uint8 (mammo_train.inputs.data.resize), as in training and evaluation")
  steps.append(f"feed uint8 [N, {image_size}, {image_size}, 1], values 0..255, one channel; no scaling: "
               "the model scales its input itself")
  return {"function": "mammo_tfds.imaging.preprocess", "stored_size": stored_size, "input_size": image_size,
          "dtype": "uint8", "chest_wall": "left", "steps": steps}


def _test_metrics(metrics_json: dict) -> dict:
  return {level_name: {name: {"value": level[name], "ci": level.get("ci", {}).get(name)}
                       for name in report.HEADLINE if name in level}
          for level_name, level in metrics_json["levels"].items()}


def model_card(run: run_folder.TrainedRun, model: keras.Model, serving: serving_graph.Serving, stored_size: int,
               calibration_source,
               exports: dict, model_path) -> dict:
  dataset = run.info["dataset"]
  size = model.input_shape[1]
  if serving_graph.is_binary_model(model):
    outputs = {serving_graph.P_MALIGNANT: "the model's score for malignant, [N] float32"}
  else:
    outputs = {serving_graph.PROBABILITIES: f"class probabilities [N, K] in the order {dataset['classes']}"}
  if serving.calibration is not None:
    outputs[serving_graph.CALIBRATED] = "P(malignant) after the calibration map below, [N] float32"
  tested = run.test_metrics
  return report.plain({
      "model": {"file": str(model_path), "architecture": model.name, "parameters": model.count_params(),
                "trained_precision": run.info.get("precision"), "export_precision": "float32",
                "signature": serving_graph.SIGNATURE,
                "input": {"name": serving_graph.INPUT, "dtype": "uint8", "shape": [None, size, size, 1]},
                "outputs": outputs},
      "dataset": {"name": dataset["name"], "version": dataset["version"], "classes": dataset["classes"],
                  "split_counts": dataset["splits"], "train_class_counts": dataset.get("train_class_counts")},
      "test": {"split": tested["dataset"].get("split", "test"), "counts": tested["dataset"].get("counts"),
               "bootstrap": tested.get("bootstrap"), "metrics": _test_metrics(tested)},
      "operating_point": dataclasses.asdict(run.operating_point) if run.operating_point else None,
      "calibration": ({"map": serving.calibration, "source": calibration_source, "level": "image"}
                      if serving.calibration is not None else None),
      "preprocessing": preprocessing(stored_size, size),
      "exports": exports,
  })


def _e(value) -> str:
  """A difference for the card: NaN (stored as null) stays visible."""
  return "NaN" if value is None else f"{value:.2e}"


def _model_section(m: dict) -> list:
  lines = [f"Exported from `{m['file']}` ({m['parameters']:,} parameters; trained in {m['trained_precision']}, "
           f"exported in {m['export_precision']})."]
  trained = m.get("max_abs_diff_float32_vs_trained_precision")
  if trained:
    lines[0] += (" Largest score difference between the float32 model and the model as trained, on the checked "
                 "images: " + ", ".join(f"{key} {_e(value)}" for key, value in trained.items()) + ".")
  lines += ["", "## Input and output", "",
            f"Signature `{m['signature']}`: input `{m['input']['name']}`, {m['input']['dtype']} {m['input']['shape']}.",
            ""]
  return lines + [f"- `{name}`: {text}" for name, text in m["outputs"].items()]


def _data_section(d: dict) -> list:
  splits = ", ".join(f"{split} {count}" for split, count in d["split_counts"].items())
  counts = f"; training class counts {d['train_class_counts']}" if d.get("train_class_counts") else ""
  return ["## Data", "", f"{d['name']} (version {d['version']}), classes {', '.join(d['classes'])}; "
          f"images per split: {splits}{counts}."]


def _test_section(t: dict) -> list:
  counts, boot = t.get("counts") or {}, t.get("bootstrap") or {}
  breasts = f", {counts['breasts']} breasts" if "breasts" in counts else ""
  lines = ["## Test metrics", "",
           f"On the {t['split']} split ({counts.get('images', '?')} images, {counts.get('patients', '?')} "
           f"patients{breasts}); intervals: {boot.get('confidence', 0.95):.0%} {boot.get('method', 'percentile')} "
           f"over {boot.get('n_resamples', '?')} {boot.get('unit', 'patient')}-level bootstrap resamples.", "",
           "| level | " + " | ".join(report.HEADLINE) + " |", "|---" * (len(report.HEADLINE) + 1) + "|"]
  for level_name, level in t["metrics"].items():
    plain_level = {name: entry["value"] for name, entry in level.items()}
    plain_level["ci"] = {name: entry["ci"] for name, entry in level.items() if entry["ci"] is not None}
    cells = [report.interval_text(plain_level, name) if name in level else "-" for name in report.HEADLINE]
    lines.append(f"| {level_name} | " + " | ".join(cells) + " |")
  return lines


def _decision_section(op: dict | None, cal: dict | None) -> list:
  lines = ["## Operating threshold", ""]
  if op is None:
    lines.append("None in the run (eval/operating_point.json): the decision is the most probable class.")
  else:
    lines.append("Malignant when the score reaches "
                 + ", ".join(f"{value:.4f} ({level} level)" for level, value in op["thresholds"].items())
                 + f": {op['how']}.")
  lines += ["", "## Calibration", ""]
  if cal is None:
    return lines + ["None: the run has no calibration map, so `p_malignant` is a score, not a calibrated "
                    "probability."]
  fitted = f"; fitted on {cal['map']['fitted_on']}" if cal["map"].get("fitted_on") else ""
  if cal["map"]["method"] == "platt":
    return lines + [f"Platt scaling (from {cal['source']}): p = sigmoid({cal['map']['slope']:.6g} * logit(score) "
                    f"+ {cal['map']['intercept']:.6g}), the score clipped to [1e-7, 1 - 1e-7]{fitted}."]
  return lines + [f"Isotonic regression (from {cal['source']}): p = np.interp(score, x, y) over "
                  f"{len(cal['map']['x'])} knots (model_card.json has them){fitted}."]


def _exports_section(exports: dict) -> list:
  lines = ["## Exports and their checks", "",
           "Each file was loaded in a fresh process that imports only its runtime (TensorFlow, the TFLite "
           "interpreter, ONNX Runtime) and run on the images named; its outputs were compared with the "
           "float32 Keras model's.", "",
           "| file | bytes | checked on | max abs diff | ROC-AUC Keras / export | passed |", "|---|---|---|---|---|---|"]
  for entry in exports.values():
    check = entry["check"]
    diffs = ", ".join(f"{key} {_e(value)}" for key, value in check.get("max_abs_diff", {}).items())
    aucs = f"{check['roc_auc_keras']:.4f} / {check['roc_auc_export']:.4f}" if "roc_auc_export" in check else "-"
    lines.append(f"| {entry['file']} | {entry['bytes']:,} | {check.get('on', '-')} | {diffs or check.get('error')} "
                 f"| {aucs} | {'yes' if check['passed'] else 'NO'} |")
  return lines


def card_markdown(card: dict) -> str:
  lines = [f"# Model card: {card['model']['architecture']} on {card['dataset']['name']}", ""]
  lines += _model_section(card["model"])
  lines += ["", "## Preprocessing the inputs must have had", ""]
  lines += [f"{index}. {step}" for index, step in enumerate(card["preprocessing"]["steps"], start=1)]
  for section in (_data_section(card["dataset"]), _test_section(card["test"]),
                  _decision_section(card["operating_point"], card["calibration"]), _exports_section(card["exports"])):
    lines += [""] + section
  return "\n".join(lines) + "\n"


def _size(path: pathlib.Path) -> int:
  if path.is_dir():
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
  return path.stat().st_size


# ---------------------------------------------------------------------------------------- the export

def export(model_path, fmt: str, out_dir, calibration=None, run_info=None, *, images=None, labels=None,
           images_name: str | None = None, data_dir: str | None = None) -> dict:
  """Exports a run's model in one format, checks it in a clean process, and writes the model card.

  Args:
    model_path: the run's .keras model (e.g. RUN_DIR/best.keras).
    fmt: one of FORMATS.
    out_dir: the export folder; formats exported into the same folder share one model card.
    calibration: a calibration.json path, its content, or one map (`serving_graph.image_calibration`); None takes
      the run's eval/calibration.json when there is one.
    run_info: the run folder holding run.json, eval/metrics.json and eval/operating_point.json;
      None: the model file's folder.
    images, labels: uint8 [N, S, S, 1] images and their labels to check on instead of the run's
      test split; `images_name` says what they are, for the card.
    data_dir: where the run's dataset is, when not where run.json says (another machine).

  Returns:
    The model card as written to model_card.json.

  Raises:
    ValueError: bad arguments or run files, naming which.
    ExportError: the export failed, or does not match Keras (the card records the figures).
  """
  if fmt not in FORMATS:
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
  model_path = pathlib.Path(model_path)
  if not model_path.is_file():
    raise ValueError(f"{model_path}: no such model file")
  config.check(run_info is not None or run_folder.is_run(model_path), f"--model={model_path}: no {run_folder.RUN} "
               "beside it: export a model of a training run (its workdir's best.keras or final.keras)")
  run = run_folder.load(run_info if run_info is not None else model_path.parent, model_path, flag="model",
                        with_model=False)
  config.check(run.test_metrics is not None, f"{run.folder.test_metrics}: needed for the model card, but the "
               "run has no test-split evaluation")
  calibration, calibration_source = _run_calibration(calibration, run.folder)
  builder = run_builder(run, data_dir)
  trained = classifiers.load(str(model_path), data.num_classes(builder), flag="model")
  model = classifiers.float32_model(trained)
  serving = serving_graph.Serving(model, serving_graph.image_calibration(calibration))
  size = model.input_shape[1]
  with tempfile.TemporaryDirectory(prefix="mammo-export-") as scratch:
    if images is None:
      images, labels = split_images(builder, "test", size, os.path.join(scratch, "images.npy"))
      images_name = f"the {len(images)} images of the {builder.info.full_name} test split"
    elif not isinstance(images, np.ndarray):
      images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[1:] != (size, size, 1):
      raise ValueError(f"check images must be uint8 [N, {size}, {size}, 1], got {images.dtype} "
                       f"{list(images.shape)}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / file for name, file in _FILES[fmt].items()}
    _write(fmt, serving, files)
    exports = _checks(files, model, serving, images, labels, images_name or f"{len(images)} given images")
    card = model_card(run, model, serving, builder.info.features["image"].shape[0], calibration_source,
                      {**_previous_exports(out_dir, model_path), **exports}, model_path)
    if model is not trained:
      card["model"]["max_abs_diff_float32_vs_trained_precision"] = _largest_differences(
          keras_reference(trained, serving, images), keras_reference(model, serving, images))
  (out_dir / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
  (out_dir / CARD_MD).write_text(card_markdown(card))
  failed = [name for name, entry in exports.items() if not entry["check"]["passed"]]
  if failed:
    raise ExportError(f"{out_dir}: {', '.join(failed)} do not match Keras: "
                      + "; ".join(f"{name} {exports[name]['check']}" for name in failed))
  return card


def _run_calibration(calibration, run: run_folder.RunFolder):
  """(the calibration to export, where it came from): the run's eval/calibration.json when none is given."""
  if calibration is None and os.path.exists(run.calibration):
    calibration = pathlib.Path(run.calibration)
  if calibration is None:
    return None, None
  return calibration, str(calibration) if isinstance(calibration, (str, os.PathLike)) else "given to export()"


def _write(fmt: str, serving: serving_graph.Serving, files: dict) -> None:
  """The format's files; TFLite is converted from a SavedModel, written to a scratch folder."""
  with tempfile.TemporaryDirectory(prefix="mammo-export-") as scratch:
    saved_model = files.get("saved_model", pathlib.Path(scratch) / "saved_model")
    serving_graph.save_saved_model(serving, saved_model)
    if fmt == "tflite":
      serving_graph.save_tflite(saved_model, files["tflite_float32"], files["tflite_int8"])
    elif fmt == "onnx":
      serving_graph.save_onnx(serving, files["onnx"])


def _checks(files: dict, model, serving: serving_graph.Serving, images, labels, images_name: str) -> dict:
  """name -> file, size and its clean-process check against the float32 Keras model."""
  reference = keras_reference(model, serving, images)
  kinds = {name: "tflite" if name.startswith("tflite") else name for name in files}
  outputs = run_clean([(kinds[name], path) for name, path in files.items()], images)
  return {name: {"file": path.name, "bytes": _size(path),
                 "check": {"on": images_name, **compare(name, out, reference, labels)}}
          for (name, path), out in zip(files.items(), outputs)}


def _largest_differences(a: dict, b: dict) -> dict:
  """Per output, the largest absolute difference (NaN anywhere gives NaN, which fails every check)."""
  return {key: float(np.max(np.abs(a[key] - b[key]))) for key in b}


def _previous_exports(out_dir: pathlib.Path, model_path) -> dict:
  """The other formats already exported into out_dir from the same model file, kept on its card."""
  path = out_dir / CARD_JSON
  if not path.exists():
    return {}
  previous = json.loads(path.read_text())
  return previous.get("exports", {}) if previous.get("model", {}).get("file") == str(model_path) else {}
