"""The reporting checklist at the end of every evaluation report, filled from what the package knows.

A reviewer of a mammography AI paper checks it against CLAIM 2024 (the
Checklist for Artificial Intelligence in Medical Imaging, 44 items) and
TRIPOD+AI (27 items, 52 numbered entries); most of their Methods and Results
items are facts this package holds (the dataset's build summary, the split,
the run's flags, the metrics). Each item is named with its CLAIM 2024 and
TRIPOD+AI numbers, "-" where that checklist has no such item; an `Item` with a
number outside the published lists is refused, so a typo cannot reach a
report. Items no tool can know (intended use, ethics approval, reader
study, ...) are listed as "to be filled by the authors".

The leakage check is a check, not a statement: the patients and the
identical-pixel images (equal digests of the stored image) of every split
are intersected, and a non-empty intersection is shown as FAILED at the top
of the section.
"""
# Where the item numbers were read (2026-12-04); docs/research.md has the item-by-item table.
#   CLAIM 2024: Tejani AS, Klontzas ME, Gatti AA, et al. Checklist for Artificial Intelligence in Medical
#     Imaging (CLAIM): 2024 Update. Radiol Artif Intell 2024;6(4):e240300, https://doi.org/10.1148/ryai.240300.
#     Numbers 1-44 from the checklist of RSNA's explanation-and-elaboration site, github.com/RSNA/CLAIM
#     docs/checklist.md (commit 0277cdde8f0c4a436b2fe2cec72af4dc0a321a23), wording checked on its item pages
#     docs/item-28.md, docs/item-30.md, docs/item-37.md (commit 06dc57dbb9a309ab04825e6e655fdc52e827642d).
#     CLAIM 2024 renumbers CLAIM 2020 (Mongan et al., 42 items), e.g. 2020's 19/20/21 (sample size,
#     assignment to partitions, disjoint level) are 2024's 21/19/20; no 2020 number is used here.
#   TRIPOD+AI: Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI statement: updated guidance for reporting
#     clinical prediction models that use regression or machine learning methods. BMJ 2024;385:e078378,
#     https://doi.org/10.1136/bmj-2023-078378 (checklist version 11 January 2024). Entries 1-27c from
#     github.com/zonechen1994/pd-olfactory-decomposition TRIPOD_AI_checklist.md (commit
#     1ccca0e601436d071889f187ddcdf624db65f64f), which agrees entry for entry with a verbatim copy of the
#     official form (its header "Version: 11-January-2024") in the public code index.
import dataclasses
import importlib.metadata
import json
import pathlib
import platform
import subprocess
import time

import numpy as np

from mammo_train.evaluation import calibration, metrics, report
from mammo_train.inputs import data

AUTHORS = "to be filled by the authors"
CHECKLIST = "checklist.json"
SOFTWARE = ("tensorflow", "keras", "tensorflow-datasets", "numpy", "scikit-learn", "scipy")
# The published item numbers (sources above): an Item's numbers must come from these.
CLAIM_2024 = tuple(str(number) for number in range(1, 45))
TRIPOD_AI = tuple("1 2 3a 3b 3c 4 5a 5b 6a 6b 6c 7 8a 8b 8c 9a 9b 9c 10 11 12a 12b 12c 12d 12e 12f 12g 13 14 15 16 "
                  "17 18a 18b 18c 18d 18e 18f 19 20a 20b 20c 21 22 23a 23b 24 25 26 27a 27b 27c".split())
# What no tool can know: (CLAIM 2024 numbers, TRIPOD+AI numbers, topic); "" where the checklist has no such item.
AUTHOR_ITEMS = (("3", "3b", "intended use, target population and clinical role"),
                ("4", "4", "study objectives and hypotheses"),
                ("5, 6", "", "prospective or retrospective design; study goal"),
                ("", "5b, 6a", "setting, centres and dates of the data (the dataset card may have them)"),
                ("", "3c, 14", "known health inequalities between groups; approach to fairness"),
                ("11", "", "de-identification (beyond the public collection's own)"),
                ("12", "11", "handling of missing data beyond the build's named skips"),
                ("13", "", "image acquisition protocol"),
                ("14, 15, 16, 17, 18", "8a, 8b, 8c", "reference standard: definition, rationale, source of the "
                 "annotations, annotation of the test set, inter- and intra-reader variability; blinding"),
                ("21", "10", "intended sample size and how it was determined"),
                ("40, 41", "25, 26, 27c", "interpretation; limitations; implications for practice; next steps"),
                ("34, 42", "18c, 18d", "registration; protocol"),
                ("43", "18e, 18f, 22", "availability of software, trained model and data"),
                ("44", "18a", "funding and the funders' role"), ("", "18b", "conflicts of interest"),
                ("", "17", "ethics approval / waiver"), ("", "19", "patient and public involvement"),
                ("", "", "reader study or comparison with radiologists"))


