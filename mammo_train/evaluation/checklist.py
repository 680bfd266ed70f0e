"""The reporting checklist at the end of every evaluation report, filled from what the package knows.

A reviewer of a mammography AI paper checks it against CLAIM (the Checklist
for Artificial Intelligence in Medical Imaging); most of its Methods and
Results items are facts this package holds (the dataset's build summary, the
split, the run's flags, the metrics). Each item is named with its CLAIM
number, in the 42-item numbering of Mongan et al. 2020 (the numbering
checked against a published source here; CLAIM 2024 renumbers some items,
see the item text). Items no tool can know (intended use, ethics approval,
reader study, ...) are listed as "to be filled by the authors".

The leakage check is a check, not a statement: the patients and the
identical-pixel images (equal digests of the stored image) of every split
are intersected, and a non-empty intersection is shown as FAILED at the top
of the section.
"""
import dataclasses
import importlib.metadata
import json
import pathlib
import platform
import subprocess
import time

import numpy as np

from mammo_train import calibration, data, metrics, report

AUTHORS = "to be filled by the authors"
CHECKLIST = "checklist.json"
SOFTWARE = ("tensorflow", "keras", "tensorflow-datasets", "numpy", "scikit-learn", "scipy")
# What no tool can know: (CLAIM number or "", topic).
AUTHOR_ITEMS = (("3", "intended use and clinical role"), ("4", "study objectives and hypotheses"),
                ("5", "prospective or retrospective design; study goal"),
                ("11", "de-identification (beyond the public collection's own)"),
                ("14-18", "reference standard: definition, rationale, annotators, tools, inter-reader variability"),
                ("19", "intended sample size and how it was determined"),
                ("38-39", "limitations; implications for practice"), ("40-41", "registration; protocol"),
                ("42", "funding"), ("", "ethics approval / waiver"),
                ("", "reader study or comparison with radiologists"))


@dataclasses.dataclass
class Item:
  claim: str  # CLAIM item number(s)
  topic: str
  text: str


def leakage(patients_by_split: dict, digests_by_split: dict) -> dict:
  """Patients and identical-pixel images per split, and those in more than one split (must be none)."""
  where_patient, where_digest = {}, {}
  for split, patients in patients_by_split.items():
    for patient in set(patients):
      where_patient.setdefault(patient, set()).add(split)
  for split, digests in digests_by_split.items():
    for digest in set(digests):
      where_digest.setdefault(digest, set()).add(split)
  shared_patients = sorted(p for p, splits in where_patient.items() if len(splits) > 1)
  shared_images = sorted(d for d, splits in where_digest.items() if len(splits) > 1)
  per_split = {split: {"patients": int(len(set(patients_by_split[split]))),
                       "images": int(len(digests_by_split.get(split, []))),
                       "duplicate_images": int(len(digests_by_split.get(split, []))
                                               - len(set(digests_by_split.get(split, []))))}
               for split in patients_by_split}
  return {"per_split": per_split, "patients_in_several_splits": shared_patients,
          "images_in_several_splits": shared_images, "passed": not shared_patients and not shared_images}


def leakage_text(check: dict) -> str:
  counts = "; ".join(f"{split}: {c['patients']} patients, {c['images']} images ({c['duplicate_images']} "
                     "identical-pixel repeats inside the split)" for split, c in check["per_split"].items())
  if check["passed"]:
    return (f"Split unit: patient, identical-pixel images grouped. Checked: no patient and no identical image in "
            f"two splits. {counts}.")
  return (f"**FAILED: the splits leak.** {len(check['patients_in_several_splits'])} patients in several splits "
          f"(e.g. {', '.join(check['patients_in_several_splits'][:3]) or 'none'}), "
          f"{len(check['images_in_several_splits'])} identical images in several splits. {counts}.")


def _per_split_characteristics(tables: dict, class_names) -> str:
  parts = []
  for split, table in tables.items():
    labels = np.asarray(table["label"])
    balance = ", ".join(f"{name} {int(np.sum(labels == i))}" for i, name in enumerate(class_names))
    text = f"{split}: {balance}"
    if "age" in table:
      ages = np.asarray(table["age"], dtype=float)
      ages = ages[np.isfinite(ages) & (ages > 0)]
      if len(ages):
        q1, median, q3 = np.percentile(ages, [25, 50, 75])
        text += f", age median {median:g} (IQR {q1:g}-{q3:g}, {len(ages)} images with an age)"
    parts.append(text)
  return "; ".join(parts) + "."


