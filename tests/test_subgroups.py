"""Subgroup tables, the too-few rule, the within-stratum comparison, and the CMMD shortcut on the real sheet."""
import numpy as np
import pytest
from sklearn import metrics as skm

from mammo_train.evaluation import assessment, baselines, metrics, subgroups

NAMES = metrics.BINARY_NAMES
CMMD_LIKE = {"features": [{"name": "subset"}, {"name": "age", "bands": [40, 50, 60, 70], "missing": -1},
                          {"name": "view"}, {"name": "laterality"}],
             "shortcuts": ["age", "subset"]}


def _case(seed=0, patients=120):
  """Two views of one breast per patient; D2 nearly all malignant, D1 half; older -> more malignant."""
  rng = np.random.default_rng(seed)
  subset = np.where(rng.uniform(size=patients) < 0.5, "D1", "D2")
  age = rng.integers(30, 85, size=patients)
  risk = np.where(subset == "D2", 0.95, 0.5)
  labels = (rng.uniform(size=patients) < risk).astype(int)
  signal = labels + rng.normal(0, 0.8, patients)
  repeat = lambda values: np.repeat(values, 2)
  features = {"subset": repeat(subset), "age": repeat(age), "view": np.tile(["CC", "MLO"], patients)}
  scores = 1 / (1 + np.exp(-(repeat(signal) + rng.normal(0, 0.3, 2 * patients))))
  return assessment.Predictions(repeat(labels), scores, repeat(np.arange(patients).astype(str)),
                                np.full(2 * patients, "L"), features=features)


def _declaration(stored=None):
  return subgroups.parse(stored or CMMD_LIKE, "test")


def test_subgroup_metrics_equal_the_metrics_of_the_subgroup_alone():
  target = _case(patients=400)
  operating = assessment.OperatingPoint({"image": 0.5, "breast": 0.5}, "fixed")
  result, _ = assessment.assess(target, NAMES, operating, n_bootstrap=50, declaration=_declaration())
  rows = {(row["feature"], row["subgroup"]): row for row in result["subgroups"]["levels"]["image"]}
  age = target.features["age"]
  for (feature, value), mask in ((("subset", "D1"), target.features["subset"] == "D1"),
                                 (("view", "MLO"), target.features["view"] == "MLO"),
                                 (("age", "50-59"), (age >= 50) & (age < 60))):
    alone = assessment.Predictions(target.labels[mask], target.scores[mask], target.patient_id[mask],
                                   target.laterality[mask])
    expected, _ = assessment.assess(alone, NAMES, operating, n_bootstrap=50)
    assert not rows[(feature, value)]["too_few"]
    assert rows[(feature, value)]["metrics"] == expected["levels"]["image"], (feature, value)
  # A view is not one value per breast: it has no breast-level subgroups; subset and age have.
  breast = {row["feature"] for row in result["subgroups"]["levels"]["breast"]}
  assert breast == {"subset", "age", "laterality"}
  patient_rows = result["subgroups"]["levels"]["patient"]
  assert sum(row["n"] for row in patient_rows if row["feature"] == "subset") == 400


def test_age_bands_and_missing_values():
  age = subgroups.Feature("age", (40, 50, 60, 70), -1)
  np.testing.assert_array_equal(age.values(np.array([39, 40, 49, 50, 69, 70, 95, -1])),
                                ["<40", "40-49", "40-49", "50-59", "60-69", "70+", "70+", "missing"])
  assert age.order(["70+", "missing", "<40"]) == ["<40", "70+", "missing"]


def test_too_few_to_say_below_the_minimum_patients_per_class():
  minimum = subgroups.MIN_PATIENTS_PER_CLASS
  for benign_patients, too_few in ((minimum - 1, True), (minimum, False)):
    n = benign_patients + 20
    labels = np.r_[np.zeros(benign_patients, int), np.ones(20, int)]
    # Two images per benign patient: counting images instead of patients would pass the rule.
    target = assessment.Predictions(np.repeat(labels, 2), np.repeat(np.linspace(0, 1, n), 2),
                                    np.repeat(np.arange(n).astype(str), 2), np.full(2 * n, "L"),
                                    features={"view": np.full(2 * n, "CC")})
    result, _ = assessment.assess(target, NAMES, None, n_bootstrap=20, declaration=_declaration(
        {"features": [{"name": "view"}]}))
    (row,) = [row for row in result["subgroups"]["levels"]["image"] if row["feature"] == "view"]
    assert row["too_few"] is too_few
    assert row["per_class"]["benign"] == {"n": 2 * benign_patients, "patients": benign_patients}
    assert (row["metrics"] is None) is too_few


