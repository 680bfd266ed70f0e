"""Patient-grouped K-fold cross-validation (`python -m mammo_train.cv`): K training runs, one pooled report.

The development data (the train and validation splits; the test split too
with --include_test) is cut into K folds by `mammo_tfds.splits.image_folds`,
the builders' own split rule: whole patients, patients with identical pixels
together, stratified by a patient's highest label, deterministic from the
seed. Fold k is scored by a model trained on the other folds except fold
(k+1) mod K, which picks its best epoch, threshold and calibration. Folds are
`data.Selection`s of the prepared records (no new TFRecords), and each fold is
an ordinary training run in WORKDIR/fold_<k>/ (`training.loop.train`), so a
killed cross-validation resumes like a killed run, and a finished fold
(its run.json says so) is never retrained.

WORKDIR/cv/ then holds the pooled out-of-fold predictions (every development
image once, with its fold and its fold's thresholds) and their report: the
evaluation's metrics, intervals, subgroups, baselines and shortcut strata on
the pooled predictions, each unit decided at its own fold's thresholds, plus
every fold's figures with their mean and standard deviation, and the
reporting checklist (`evaluation.checklist`).
"""
import csv
import dataclasses
import json
import os

from absl import logging
import keras
import numpy as np

from mammo_tfds import splits
from mammo_train import config, run_folder
from mammo_train.evaluation import assessment, baselines, checklist, report, scored, subgroups
from mammo_train.inputs import data
from mammo_train.training import loop, runtime

CV = "cv"  # the pooled results' folder
FOLDS = "folds.json"  # the fold assignment: each patient's fold, each fold's validation fold
FOLD_COLUMNS = ("fold", "threshold_image", "threshold_breast")


def fold_folder(workdir: str, fold: int) -> str:
  return os.path.join(workdir, f"fold_{fold}")


def development(include_test: bool) -> data.Selection:
  """The data cross-validated over: every patient of the train and validation splits (and test)."""
  names = ("train", "validation", "test") if include_test else ("train", "validation")
  return data.Selection(names, None, "+".join(names))


@dataclasses.dataclass(frozen=True)
class Folds:
  """Which fold each development patient is in, and which fold validates which."""
  count: int
  of_patient: dict  # patient id -> fold

  def validation_of(self, fold: int) -> int:
    """The fold that picks fold `fold`'s epoch, threshold and calibration: the next one."""
    return (fold + 1) % self.count

  def patients(self, keep) -> frozenset:
    return frozenset(patient for patient, fold in self.of_patient.items() if keep(fold))

  def partition(self, development_data: data.Selection, fold: int) -> data.Partition:
    validation = self.validation_of(fold)
    of = lambda keep, name: data.Selection(development_data.splits, self.patients(keep), name)  # noqa: E731
    return data.Partition(
        train=of(lambda f: f not in (fold, validation),
                 f"folds {', '.join(str(f) for f in range(self.count) if f not in (fold, validation))} of {self.count}"),
        validation=of(lambda f: f == validation, f"fold {validation} of {self.count}"),
        test=of(lambda f: f == fold, f"fold {fold} of {self.count}"))

  def as_dict(self) -> dict:
    return {"folds": self.count, "validation_of": {str(k): self.validation_of(k) for k in range(self.count)},
            "patients": dict(sorted(self.of_patient.items()))}


def assign(builder, development_data: data.Selection, count: int, seed: int) -> Folds:
  """The folds of the development data's patients, by `splits.image_folds` (one implementation)."""
  metadata = data.split_metadata(builder, development_data)
  folds = splits.image_folds(list(metadata["patient_id"]), [int(label) for label in metadata["label"]],
                             list(data.image_digests(builder, development_data)), count, seed)
  of_patient = {str(patient): int(fold) for patient, fold in zip(metadata["patient_id"], folds)}
  config.check(len(set(of_patient.values())) == count,
               f"--folds={count}: {builder.info.full_name}'s {development_data} has only {len(of_patient)} "
               "patients (linked groups), too few to fill every fold")
  return Folds(count, of_patient)


def _record(folder: str, folds: Folds) -> None:
  """cv/folds.json; a rerun into the same workdir must find the same folds (same data, --folds, --seed)."""
  path = os.path.join(folder, FOLDS)
  if os.path.exists(path):
    with open(path) as f:
      config.check(json.load(f) == folds.as_dict(),
                   f"{path}: this workdir was cross-validated with other folds (another dataset, --folds or "
                   "--seed): pass a new --workdir")
    return
  os.makedirs(folder, exist_ok=True)
  with open(path, "w") as f:
    json.dump(folds.as_dict(), f, indent=1)