def _numbers(given, published: tuple, checklist: str) -> tuple:
  """("8", "35") from "8, 35" (or a sequence); a number not in the published list is a bug here, refused."""
  numbers = tuple(part.strip() for part in given.split(",") if part.strip()) if isinstance(given, str) \
      else tuple(given)
  unknown = [number for number in numbers if number not in published]
  if unknown:
    raise ValueError(f"{checklist} has no item {', '.join(unknown)}")
  return numbers


@dataclasses.dataclass
class Item:
  """One row of the checklist: its CLAIM 2024 and TRIPOD+AI numbers (given as "8, 35"; () where that checklist
  has no such item), topic, and what this evaluation says."""
  claim_2024: tuple
  tripod_ai: tuple
  topic: str
  text: str

  def __post_init__(self):
    self.claim_2024 = _numbers(self.claim_2024, CLAIM_2024, "CLAIM 2024")
    self.tripod_ai = _numbers(self.tripod_ai, TRIPOD_AI, "TRIPOD+AI")


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


def dataset_items(builder, cross_validation: dict | None = None) -> tuple:
  """(items, leakage check) from the built dataset: source, version, build, inclusion, split, leakage;
  with `cross_validation` (a pooled cv evaluation's {"folds", "development"}), its folds too."""
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
      Item("7", "5a", "data source", f"{info.full_name} (TFDS dataset {info.name}, version {info.version}), read "
           f"from {folder}; built "
           f"{built} (time of its dataset_info.json). Citation and licence: the dataset card "
           f"(mammo_tfds/{info.name}/README.md)."),
      Item("8, 35", "6b, 20a", "inclusion and exclusion, with counts by reason",
           stored.get("summary", "the build recorded no summary (built before summaries were kept)") + "."),
      Item("9", "7", "preprocessing", f"every image cropped to the breast, padded to a square and resized to "
           f"{image[0]}x{image[1]} (mammo_tfds.imaging), the same at build and prediction time"
           + ("; mirrored left-right where needed so the chest wall is on the left (feature `flipped`)"
              if "flipped" in info.features else "") + "."),
      Item("19", "12a", "assignment to partitions", ", ".join(
          f"{split} {info.splits[split].num_examples} images" for split in splits)
           + ": stratified by label, deterministic (mammo_tfds.splits)."
           + (f" Cross-validated over {cross_validation['development']}: {cross_validation['folds']} folds by "
              "patient, identical-pixel images in one fold, stratified by label, deterministic from --seed "
              "(the same assignment code, mammo_tfds.splits); fold k scored by the model trained on the others, "
              "fold (k+1) mod K choosing its epoch, threshold and calibration (cv/folds.json)."
              if cross_validation else "")),
      Item("20", "12a", "level at which partitions are disjoint; leakage check", leakage_text(check)),
      Item("36", "20b, 21", "class balance and age per partition",
           _per_split_characteristics(tables, info.features["label"].names)),
  ]
  return items, check


def _run_folder(candidates) -> pathlib.Path | None:
  return next((pathlib.Path(c) for c in candidates if c and (pathlib.Path(c) / "run.json").is_file()), None)


RUN_TOPICS = ("model", "initialisation", "training details", "selection of the final model")  # run_items' topics