def dataset_items(builder) -> tuple:
  """(items, leakage check) from the built dataset: source, version, build, inclusion, split, leakage."""
  info = builder.info
  folder = pathlib.Path(builder.data_dir)
  stored = {}
  if (folder / "metadata.json").is_file():
    stored = json.loads((folder / "metadata.json").read_text())
  built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime((folder / "dataset_info.json").stat().st_mtime)) \
      if (folder / "dataset_info.json").is_file() else "unknown"
  splits = list(info.splits)
  tables = {split: data.split_metadata(builder, split) for split in splits}
  check = leakage({split: tables[split]["patient_id"] for split in splits},
                  {split: data.image_digests(builder, split) for split in splits})
  image = info.features["image"].shape
  items = [
      Item("7", "data source", f"{info.full_name} (TFDS dataset {info.name}, version {info.version}), read "
           f"from {folder}; built "
           f"{built} (time of its dataset_info.json). Citation and licence: the dataset card "
           f"(mammo_tfds/{info.name}/README.md)."),
      Item("8, 33", "inclusion and exclusion, with counts by reason",
           stored.get("summary", "the build recorded no summary (built before summaries were kept)") + "."),
      Item("9", "preprocessing", f"every image cropped to the breast, padded to a square and resized to "
           f"{image[0]}x{image[1]} (mammo_tfds.imaging), the same at build and prediction time"
           + ("; mirrored left-right where needed so the chest wall is on the left (feature `flipped`)"
              if "flipped" in info.features else "") + "."),
      Item("20", "assignment to partitions", ", ".join(
          f"{split} {info.splits[split].num_examples} images" for split in splits)
           + ": stratified by label, deterministic (mammo_tfds.splits)."),
      Item("21", "level at which partitions are disjoint; leakage check", leakage_text(check)),
      Item("34", "class balance and age per partition",
           _per_split_characteristics(tables, info.features["label"].names)),
  ]
  return items, check


def _run_folder(candidates) -> pathlib.Path | None:
  return next((pathlib.Path(c) for c in candidates if c and (pathlib.Path(c) / "run.json").is_file()), None)


def run_items(run_folder) -> list:
  """The model and its training, from a training run's run.json and flags.txt (None: not from a run here)."""
  if run_folder is None:
    return [Item("22-26", "model and training", "the model was not trained by a run this package can find "
                 "(no run.json beside it): " + AUTHORS)]
  run = json.loads((run_folder / "run.json").read_text())
  flags_file = run_folder / "flags.txt"
  flags = dict(line[2:].split("=", 1) if "=" in line else (line[2:].removeprefix("no"), "false" if
               line.startswith("--no") else "true") for line in (flags_file.read_text().split()
                                                                  if flags_file.is_file() else []))

  def flag(name, default="not recorded"):
    return flags.get(name, default)

  imbalance = ("oversampling of the minority class" if flag("oversample") == "true"
               else "class weights" if flag("class_weights") == "true" else "none")
  augmentation = (f"flips {flag('flip')}, rotation {flag('rotation')} degrees, shift {flag('shift')}, zoom "
                  f"{flag('zoom')}" if flag("augment") == "true" else "none")
  return [
      Item("22", "model", f"{flag('model')} at {run.get('image_size')}x{run.get('image_size')}, dropout "
           f"{flag('dropout')}, L2 {flag('l2')} (run {run_folder})."),
      Item("24", "initialisation", f"weights: {flag('weights')}"
           + (f"; initialised from {flag('init_from')}" if "init_from" in flags else "") + "."),
      Item("25", "training details", f"{flag('epochs')} epochs, Adam at learning rate {flag('learning_rate')} "
           f"(reduced on a validation-loss plateau), global batch {run.get('global_batch_size')}; augmentation: "
           f"{augmentation}; imbalance handling: {imbalance}; seed {flag('seed')}; precision "
           f"{run.get('precision')} ({run.get('strategy')}, {run.get('replicas')} replicas)."),
      Item("26", "selection of the final model", "best.keras: the epoch with the best validation ROC-AUC."),
  ]