def run(cfg: config.CrossValidation, flagfile: str) -> dict:
  """Trains the folds left to train, then pools their test-part predictions into WORKDIR/cv/.

  Returns:
    The pooled metrics as written to cv/metrics.json.
  """
  workdir = cfg.train.workdir
  builder = data.load_builder(cfg.train.dataset, cfg.train.data_dir)
  development_data = development(cfg.include_test)
  runtime.require_splits(builder, development_data.splits, "cross-validation over the development data")
  folds = assign(builder, development_data, cfg.folds, cfg.train.seed)
  _record(os.path.join(workdir, CV), folds)
  run_folder.write_flags(workdir, flagfile)
  for fold in range(cfg.folds):
    fold_cfg = dataclasses.replace(cfg.train, workdir=fold_folder(workdir, fold),
                                   partition=folds.partition(development_data, fold),
                                   feature_cache_root=os.path.join(workdir, run_folder.FEATURE_CACHE))
    if run_folder.RunFolder(fold_cfg.workdir).finished():
      logging.info("fold %d: finished before, not retrained", fold)
      continue
    logging.info("fold %d of %d: training", fold, cfg.folds)
    loop.train(fold_cfg, flagfile)
    keras.backend.clear_session()
  return pool(builder, development_data, folds, workdir, cfg.train.protocol)


def _fold_predictions(workdir: str, fold: int) -> list[dict]:
  with open(os.path.join(run_folder.RunFolder(fold_folder(workdir, fold)).eval, scored.PREDICTIONS),
            newline="") as f:
    return list(csv.DictReader(f))


def pooled_predictions(builder, development_data, folds: Folds, workdir: str, declaration) -> tuple:
  """(Predictions of every development image in `split_metadata` order, with a "fold" feature; sources;
  score column names). An image seen twice, by the wrong fold, or never is an error naming it."""
  metadata = data.split_metadata(builder, development_data, (*declaration.columns, "source"))
  index = {source: i for i, source in enumerate(metadata["source"])}
  image_folds = np.array([folds.of_patient[patient] for patient in metadata["patient_id"]])
  seen = np.zeros(len(index), bool)
  scores, columns = None, None
  for fold in range(folds.count):
    for row in _fold_predictions(workdir, fold):
      i = index.get(row["source"])
      if i is None or image_folds[i] != fold or seen[i]:
        raise ValueError(f"{fold_folder(workdir, fold)}: image {row['source']} is not one of fold {fold}'s, "
                         "or was seen twice")
      columns = columns or [name for name in row if name == "score" or name.startswith("p_")]
      if scores is None:
        scores = np.zeros((len(index), len(columns)))
      scores[i] = [float(row[name]) for name in columns]
      seen[i] = True
  if not seen.all():
    raise ValueError(f"{int((~seen).sum())} development images were seen by no fold, e.g. "
                     f"{metadata['source'][~seen][0]}")
  features = {key: value for key, value in metadata.items() if key not in ("label", "patient_id", "source")}
  features["fold"] = image_folds
  predictions = assessment.Predictions(metadata["label"], scores[:, 0] if columns == ["score"] else scores,
                                       metadata["patient_id"], metadata["laterality"], features=features)
  return predictions, metadata, columns


def _each_fold_s_own(by_fold: dict, description: str, protocol) -> assessment.OperatingPoint:
  """Per-fold thresholds (fold -> level -> threshold) as one operating point: each unit is decided at its
  own fold's (`OperatingPoint.by_fold`); the values shown are the folds' medians."""
  return assessment.OperatingPoint(
      {level: float(np.median([chosen[level] for chosen in by_fold.values()]))
       for level in assessment.THRESHOLD_LEVELS}, description,
      protocol.threshold_rule, protocol.target_recall if protocol.threshold_rule == "recall" else None, by_fold)


def _fold_operating_point(workdir: str, folds: Folds, protocol) -> assessment.OperatingPoint:
  return _each_fold_s_own(
      {str(fold): assessment.OperatingPoint.read(run_folder.RunFolder(fold_folder(workdir, fold)).operating_point)
       .thresholds for fold in range(folds.count)},
      f"each fold's own thresholds, chosen on its validation fold ((k+1) mod {folds.count}) by its run "
      "and applied to its held-out fold (the values shown are the folds' medians)", protocol)


