"""The reporting checklist: its leakage check fails visibly on a planted leak; calibration slope / intercept;
every item carries CLAIM 2024 / TRIPOD+AI numbers from the published lists."""
import json
import types

import numpy as np
import pytest

from mammo_train.evaluation import calibration, checklist


def _clean():
  patients = {"train": ["A", "A", "B"], "validation": ["C"], "test": ["D", "E"]}
  digests = {"train": ["a1", "a2", "b1"], "validation": ["c1"], "test": ["d1", "e1"]}
  return patients, digests


def test_clean_splits_pass():
  check = checklist.leakage(*_clean())
  assert check["passed"]
  assert check["per_split"]["train"] == {"patients": 2, "images": 3, "duplicate_images": 0}
  lines = "\n".join(checklist.section([checklist.Item("20", "12a", "leakage", checklist.leakage_text(check))], check))
  assert "FAILED" not in lines and "no patient and no identical image in two splits" in lines


@pytest.mark.parametrize("plant", ["patient", "pixels"])
def test_a_planted_leak_fails_visibly(plant):
  patients, digests = _clean()
  if plant == "patient":
    patients["test"].append("A")  # a training patient's image in test
    digests["test"].append("a3")
  else:
    patients["test"].append("Z")  # a new patient id, but the pixels of a training image (CMMD's D1-0202 / D2-0284)
    digests["test"].append("b1")
  check = checklist.leakage(patients, digests)
  assert not check["passed"]
  assert (check["patients_in_several_splits"] == ["A"]) == (plant == "patient")
  assert (check["images_in_several_splits"] == ["b1"]) == (plant == "pixels")
  lines = "\n".join(checklist.section([checklist.Item("20", "12a", "leakage", checklist.leakage_text(check))], check))
  assert "LEAKAGE CHECK FAILED" in lines and "**FAILED: the splits leak.**" in lines


def test_calibration_slope_and_intercept():
  """Outcomes drawn from the probabilities: slope ~1, intercept ~0; probabilities made twice as extreme on the
  logit scale: slope ~0.5; shifted up by 1 on the logit: intercept ~-1."""
  rng = np.random.default_rng(0)
  probs = 1 / (1 + np.exp(-rng.normal(scale=1.5, size=20000)))
  labels = (rng.random(20000) < probs).astype(int)
  logit = calibration.logit(probs)
  slope, intercept = calibration.slope_and_intercept(labels, probs)[0]
  assert slope == pytest.approx(1, abs=0.05) and intercept == pytest.approx(0, abs=0.05)
  assert calibration.slope_and_intercept(labels, 1 / (1 + np.exp(-2 * logit)))[0, 0] == pytest.approx(0.5, abs=0.03)
  assert calibration.slope_and_intercept(labels, 1 / (1 + np.exp(-(logit + 1))))[0, 1] == pytest.approx(-1, abs=0.05)


def test_calibration_fit_has_intervals_and_nan_for_one_class_resamples():
  rng = np.random.default_rng(1)
  probs = rng.uniform(0.05, 0.95, 200)
  labels = (rng.random(200) < probs).astype(int)
  fitted = checklist.calibration_fit(labels, probs, np.arange(200).astype(str), 50, 0)
  low, high = fitted["slope"]["ci"]
  assert low < fitted["slope"]["value"] < high
  weights = np.zeros((1, 200))
  weights[0, labels == 1] = 1
  assert np.isnan(calibration.slope_and_intercept(labels, probs, weights)).all()


def test_items_no_tool_can_know_are_left_to_the_authors():
  items = checklist.author_items()
  assert all(item.text == checklist.AUTHORS for item in items)
  assert any("ethics" in item.topic for item in items) and any("intended use" in item.topic for item in items)


def test_the_recorded_lists_are_the_published_ones():
  """CLAIM 2024: items 1-44. TRIPOD+AI: 27 items in 52 entries (3a-c, 5a-b, 6a-c, 8a-c, 9a-c, 12a-g, 18a-f,
  20a-c, 23a-b, 27a-c)."""
  assert checklist.CLAIM_2024 == tuple(str(n) for n in range(1, 45))
  assert len(checklist.TRIPOD_AI) == len(set(checklist.TRIPOD_AI)) == 52
  assert {entry.rstrip("abcdefg") for entry in checklist.TRIPOD_AI} == {str(n) for n in range(1, 28)}
  assert [e for e in checklist.TRIPOD_AI if e.startswith("12")] == [f"12{s}" for s in "abcdefg"]
  assert [e for e in checklist.TRIPOD_AI if e.startswith("18")] == [f"18{s}" for s in "abcdef"]


@pytest.mark.parametrize("claim, tripod", [("45", "5a"), ("0", ""), ("", "5c"), ("", "28"), ("7", "12h"),
                                           ("22-26", "")])
