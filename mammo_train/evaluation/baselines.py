"""Baselines a model must beat, scored with the model's own protocol and report
(`python -m mammo_train.baselines`; evaluation compares every model with some).

- majority: always the most common class of the training split.
- prior_random: guesses each class with its training-split share. Its metrics
  are EXACT expectations (the expected confusion matrix: expected accuracy is
  the sum over classes of train share x evaluated share, the sum of squared
  shares when the two agree), not one sampled run.
- pixel_logistic: logistic regression on the flattened image, downscaled to
  256x256 as in the original work, fitted by SGD one batch at a time
  (`SGDClassifier.partial_fit`) so memory stays bounded on CMMD.
- age_logistic: logistic regression on age alone (CMMD): a known confounder
  that predicts the label with AUC around 0.7-0.8.
- metadata_logistic: logistic regression on every non-image feature the
  dataset declares a possible shortcut (`subgroups`; CMMD: age + subset, AUC
  about 0.85 without a pixel). Numbers are standardised (a missing value is
  imputed with the training median and flagged), categories one-hot encoded.
  `mammo_train.evaluate` fits it itself whenever the dataset declares a
  shortcut, and compares the model with it inside each stratum.

All are fitted on the training split; thresholds are chosen on validation and
applied unchanged to the scored split. Each writes the same report as a model
evaluation, plus predictions.npz, which `mammo_train.evaluate --baselines_dir`
loads to compare a model with it on the same examples (paired bootstrap), and
predictions.csv, which makes its folder one that `mammo_train.compare` takes
(DeLong and McNemar beside the bootstrap; not majority and prior_random,
whose decisions are not made from their constant scores).
"""
import dataclasses
import pathlib

import numpy as np
from absl import logging
from sklearn import compose, impute, linear_model, pipeline, preprocessing

from mammo_train import config
from mammo_train.evaluation import assessment, report, scored, subgroups
from mammo_train.inputs import data

ALL = config.BASELINES
DESCRIPTIONS = {
    "majority": "always the most common class of the training split",
    "prior_random": "guesses each class with its training-split share (exact expected metrics)",
    "pixel_logistic": "logistic regression on flattened downscaled pixels, fitted by SGD over batches",
    "age_logistic": "logistic regression on age alone (a known confounder)",
    "metadata_logistic": "logistic regression on the dataset's declared possible shortcuts (non-image features)",
}
# Metadata columns that identify an example rather than describe it: never subgroup features.
_IDENTITY = ("label", "patient_id")
PREDICTIONS = "predictions.npz"


# pixel_logistic's default input side and SGD batch (cross-validation's pooled baseline uses these).
PIXEL_SIZE, PIXEL_BATCH = 256, 64


def class_shares(labels, num_classes: int) -> np.ndarray:
  return np.bincount(np.asarray(labels, dtype=int), minlength=num_classes) / len(labels)


def as_predictions(metadata: dict, scores, decisions=None) -> assessment.Predictions:
  features = {key: value for key, value in metadata.items() if key not in _IDENTITY}
  return assessment.Predictions(metadata["label"], scores, metadata["patient_id"], metadata["laterality"],
                                decisions, features)


def _constant_scores(shares: np.ndarray, n: int):
  """Scores that carry no information: the prior itself (AUC exactly 0.5)."""
  return np.full(n, shares[1]) if len(shares) == 2 else np.tile(shares, (n, 1))


def majority(shares: np.ndarray, metadata: dict) -> assessment.Predictions:
  n = len(metadata["label"])
  decisions = np.tile(np.eye(len(shares))[np.argmax(shares)], (n, 1))
  return as_predictions(metadata, _constant_scores(shares, n), decisions)


def prior_random(shares: np.ndarray, metadata: dict) -> assessment.Predictions:
  n = len(metadata["label"])
  return as_predictions(metadata, _constant_scores(shares, n), np.tile(shares, (n, 1)))


def _pixels(builder, split, image_size: int, batch_size: int):
  """Flattened [0, 1] pixel batches, streamed: CMMD at 256x256 would not fit in memory as one array."""
  for images, labels in data.eval_batches(builder, split, image_size, batch_size).as_numpy_iterator():
    yield images.reshape(len(images), -1).astype(np.float32) / 255.0, labels


def _unit_norm(features):
  """Standardised pixels / sqrt(#pixels): a sample's squared norm is about 1, so SGD's step sizes
  suit 65,536 features (unscaled, one step saturates every probability at 0 or 1)."""
  return features / np.sqrt(features.shape[1])