def _pooled_baselines(builder, development_data, folds: Folds, pooled, declaration, class_names, protocol) -> dict:
  """The baselines under the same folds: each fitted on fold k's training part (threshold on its
  validation fold) and scored on fold k, pooled like the model.

  pixel_logistic is refitted per fold on the fold's training part (`baselines.PIXEL_SIZE` px, streamed), so the
  cnn's advantage over pixels is measured on the same out-of-fold images, paired.
  """
  tables = data.split_metadata(builder, development_data, declaration.columns)
  fold_of = pooled.features["fold"]
  n, k = len(pooled.labels), len(class_names)
  fixed = {name: np.zeros((n, k)) for name in ("majority", "prior_random")}
  fixed_scores = np.zeros((n,) if k == 2 else (n, k))  # both score the training part's class shares
  pixel_scores = np.zeros((n,) if k == 2 else (n, k))
  metadata_scores, thresholds = np.zeros(n), {"metadata": {}, "pixel": {}}
  for fold in range(folds.count):
    parts = {"train": ~np.isin(fold_of, [fold, folds.validation_of(fold)]),
             "validation": fold_of == folds.validation_of(fold), "target": fold_of == fold}
    sliced = {part: {key: value[rows] for key, value in tables.items()} for part, rows in parts.items()}
    shares = baselines.class_shares(sliced["train"]["label"], k)
    for name, make in (("majority", baselines.majority), ("prior_random", baselines.prior_random)):
      made = make(shares, sliced["target"])
      fixed[name][parts["target"]] = made.decisions
      fixed_scores[parts["target"]] = made.scores
    partition = folds.partition(development_data, fold)
    logging.info("baseline pixel_logistic: fitting on %s's training part (%s)", partition.test, partition.train)
    pixels = baselines.fit_pixel_logistic(builder, train=partition.train, seed=protocol.seed)
    score = lambda selection: baselines.predict_pixel_logistic(  # noqa: E731
        pixels, builder, selection, baselines.PIXEL_SIZE, baselines.PIXEL_BATCH)
    pixel_scores[parts["target"]] = score(partition.test)
    if k == 2:  # a threshold from the validation fold; multi-class decides by argmax, so it is not scored
      thresholds["pixel"][str(fold)] = assessment.choose_operating_point(
          baselines.as_predictions(sliced["validation"], score(partition.validation)), "validation",
          protocol.threshold_rule, protocol.target_recall).thresholds
    if declaration.shortcuts and k == 2:
      target = assessment.Predictions(pooled.labels[parts["target"]], pooled.scores[parts["target"]],
                                      pooled.patient_id[parts["target"]], pooled.laterality[parts["target"]])
      made, operating, description = baselines.metadata_baseline(sliced, target, declaration,
                                                                 protocol.threshold_rule, protocol.target_recall)
      metadata_scores[parts["target"]] = made.scores
      thresholds["metadata"][str(fold)] = operating.thresholds
  compared = {name: (dataclasses.replace(pooled, scores=fixed_scores, decisions=fixed[name]), None,
                     baselines.DESCRIPTIONS[name]) for name in fixed}
  own = "each fold's own, chosen on its validation fold"
  compared["pixel_logistic"] = (
      dataclasses.replace(pooled, scores=pixel_scores),
      _each_fold_s_own(thresholds["pixel"], own, protocol) if k == 2 else None,
      f"{baselines.DESCRIPTIONS['pixel_logistic']}, at {baselines.PIXEL_SIZE} px, refitted on each fold's "
      "training part")
  if thresholds["metadata"]:
    compared[assessment.METADATA_BASELINE] = (dataclasses.replace(pooled, scores=metadata_scores),
                                              _each_fold_s_own(thresholds["metadata"], own, protocol), description)
  return compared


def fold_figures(workdir: str, folds: Folds) -> dict:
  """Each fold's headline metrics per level (from its eval/metrics.json), with their mean and SD over folds."""
  per_fold = {}
  for fold in range(folds.count):
    with open(run_folder.RunFolder(fold_folder(workdir, fold)).test_metrics) as f:
      levels = json.load(f)["levels"]
    per_fold[str(fold)] = {level: report_metrics(scores) for level, scores in levels.items()}
  summary = {}
  for level in per_fold["0"]:
    summary[level] = {}
    for name in per_fold["0"][level]:
      values = np.array([per_fold[f][level][name] for f in per_fold if per_fold[f][level][name] is not None],
                        dtype=float)
      summary[level][name] = {"mean": float(values.mean()) if len(values) else None,
                              "sd": float(values.std(ddof=1)) if len(values) > 1 else None,
                              "folds": len(values)}
  return {"validation_of": {str(k): folds.validation_of(k) for k in range(folds.count)},
          "per_fold": per_fold, "summary": summary}