def test_within_a_stratum_a_shortcut_score_is_worth_nothing():
  """The model's score IS the subset: clearly better than chance overall, no better inside D1 or D2."""
  target = _case(seed=3, patients=300)
  target.scores = np.where(target.features["subset"] == "D2", 0.9, 0.4)
  chance = assessment.Predictions(target.labels, np.full(len(target.labels), 0.5), target.patient_id,
                                  target.laterality)
  result, _ = assessment.assess(target, NAMES, None, n_bootstrap=200, declaration=_declaration(),
                                baselines={assessment.METADATA_BASELINE: (chance, None, "chance")})
  overall = result["verdict"]["baseline"]["overall"]
  assert overall["difference"] > 0.15 and overall["beats"]
  strata = {row["subgroup"]: row for row in result["verdict"]["baseline"]["strata"] if row["feature"] == "subset"}
  for subset in ("D1", "D2"):
    if strata[subset]["too_few"]:
      continue
    assert strata[subset]["difference"] == pytest.approx(0.0, abs=1e-12)
    assert not strata[subset]["beats"]
  assert not strata["D1"]["too_few"]


def test_verdict_names_the_weakest_subgroup():
  target = _case(seed=5, patients=200)
  mlo = target.features["view"] == "MLO"
  target.scores = np.where(mlo, np.random.default_rng(0).uniform(size=len(mlo)), target.scores)  # MLO: noise
  result, _ = assessment.assess(target, NAMES, None, n_bootstrap=20, declaration=_declaration(
      {"features": [{"name": "view"}, {"name": "subset"}]}))
  assert result["verdict"]["level"] == "breast" and result["verdict"]["baseline"] is None
  image_weakest = subgroups.weakest(result["subgroups"]["levels"]["image"], "roc_auc")
  assert (image_weakest["feature"], image_weakest["subgroup"]) == ("view", "MLO")


def test_declaration_errors_name_the_problem():
  kinds = {"age": "number", "subset": "category", "findings": "other"}
  with pytest.raises(subgroups.DeclarationError, match="'tissue' is not a feature"):
    subgroups.parse({"features": [{"name": "tissue"}]}, "x", kinds)
  with pytest.raises(subgroups.DeclarationError, match="not a scalar"):
    subgroups.parse({"features": [{"name": "findings"}]}, "x", kinds)
  with pytest.raises(subgroups.DeclarationError, match="bands of 'subset'"):
    subgroups.parse({"features": [{"name": "subset", "bands": [1]}]}, "x", kinds)
  with pytest.raises(subgroups.DeclarationError, match="must also be declared"):
    subgroups.parse({"features": [{"name": "age"}], "shortcuts": ["subset"]}, "x", kinds)
  with pytest.raises(subgroups.DeclarationError, match="malformed"):
    subgroups.parse({"subgroups": []}, "x", kinds)


def test_prepared_dataset_declares_its_subgroups(tiny_builder):
  declared = subgroups.declared(tiny_builder)
  assert declared.columns == ("laterality", "view") and declared.shortcuts == ()
  assert "metadata.json" in declared.source


def test_dataset_built_before_the_declaration_falls_back_to_laterality_and_view():
  class Info:  # what tfds gives for a dataset whose metadata.json has no "subgroups"
    full_name = "cmmd/600/1.0.0"
    metadata = {"kept_images": 3744}
    features = {}

  class Old:
    info = Info()

  declared = subgroups.declared(Old())
  assert declared.columns == ("laterality", "view") and declared.shortcuts == ()
  assert "built before" in declared.source


def test_cmmd_age_and_subset_predict_the_label_from_the_real_sheet(shared_data):
  """Breast level, patient split, no pixels: the published analysis found age 0.68, subset 0.78, both 0.85.

  Measured here (test split, 281 breasts): age 0.676, subset 0.767, age + subset 0.841.
  """
  from mammo_tfds import splits  # pylint: disable=import-outside-toplevel
  from mammo_tfds.cmmd import examples  # pylint: disable=import-outside-toplevel
  sheet = shared_data / "cmmd" / "CMMD_clinicaldata_revision.xlsx"
  if not sheet.exists():
    pytest.skip(f"{sheet} not found")
  rows = list(examples.read_sheet(sheet).values())
  strata = {}
  for row in rows:
    strata[row.patient_id] = max(strata.get(row.patient_id, 0), row.label)
  split_of = splits.assign_patients(strata, seed=examples.SPLIT_SEED)

  def columns(split):
    chosen = [row for row in rows if split_of[row.patient_id] == split]
    return {"label": np.array([row.label for row in chosen]), "age": np.array([row.age for row in chosen]),
            "subset": np.array([row.patient_id.split("-")[0] for row in chosen])}

  train, test = columns("train"), columns("test")
  assert not set(split_of[p] for p in strata if split_of[p] == "train") & {"test"}
  auc = {}
  for names in (("age",), ("subset",), ("age", "subset")):
    model = baselines.fit_metadata_logistic(train, names, {"age": -1})
    auc[names] = skm.roc_auc_score(test["label"], baselines.predict_metadata_logistic(model, test))
  assert auc[("age",)] == pytest.approx(0.68, abs=0.04)
  assert auc[("subset",)] == pytest.approx(0.78, abs=0.04)
  assert auc[("age", "subset")] == pytest.approx(0.85, abs=0.03)
  assert auc[("age", "subset")] > max(auc[("age",)], auc[("subset",)])