def fit_pixel_logistic(builder, *, train="train", image_size: int = PIXEL_SIZE, batch_size: int = PIXEL_BATCH,
                       epochs: int = 3, seed: int = 0):
  """Standardised pixels -> L2 logistic regression by SGD, classes weighted to balance.

  One streamed pass over `train` (the train split, or a cross-validation
  fold's training part) fits the per-pixel mean and scale, then `epochs`
  passes of SGD.
  """
  num_classes = data.num_classes(builder)
  shares = class_shares(data.split_metadata(builder, train)["label"], num_classes)
  weights = {c: 1.0 / (num_classes * share) for c, share in enumerate(shares) if share > 0}
  scaler = preprocessing.StandardScaler()
  for features, _ in _pixels(builder, train, image_size, batch_size):
    scaler.partial_fit(features)
  features_of = pipeline.make_pipeline(scaler, preprocessing.FunctionTransformer(_unit_norm))
  classifier = linear_model.SGDClassifier(loss="log_loss", alpha=1e-3, class_weight=weights, random_state=seed)
  for _ in range(epochs):
    for features, labels in _pixels(builder, train, image_size, batch_size):
      classifier.partial_fit(features_of.transform(features), labels, classes=np.arange(num_classes))
  return pipeline.make_pipeline(features_of, classifier)


def predict_pixel_logistic(model, builder, split, image_size: int, batch_size: int) -> np.ndarray:
  probs = np.concatenate([model.predict_proba(x) for x, _ in _pixels(builder, split, image_size, batch_size)])
  return probs[:, 1] if probs.shape[1] == 2 else probs


def fit_age_logistic(train: dict):
  model = pipeline.make_pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
  return model.fit(train["age"].reshape(-1, 1).astype(float), train["label"])


def predict_age_logistic(model, metadata: dict) -> np.ndarray:
  probs = model.predict_proba(metadata["age"].reshape(-1, 1).astype(float))
  return probs[:, 1] if probs.shape[1] == 2 else probs


def _design(columns: dict, names, missing: dict) -> np.ndarray:
  """[N, F] object array of the named columns, with declared missing values as NaN."""
  table = np.empty((len(columns[names[0]]), len(names)), dtype=object)
  for j, name in enumerate(names):
    column = np.asarray(columns[name])
    if np.issubdtype(column.dtype, np.number):
      column = column.astype(float)
      if name in missing:
        column[column == float(missing[name])] = np.nan
    table[:, j] = column
  return table


@dataclasses.dataclass
class MetadataLogistic:
  """A fitted metadata baseline: which columns it reads, their missing values, the scikit-learn classifier."""
  names: list
  missing: dict
  classifier: pipeline.Pipeline


def fit_metadata_logistic(train: dict, names, missing: dict | None = None):
  """Logistic regression on the metadata columns `names` of `train` (name -> [N] values, and "label").

  Number columns: median-imputed (with a missing indicator) and standardised;
  other columns: one-hot (a value unseen in training encodes as all zeros).
  """
  names = list(names)
  numeric = [j for j, name in enumerate(names) if np.issubdtype(np.asarray(train[name]).dtype, np.number)]
  categorical = [j for j in range(len(names)) if j not in numeric]
  features = compose.ColumnTransformer([
      ("numbers", pipeline.make_pipeline(impute.SimpleImputer(strategy="median", add_indicator=True),
                                         preprocessing.StandardScaler()), numeric),
      ("categories", preprocessing.OneHotEncoder(handle_unknown="ignore"), categorical)])
  model = MetadataLogistic(names, dict(missing or {}),
                           pipeline.make_pipeline(features, linear_model.LogisticRegression(max_iter=1000)))
  model.classifier.fit(_design(train, names, model.missing), np.asarray(train["label"]))
  return model


def predict_metadata_logistic(model: MetadataLogistic, metadata: dict) -> np.ndarray:
  probs = model.classifier.predict_proba(_design(metadata, model.names, model.missing))
  return probs[:, 1] if probs.shape[1] == 2 else probs


def metadata_baseline(metadata: dict, target: assessment.Predictions, declaration: subgroups.Declaration,
                      threshold_rule: str = "recall", target_recall: float = 0.95) -> tuple:
  """metadata_logistic fitted on metadata["train"], scored on the examples of `target`, for a model's report.

  Args:
    metadata: split name -> `data.split_metadata` of it with the declared
      columns: "train", "target" (the scored split, in `target`'s order) and,
      when the dataset has one, "validation" (where its threshold is chosen).
    target: the model's predictions: the baseline keeps their labels and ids,
      so the two are compared on the very same examples.

  Returns:
    (Predictions, OperatingPoint or None, description), as `assessment.assess` takes baselines.
  """
  model = fit_metadata_logistic(metadata["train"], declaration.shortcuts, declaration.missing_values())
  predictions = assessment.Predictions(target.labels, predict_metadata_logistic(model, metadata["target"]),
                                       target.patient_id, target.laterality, features=target.features)
  operating = None
  if "validation" in metadata and predictions.scores.ndim == 1:
    validation = as_predictions(metadata["validation"], predict_metadata_logistic(model, metadata["validation"]))
    operating = assessment.choose_operating_point(validation, "validation", threshold_rule, target_recall)
  return predictions, operating, f"{DESCRIPTIONS['metadata_logistic']}: {', '.join(declaration.shortcuts)}"