def test_a_number_outside_the_published_lists_is_refused(claim, tripod):
  with pytest.raises(ValueError, match="has no item"):
    checklist.Item(claim, tripod, "topic", "text")


def _result(split: str) -> dict:
  """An evaluation result as report.plain leaves it, with every optional part present."""
  entry = {"roc_auc": 0.8, "sensitivity": 0.7, "specificity": 0.75, "n": 40, "n_patients": 20,
           "ci": {"roc_auc": [0.7, 0.9], "sensitivity": [0.5, 0.85], "specificity": [0.6, 0.9]}}
  measured = {"before": 0.1, "before_ci": [0.05, 0.15], "after": 0.05, "after_ci": [0.02, 0.08]}
  return {"threshold": {"values": {"breast": 0.4}, "how": "Youden's J on validation"},
          "bootstrap": {"unit": "patient", "n_resamples": 20, "seed": 0}, "levels": {"breast": entry},
          "calibration": {"levels": {"breast": {"ece": measured, "brier": measured, "map": {"method": "isotonic"}}}},
          "verdict": {"level": "breast", "baseline": {"name": "age", "overall": {"beats": True}}},
          "subgroups": {"declaration": {"source": "the dataset card"}}, "saliency": {"grid": "saliency.png"},
          "dataset": {"name": "synthetic/tiny", "version": "1.0.0", "split": split}}


def _run_folder(folder):
  folder.mkdir()
  (folder / "run.json").write_text(json.dumps({"image_size": 64, "global_batch_size": 8, "precision": "float32",
                                               "strategy": "default", "replicas": 1}))
  (folder / "flags.txt").write_text("--model=small_cnn\n--augment\n--nooversample\n--class_weights\n--seed=3\n")
  return folder


def _every_item(tiny_builder, tmp_path) -> list:
  """Every item each producer of the module makes, over the branches that change an item's numbers."""
  run = _run_folder(tmp_path / "run")
  slopes = {"breast": {name: {"value": 1.0, "ci": [0.8, 1.2]} for name in ("slope", "intercept")}}
  items = checklist.dataset_items(tiny_builder)[0] + checklist.run_items(None) + checklist.run_items(run)
  items += [checklist.software_item()] + checklist.author_items()
  for split in ("test", "all"):
    items += checklist.evaluation_items(_result(split), slopes)
  model = types.SimpleNamespace(name="a", folder=tmp_path / "evaluation", folds=None, described="best.keras")
  return items + checklist.facts_for_comparison([model], _result("test"))


def test_every_item_carries_published_numbers(tiny_builder, tmp_path):
  items = _every_item(tiny_builder, tmp_path)
  for item in items:
    assert set(item.claim_2024) <= set(checklist.CLAIM_2024) and set(item.tripod_ai) <= set(checklist.TRIPOD_AI)
  unnumbered = {item.topic for item in items if not item.claim_2024 and not item.tripod_ai}
  assert unnumbered == {"reader study or comparison with radiologists"}  # in neither checklist
  by_topic = {item.topic: item for item in items}
  assert by_topic["level at which partitions are disjoint; leakage check"].claim_2024 == ("20",)
  assert by_topic["assignment to partitions"].claim_2024 == ("19",)
  assert by_topic["intended sample size and how it was determined"].claim_2024 == ("21",)
  assert by_topic["ethics approval / waiver"].tripod_ai == ("17",)
  testing = [item.claim_2024 for item in items if item.topic == "internal or external testing"]
  assert testing == [("32",), ("33",)]  # the held-out split is internal testing, split 'all' external


def test_the_table_and_the_json_show_both_numbers(tmp_path):
  items = [checklist.Item("8, 35", "6b, 20a", "inclusion", "kept 5"), checklist.Item("31, 39", "", "failures", "x"),
           checklist.Item("", "17", "ethics", checklist.AUTHORS)]
  lines = checklist.section(items)
  assert "| CLAIM 2024 | TRIPOD+AI | item | this evaluation |" in lines
  assert "| 8, 35 | 6b, 20a | inclusion | kept 5 |" in lines
  assert "| 31, 39 | - | failures | x |" in lines and f"| - | 17 | ethics | {checklist.AUTHORS} |" in lines
  (tmp_path / "report.md").write_text("# report\n")
  checklist.write(tmp_path, items, None)
  stored = json.loads((tmp_path / checklist.CHECKLIST).read_text())["items"]
  assert stored[0] == {"claim_2024": ["8", "35"], "tripod_ai": ["6b", "20a"], "topic": "inclusion", "text": "kept 5"}
  assert stored[1]["tripod_ai"] == [] and stored[2]["claim_2024"] == []