def folds_section(folds: dict) -> list:
  """report.md's last section: each fold's own figures on its held-out fold, their mean and SD."""
  lines = ["## Folds", "",
           "Each fold scored by the model trained without it; fold k's epoch, threshold and calibration were "
           "chosen on its validation fold (" + ", ".join(f"{k} by {v}" for k, v in folds["validation_of"].items())
           + "). The figures above pool the out-of-fold predictions; these are per fold.", ""]
  number = lambda value: "n/a" if value is None else f"{value:.3f}"  # noqa: E731
  for level, summary in folds["summary"].items():
    names = list(summary)
    lines += [f"### {level.capitalize()} level", "", "| fold | " + " | ".join(names) + " |",
              "| --- " * (len(names) + 1) + "|"]
    lines += [f"| {fold} | " + " | ".join(number(levels[level][name]) for name in names) + " |"
              for fold, levels in folds["per_fold"].items()]
    lines += ["| mean (SD) | " + " | ".join(f"{number(summary[name]['mean'])} ({number(summary[name]['sd'])})"
                                            for name in names) + " |", ""]
  return lines


def report_metrics(scores: dict) -> dict:
  return {name: scores.get(name) for name in ("roc_auc", "macro_roc_auc", "pr_auc", "sensitivity", "specificity",
                                              "accuracy", "balanced_accuracy") if name in scores}


def pool(builder, development_data: data.Selection, folds: Folds, workdir: str, protocol) -> dict:
  """WORKDIR/cv/: predictions.csv (every development image once, its fold and thresholds) and the report."""
  class_names = builder.info.features["label"].names
  declaration = subgroups.declared(builder)
  pooled, metadata, columns = pooled_predictions(builder, development_data, folds, workdir, declaration)
  binary = len(class_names) == 2
  operating = _fold_operating_point(workdir, folds, protocol) if binary else None
  compared = _pooled_baselines(builder, development_data, folds, pooled, declaration, class_names, protocol)
  result, curves = assessment.assess(pooled, class_names, operating, baselines=compared,
                                     n_bootstrap=protocol.n_bootstrap, seed=protocol.seed, declaration=declaration)
  entry = assessment.dataset_entry(builder, CV, pooled, class_names)
  entry["cross_validation"] = {"folds": folds.count, "development": development_data.name}
  result = {"dataset": entry, "model": f"{folds.count} fold models ({workdir}/fold_<k>/best.keras)",
            **result, "folds": fold_figures(workdir, folds)}
  out = os.path.join(workdir, CV)
  report.write(result, curves, out)
  with open(os.path.join(out, report.REPORT), "a") as f:
    f.write("\n".join(["", *folds_section(result["folds"])]) + "\n")
  # The reporting checklist, as every evaluation carries it; the model and its training: fold 0's run.
  checklist.record(builder, report.plain(result), out, os.path.join(fold_folder(workdir, 0), run_folder.BEST),
                   assessment.levels(pooled, 2) if binary else None, protocol.n_bootstrap, protocol.seed)
  write_predictions(out, pooled, metadata, columns, class_names, operating)
  logging.info("cross-validation of %d folds pooled into %s", folds.count, out)
  return report.plain(result)


def write_predictions(folder: str, pooled, metadata, columns, class_names, operating) -> str:
  """cv/predictions.csv: evaluate's columns, then each image's fold and its fold's thresholds."""
  path = os.path.join(folder, scored.PREDICTIONS)
  folds = pooled.features["fold"]
  scores = np.asarray(pooled.scores, dtype=float).reshape(len(folds), -1)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["source", "patient_id", "laterality", "view", "label", *columns,
                     *(FOLD_COLUMNS if operating else FOLD_COLUMNS[:1])])
    for i, fold in enumerate(folds):
      thresholds = ([operating.by_fold[str(fold)][level] for level in assessment.THRESHOLD_LEVELS]
                    if operating else [])
      writer.writerow([metadata["source"][i], metadata["patient_id"][i], metadata["laterality"][i],
                       metadata["view"][i], class_names[int(pooled.labels[i])], *scores[i].tolist(), int(fold),
                       *thresholds])
  return path