def _git_commit() -> str:
  package = pathlib.Path(__file__).resolve().parents[2]
  if not (package / ".git").exists():
    return "not a git checkout"
  try:
    found = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True,
                           check=True, timeout=10)
    dirty = subprocess.run(["git", "-C", str(package), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "a git checkout whose commit could not be read"
  return found.stdout.strip() + (" with uncommitted changes" if dirty else "")


def software_item() -> Item:
  versions = []
  for name in SOFTWARE:
    try:
      versions.append(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
      continue
  return Item("23", "software", f"Python {platform.python_version()}, " + ", ".join(versions)
              + f"; mammo code: {_git_commit()}.")


def calibration_fit(labels, scores, groups, n_resamples: int, seed: int) -> dict:
  """Calibration slope and intercept of the scores on this split, with patient-bootstrap intervals."""
  point = calibration.slope_and_intercept(labels, scores)[0]
  samples = calibration.slope_and_intercept(labels, scores, metrics.patient_resamples(groups, n_resamples, seed))
  return report.plain({name: {"value": point[i], "ci": metrics.percentile_interval(samples[:, i])}
                       for i, name in enumerate(("slope", "intercept"))})


def evaluation_items(result: dict, slopes: dict | None) -> list:
  """Operating point, metrics with intervals per level, calibration, subgroups, failure cases.

  `result` is JSON-plain (`report.plain`: undefined values are None)."""
  # pylint: disable=protected-access (report's interval formatting, shared until the evaluation package owns it)
  threshold = result.get("threshold")
  boot = result["bootstrap"]
  metric_name = "roc_auc" if "roc_auc" in next(iter(result["levels"].values())) else "macro_roc_auc"
  items = [
      Item("28, 29", "operating point; metrics and their uncertainty",
           ("thresholds " + ", ".join(f"{level} {value:.4f}" for level, value in threshold["values"].items())
            + f": {threshold['how']}. " if threshold else "")
           + f"95% intervals: percentile bootstrap over {boot['unit']}s ({boot['n_resamples']} resamples, seed "
           f"{boot['seed']})."),
      Item("35, 36", "performance at each level", "; ".join(
          f"{level}: {metric_name} {report._interval(entry.get(metric_name), entry['ci'].get(metric_name))}"
          + "".join(f", {m} {report._interval(entry[m], entry['ci'][m])}" for m in ("sensitivity", "specificity")
                    if m in entry)
          + f" ({entry['n']} units, {entry['n_patients']} patients)" for level, entry in result["levels"].items())
           + "."),
  ]
  cal = result.get("calibration")
  if cal or slopes:
    text = ""
    if cal:
      def measured(entry, name):
        return (f"{name} {report._interval(entry['before'], entry['before_ci'])} raw, "
                f"{report._interval(entry['after'], entry['after_ci'])} after")

      text = "; ".join(f"{level}: {measured(e['ece'], 'ECE')} the {e['map']['method']} map, "
                       f"{measured(e['brier'], 'Brier')}" for level, e in cal["levels"].items()) + ". "
    if slopes:
      text += "Calibration slope / intercept of the raw scores (1 / 0 when calibrated): " + "; ".join(
          f"{level}: {report._interval(s['slope']['value'], s['slope']['ci'])} / "
          f"{report._interval(s['intercept']['value'], s['intercept']['ci'])}" for level, s in slopes.items()) + "."
    items.append(Item("28", "calibration", text))
  verdict = result.get("verdict") or {}
  baseline = verdict.get("baseline")
  items.append(Item("30", "subgroups and shortcut baselines", (
      f"subgroups declared by the dataset ({result['subgroups']['declaration']['source']}), each with its own "
      "interval, in the report's Subgroups section; " if result.get("subgroups") else "")
      + (f"against the metadata-only baseline {baseline['name']}: "
         f"{'beats' if baseline['overall'].get('beats') else 'does not beat'} it at {verdict['level']} level"
         if baseline else "no declared shortcut, so no metadata-only baseline") + "."))
  saliency = result.get("saliency")
  items.append(Item("31, 37", "explainability and failure cases", (
      f"Grad-CAM grid {saliency['grid']}: its 'decided wrong' rows are the most confident wrong decisions of "
      "each class" if saliency else "no saliency grid (no Grad-CAM layer known for this model)") + "."))
  scored = result["dataset"]["split"]
  items.append(Item("32", "external validation", (
      "this dataset was not the training data (split 'all'): external" if scored == "all"
      else f"internal: the held-out '{scored}' split of the training dataset") + "."))
  return items


def author_items() -> list:
  return [Item(number, topic, AUTHORS) for number, topic in AUTHOR_ITEMS]


def for_evaluation(builder, result: dict, workdir, model_path, levels: dict | None, n_resamples: int,
                   seed: int) -> tuple:
  """(items, leakage check) of one evaluation; `levels` (`assessment.levels` of the scored split) for the
  calibration slope, binary tasks only."""
  items, check = dataset_items(builder)
  run = _run_folder([pathlib.Path(model_path).parent if model_path else None, pathlib.Path(workdir).parent])
  slopes = None
  if levels and "breast" in levels:
    slopes = {name: calibration_fit(level.labels, level.scores, level.groups, n_resamples, seed)
              for name, level in levels.items()}
  return items + run_items(run) + [software_item()] + evaluation_items(result, slopes) + author_items(), check


def section(items: list, check: dict | None = None) -> list:
  """Markdown lines of the checklist."""
  lines = ["## Reporting checklist", ""]
  if check is not None and not check["passed"]:
    lines += ["**LEAKAGE CHECK FAILED**: a patient or an identical image is in more than one split; every "
              "number above is suspect.", ""]
  lines += ["CLAIM items (42-item numbering, Mongan et al. 2020) this package can fill; the rest is for the "
            "authors.", "", "| CLAIM | item | this evaluation |", "| --- | --- | --- |"]
  lines += [f"| {item.claim} | {item.topic} | {' '.join(item.text.split()).replace('|', '/')} |" for item in items]
  return lines + [""]


def write(workdir, items: list, check: dict | None) -> None:
  """Appends the checklist to workdir/report.md and writes checklist.json."""
  workdir = pathlib.Path(workdir)
  with open(workdir / "report.md", "a") as f:
    f.write("\n" + "\n".join(section(items, check)) + "\n")
  stored = {"items": [dataclasses.asdict(item) for item in items], "leakage": check}
  (workdir / CHECKLIST).write_text(json.dumps(stored, indent=2) + "\n")


def record(builder, result: dict, workdir, model_path, levels, n_resamples: int, seed: int) -> None:
  """The one call an evaluation makes once report.md is written: fill the checklist and append it."""
  write(workdir, *for_evaluation(builder, result, workdir, model_path, levels, n_resamples, seed))


def facts_for_comparison(loaded: list, result: dict) -> list:
  """The checklist of a comparison: the data, each model's run, the shared protocol, each model's leakage
  check as its evaluation recorded it."""
  dataset = result["dataset"]
  items = [Item("7", "data source", f"{dataset['name']} version {dataset['version']}, split "
                f"'{dataset['split']}', the same examples for every model (checked).")]
  for model in loaded:
    stored = model.folder / CHECKLIST
    leak = json.loads(stored.read_text()).get("leakage") if stored.is_file() else None
    said = ("no checklist.json in its evaluation: not checked" if leak is None
            else "passed" if leak["passed"] else "**FAILED**")
    items.append(Item("21", f"leakage check of {model.name}", f"{said}."))
    for item in run_items(_run_folder([model.folder.parent, model.folder])):
      items.append(Item(item.claim, f"{item.topic} of {model.name}", item.text))
  items.append(software_item())
  boot = result["bootstrap"]
  items.append(Item("29", "statistical comparison", (
      f"paired patient bootstrap ({boot['n_resamples']} resamples, seed {boot['seed']}) of every difference; "
      "DeLong's test (Sun & Xu algorithm); McNemar's test on the decisions"
      + ("; Holm adjustment across pairs" if result.get("multiple_comparisons") else "") + ".")))
  return items + author_items()