def save_predictions(workdir, predictions: assessment.Predictions, dataset: str, split: str) -> None:
  fields = {"labels": predictions.labels, "scores": predictions.scores, "patient_id": predictions.patient_id,
            "laterality": predictions.laterality, "dataset": dataset, "split": split}
  if predictions.decisions is not None:
    fields["decisions"] = predictions.decisions
  np.savez(pathlib.Path(workdir) / PREDICTIONS, **fields)


def load(baselines_dir, dataset: str, split: str) -> dict:
  """Saved baselines of this dataset and split: name -> (Predictions, OperatingPoint or None, description)."""
  found = {}
  for path in sorted(pathlib.Path(baselines_dir).glob(f"*/{PREDICTIONS}")):
    with np.load(path) as stored:
      if str(stored["dataset"]) != dataset or str(stored["split"]) != split:
        continue
      predictions = assessment.Predictions(
          stored["labels"], stored["scores"], stored["patient_id"], stored["laterality"],
          stored["decisions"] if "decisions" in stored else None)
    operating = path.parent / assessment.OPERATING_POINT
    name = path.parent.name
    found[name] = (predictions, assessment.OperatingPoint.load(operating) if operating.exists() else None,
                   DESCRIPTIONS.get(name, name))
  return found


def run(builder, split: str, workdir, names=ALL, image_size: int = PIXEL_SIZE, batch_size: int = PIXEL_BATCH,
        epochs: int = 3, protocol: config.Protocol = config.Protocol()) -> dict:
  """Fits and scores each baseline; writes workdir/<name>/ reports and a side-by-side report.md.

  Returns:
    name -> the metrics dict as written to its metrics.json.
  """
  class_names = builder.info.features["label"].names
  num_classes = len(class_names)
  declaration = subgroups.declared(builder)
  metadata = {name: data.split_metadata(builder, name, declaration.columns)
              for name in ("train", "validation", split)}
  shares = class_shares(metadata["train"]["label"], num_classes)
  results = {}
  for name in names:
    if name == "age_logistic" and "age" not in metadata["train"]:
      logging.info("%s has no age: skipping the age baseline", builder.info.full_name)
      continue
    if name == "metadata_logistic" and not declaration.shortcuts:
      logging.info("%s declares no possible shortcut: skipping the metadata baseline", builder.info.full_name)
      continue
    logging.info("baseline %s", name)
    if name in ("majority", "prior_random"):
      make = majority if name == "majority" else prior_random
      validation, target = make(shares, metadata["validation"]), make(shares, metadata[split])
    elif name == "pixel_logistic":
      model = fit_pixel_logistic(builder, image_size=image_size, batch_size=batch_size, epochs=epochs,
                                 seed=protocol.seed)
      validation, target = (as_predictions(metadata[s], predict_pixel_logistic(model, builder, s, image_size,
                                                                             batch_size))
                            for s in ("validation", split))
    elif name == "age_logistic":
      model = fit_age_logistic(metadata["train"])
      validation, target = (as_predictions(metadata[s], predict_age_logistic(model, metadata[s]))
                            for s in ("validation", split))
    elif name == "metadata_logistic":
      model = fit_metadata_logistic(metadata["train"], declaration.shortcuts, declaration.missing_values())
      validation, target = (as_predictions(metadata[s], predict_metadata_logistic(model, metadata[s]))
                            for s in ("validation", split))
    else:
      raise ValueError(f"unknown baseline {name!r}: expected some of {ALL}")
    operating = None
    if num_classes == 2 and target.decisions is None:
      operating = assessment.choose_operating_point(validation, "validation", protocol.threshold_rule,
                                                    protocol.target_recall)
    result, curves = assessment.assess(target, class_names, operating, n_bootstrap=protocol.n_bootstrap,
                                       seed=protocol.seed, declaration=declaration)
    result = {"dataset": assessment.dataset_entry(builder, split, target, class_names),
              "model": f"baseline {name}: {DESCRIPTIONS[name]}", **result}
    folder = pathlib.Path(workdir) / name
    report.write(result, curves, folder)
    if operating:
      operating.save(folder)
    save_predictions(folder, target, builder.info.full_name, split)
    scored.write_predictions(folder, builder, split, target, class_names)
    results[name] = report.plain(result)
  if results:
    (pathlib.Path(workdir) / report.REPORT).write_text(report.summary(results))
  return results