def run_items(run_folder) -> list:
  """The model and its training, from a training run's run.json and flags.txt (None: not from a run here)."""
  if run_folder is None:
    return [Item("22, 24, 25, 26", "12c, 13", "model and training", "the model was not trained by a run this "
                 "package can find (no run.json beside it): " + AUTHORS)]
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
      Item("22", "12c", "model", f"{flag('model')} at {run.get('image_size')}x{run.get('image_size')}, dropout "
           f"{flag('dropout')}, L2 {flag('l2')} (run {run_folder})."),
      Item("24", "", "initialisation", f"weights: {flag('weights')}"
           + (f"; initialised from {flag('init_from')}" if "init_from" in flags else "") + "."),
      Item("25", "12c, 13", "training details", f"{flag('epochs')} epochs, Adam at learning rate "
           f"{flag('learning_rate')} (reduced on a validation-loss plateau), global batch "
           f"{run.get('global_batch_size')}; augmentation: {augmentation}; imbalance handling: {imbalance}; seed "
           f"{flag('seed')}; precision {run.get('precision')} ({run.get('strategy')}, {run.get('replicas')} "
           "replicas)."),
      Item("26", "12c", "selection of the final model", "best.keras: the epoch with the best validation ROC-AUC."),
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
  return Item("23", "", "software", f"Python {platform.python_version()}, " + ", ".join(versions)
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
  threshold = result.get("threshold")
  boot = result["bootstrap"]
  metric_name = "roc_auc" if "roc_auc" in next(iter(result["levels"].values())) else "macro_roc_auc"
  items = [
      Item("28, 29", "12e, 15", "operating point; metrics and their uncertainty",
           ("thresholds " + ", ".join(f"{level} {value:.4f}" for level, value in threshold["values"].items())
            + f": {threshold['how']}. " if threshold else "")
           + f"95% intervals: percentile bootstrap over {boot['unit']}s ({boot['n_resamples']} resamples, seed "
           f"{boot['seed']})."),
      Item("37, 38", "23a", "performance at each level", "; ".join(
          f"{level}: {metric_name} {report.interval(entry.get(metric_name), entry['ci'].get(metric_name))}"
          + "".join(f", {m} {report.interval(entry[m], entry['ci'][m])}" for m in ("sensitivity", "specificity")
                    if m in entry)
          + f" ({entry['n']} units, {entry['n_patients']} patients)" for level, entry in result["levels"].items())
           + "."),
  ]
  cal = result.get("calibration")
  if cal or slopes:
    text = ""
    if cal:
      def measured(entry, name):
        return (f"{name} {report.interval(entry['before'], entry['before_ci'])} raw, "
                f"{report.interval(entry['after'], entry['after_ci'])} after")

      text = "; ".join(f"{level}: {measured(e['ece'], 'ECE')} the {e['map']['method']} map, "
                       f"{measured(e['brier'], 'Brier')}" for level, e in cal["levels"].items()) + ". "
    if slopes:
      text += "Calibration slope / intercept of the raw scores (1 / 0 when calibrated): " + "; ".join(
          f"{level}: {report.interval(s['slope']['value'], s['slope']['ci'])} / "
          f"{report.interval(s['intercept']['value'], s['intercept']['ci'])}" for level, s in slopes.items()) + "."
    items.append(Item("28, 37", "12e, 12f, 23a, 24", "calibration", text))
  verdict = result.get("verdict") or {}
  baseline = verdict.get("baseline")
  items.append(Item("30, 37", "12e, 23a", "subgroups and shortcut baselines", (
      f"subgroups declared by the dataset ({result['subgroups']['declaration']['source']}), each with its own "
      "interval, in the report's Subgroups section; " if result.get("subgroups") else "")
      + (f"against the metadata-only baseline {baseline['name']}: "
         f"{'beats' if baseline['overall'].get('beats') else 'does not beat'} it at {verdict['level']} level"
         if baseline else "no declared shortcut, so no metadata-only baseline") + "."))
  saliency = result.get("saliency")
  items.append(Item("31, 39", "", "explainability and failure cases", (
      f"Grad-CAM grid {saliency['grid']}: its 'decided wrong' rows are the most confident wrong decisions of "
      "each class" if saliency else "no saliency grid (no Grad-CAM layer known for this model)") + "."))
  scored = result["dataset"]["split"]
  external = scored == "all"  # CLAIM 2024 tells internal testing (item 32) from external testing (item 33)
  folds = result["dataset"].get("cross_validation")
  items.append(Item("33" if external else "32", "12a", "internal or external testing", (
      "external: this dataset was not the training data (split 'all')" if external
      else f"internal: {folds['folds']}-fold cross-validation over {folds['development']}, every image scored "
      "once, by the model of the fold that did not train on its patient (out-of-fold predictions, pooled)"
      if folds else f"internal: the held-out '{scored}' split of the training dataset") + "."))
  return items


def author_items() -> list:
  return [Item(claim, tripod, topic, AUTHORS) for claim, tripod, topic in AUTHOR_ITEMS]


def for_evaluation(builder, result: dict, workdir, model_path, levels: dict | None, n_resamples: int,
                   seed: int) -> tuple:
  """(items, leakage check) of one evaluation; `levels` (`assessment.levels` of the scored split) for the
  calibration slope, binary tasks only."""
  items, check = dataset_items(builder, result["dataset"].get("cross_validation"))
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
  lines += ["Items of CLAIM 2024 (Tejani et al., Radiol Artif Intell 2024) and TRIPOD+AI (Collins et al., BMJ "
            "2024) this package can fill, then those for the authors; \"-\": that checklist has no such item.", "",
            "| CLAIM 2024 | TRIPOD+AI | item | this evaluation |", "| --- | --- | --- | --- |"]
  lines += [f"| {', '.join(item.claim_2024) or '-'} | {', '.join(item.tripod_ai) or '-'} | {item.topic} | "
            f"{' '.join(item.text.split()).replace('|', '/')} |" for item in items]
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


def _baseline_item(described: str) -> Item | None:
  """What a `mammo_train.baselines` evaluation says its model is ("baseline NAME: how"), or None."""
  if not described.startswith("baseline "):
    return None
  return Item("22, 24, 25, 26", "12c, 13", "model and training",
              f"{described}; fitted on the training split by mammo_train.baselines, its threshold (binary tasks) "
              "chosen on the validation split.")


def facts_for_comparison(loaded: list, result: dict) -> list:
  """The checklist of a comparison: the data, each model's run, the shared protocol, each model's leakage
  check as its evaluation recorded it.

  A model's run is read from the run folder beside its evaluation; a cv folder has none there (its runs are
  the folds), so its own checklist's run items are taken, as its pooled evaluation filled them.
  """
  dataset = result["dataset"]
  folds = loaded[0].folds
  scored_on = (f"the pooled out-of-fold predictions of {len(set(folds))}-fold cross-validation (each image scored "
               "once, by the fold model that did not train on it), the same examples in the same folds for every "
               "model (checked)" if folds is not None else
               f"split '{dataset['split']}', the same examples for every model (checked)")
  items = [Item("7", "5a", "data source", f"{dataset['name']} version {dataset['version']}, {scored_on}.")]
  for model in loaded:
    path = model.folder / CHECKLIST
    stored = json.loads(path.read_text()) if path.is_file() else {}
    leak = stored.get("leakage")
    said = ("no checklist.json in its evaluation: not checked" if leak is None
            else "passed" if leak["passed"] else "**FAILED**")
    items.append(Item("20", "12a", f"leakage check of {model.name}", f"{said}."))
    run = _run_folder([model.folder.parent, model.folder])
    recorded = [Item(**item) for item in stored.get("items", ()) if item["topic"] in RUN_TOPICS]
    own = run_items(run) if run else recorded or [_baseline_item(model.described) or run_items(None)[0]]
    for item in own:
      items.append(dataclasses.replace(item, topic=f"{item.topic} of {model.name}"))
  items.append(software_item())
  boot = result["bootstrap"]
  items.append(Item("29", "12e", "statistical comparison", (
      f"paired patient bootstrap ({boot['n_resamples']} resamples, seed {boot['seed']}) of every difference; "
      + ("DeLong's test (Sun & Xu algorithm)" if not result.get("not_computed")
         else "DeLong's test not computed (binary ROC curves only)")
      + "; McNemar's test on the decisions"
      + ("; Holm adjustment across pairs" if result.get("multiple_comparisons") else "") + ".")))
  return items + author_items()
