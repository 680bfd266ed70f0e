"""Compares two or more evaluated models on the same examples: compare.json, report.md, overlaid ROC curves.

Each model keeps its own operating point (chosen on validation by its own
evaluation) and is scored at image, breast and patient level with
patient-bootstrap intervals (`metrics.with_intervals`); every pair gets the
paired statistics of `comparison`. Which level decides "resolved": the
breast level, the level the datasets' labels are defined at and the one the
evaluation report's verdict uses; the other levels are in the tables.
"""
import json
import pathlib

import numpy as np
from matplotlib.figure import Figure
from sklearn import metrics as skm

from mammo_train.evaluation import assessment, metrics, report
from mammo_train.evaluation import checklist, comparison, scored

DECIDING_LEVEL = "breast"
SHOWN = ("roc_auc", "pr_auc", "sensitivity", "specificity")


def compare_folders(paths, workdir, n_bootstrap: int = 1000, seed: int = 0) -> dict:
  """Loads the folders (`scored.load`), checks they scored the same examples, writes the comparison.

  Raises scored.NotComparableError (naming the folder) when they did not.
  Returns the result as written to compare.json.
  """
  names = _names(paths)
  loaded = [scored.load(path, name) for path, name in zip(paths, names)]
  scored.check_same_examples(loaded)
  decided = {s.name: assessment.decide(s.predictions, 2, s.operating) for s in loaded}
  first = decided[names[0]]
  units = {level: (first[level].labels, first[level].groups) for level in first}
  result = {
      "dataset": {"name": loaded[0].dataset, "version": loaded[0].version, "split": loaded[0].split,
                  "cross_validated": loaded[0].folds is not None,
                  "counts": assessment.counts(loaded[0].predictions, metrics.BINARY_NAMES)},
      "bootstrap": {"unit": "patient", "n_resamples": n_bootstrap, "seed": seed, "confidence": 0.95,
                    "method": "percentile, paired (both models on the same resamples)"},
      "deciding_level": DECIDING_LEVEL,
      "models": {s.name: {"folder": str(s.folder), "operating_point": {"thresholds": s.operating.thresholds,
                                                                       "how": s.operating.how},
                          "levels": {level: _shown(metrics.with_intervals(
                              unit.labels, unit.scores, unit.decisions, unit.groups, metrics.BINARY_NAMES,
                              n_bootstrap, seed)) for level, unit in decided[s.name].items()}}
                 for s in loaded},
      "pairs": comparison.compare_all(
          units, {name: {level: (unit.scores, unit.decisions) for level, unit in levels.items()}
                  for name, levels in decided.items()}, n_bootstrap, seed),
      "multiple_comparisons": (f"{len(names)} models, {len(names) * (len(names) - 1) // 2} pairs: p-values "
                               "Holm-adjusted per test and level (p_holm)" if len(names) > 2 else None),
  }
  for pair in result["pairs"]:
    pair["sentence"] = sentence(pair, multiple=len(names) > 2)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  figures = {}
  for level in units:
    file = f"roc_{level}.png"
    overlay = _roc_overlay(level, {name: levels[level] for name, levels in decided.items()})
    (workdir / file).write_bytes(report.png(overlay))
    figures[level] = file
  stored = report.plain(result)
  (workdir / "compare.json").write_text(json.dumps(stored, indent=2) + "\n")
  (workdir / "report.md").write_text(markdown(stored, figures, loaded) + "\n")
  return stored


def _names(paths) -> list:
  """Each folder's name in the tables: its path as given, made unique."""
  names = []
  for path in paths:
    name = str(path).rstrip("/")
    names.append(name if name not in names else f"{name} ({len(names) + 1})")
  return names


def _shown(level: dict) -> dict:
  return {"n": level["n"], "n_patients": level["n_patients"],
          **{name: level[name] for name in SHOWN}, "ci": {name: level["ci"][name] for name in SHOWN}}


def sentence(pair: dict, multiple: bool) -> str:
  """One plain sentence: is the AUC difference at the deciding level resolved by the paired interval?"""
  level = pair["levels"][DECIDING_LEVEL]
  auc, delong = level["auc_difference"], level["delong"]
  p_name, p = ("Holm-adjusted DeLong p", delong["p_holm"]) if multiple else ("DeLong p", delong["p"])
  p_text = "n/a" if p is None or not np.isfinite(p) else f"{p:.3g}"
  difference = auc["difference"]
  interval = auc["ci"]
  said = (f"{pair['a']} minus {pair['b']}: ROC-AUC difference {difference:+.3f} "
          f"[{interval[0]:+.3f}, {interval[1]:+.3f}] at {DECIDING_LEVEL} level ({p_name} {p_text}); ")
  if auc["resolved"]:
    better = pair["a"] if difference > 0 else pair["b"]
    return said + f"resolved: {better} ranks malignant above benign breasts better on this data."
  return said + "not resolved: this test set cannot tell the two apart (the interval includes 0)."


def _roc_overlay(level: str, units: dict) -> Figure:
  """Every model's ROC curve at one level, each with its operating point."""
  figure = Figure(figsize=(5, 5), dpi=100, layout="constrained")
  axes = figure.add_subplot()
  for name, unit in units.items():
    labels = np.asarray(unit.labels)
    if labels.min() == labels.max():
      continue
    x, y, _ = skm.roc_curve(labels, unit.scores)
    line, = axes.plot(x, y, label=f"{name}: AUC {skm.roc_auc_score(labels, unit.scores):.3f}")
    called = np.argmax(unit.decisions, axis=1)
    axes.plot(np.mean(called[labels == 0]), np.mean(called[labels == 1]), "o", color=line.get_color())
  axes.plot([0, 1], [0, 1], ":", color="grey")
  axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="1 - specificity", ylabel="sensitivity",
           title=f"ROC, {level} level (dots: each model's operating point)")
  axes.legend(loc="lower right", fontsize="small")
  return figure


def _p(value) -> str:
  return "n/a" if value is None else f"{value:.3g}"


def markdown(result: dict, figures: dict, loaded: list) -> str:
  dataset = result["dataset"]
  counts = dataset["counts"]
  boot = result["bootstrap"]
  lines = [f"# Comparison of {len(result['models'])} models on {dataset['name']} {dataset['version']} "
           f"({'cross-validated' if dataset['cross_validated'] else dataset['split']})", ""]
  lines += [f"- {pair['sentence']}" for pair in result["pairs"]]
  lines += ["", f"Same examples for every model: {counts['images']} images, {counts['breasts']} breasts, "
            f"{counts['patients']} patients. 95% intervals: {boot['method']} bootstrap over {boot['unit']}s, "
            f"{boot['n_resamples']} resamples, seed {boot['seed']}. A difference is resolved when its paired "
            f"interval excludes 0, at {result['deciding_level']} level.", ""]
  if result["multiple_comparisons"]:
    lines += [f"Multiple comparisons: {result['multiple_comparisons']}. With several pairs, some p-value is "
              "small by chance; read the adjusted ones.", ""]
  lines += ["## Models", "", "Each at its own operating point, chosen on validation by its own evaluation.", ""]
  for name, model in result["models"].items():
    thresholds = ", ".join(f"{level} {value:.4f}" for level, value in model["operating_point"]["thresholds"]
                           .items())
    lines.append(f"- **{name}** ({model['folder']}): thresholds {thresholds}; {model['operating_point']['how']}.")
  lines += ["", "| model | level | n | patients | " + " | ".join(SHOWN) + " |", "| --- " * (4 + len(SHOWN)) + "|"]
  for name, model in result["models"].items():
    for level, row in model["levels"].items():
      lines.append(f"| {name} | {level} | {row['n']} | {row['n_patients']} | "
                   + " | ".join(report.interval(row[m], row["ci"][m]) for m in SHOWN) + " |")
  lines += ["", "## Pairs", "",
            "AUC difference: A minus B, paired patient-bootstrap interval. DeLong: treats units as independent, "
            "exact at patient level, optimistic at image and breast level (several units per patient). "
            "Sensitivity at the other's specificity: A's best sensitivity where B's decisions have their "
            "specificity, minus B's sensitivity (and the other way). McNemar: which units each decides right, "
            "exact binomial below " f"{comparison.MCNEMAR_EXACT_BELOW} discordant units.", "",
            "| A | B | level | AUC A - B [95% CI] | DeLong p | sens. A at B's spec. - B | sens. B at A's spec. - A "
            "| McNemar (A only right / B only right) p |", "| --- " * 8 + "|"]
  holm = bool(result["multiple_comparisons"])
  for pair in result["pairs"]:
    for level, entry in pair["levels"].items():
      delong, mc = entry["delong"], entry["mcnemar"]
      delong_p = _p(delong["p"]) + (f" (Holm {_p(delong['p_holm'])})" if holm else "")
      mc_p = _p(mc["p"]) + (f" (Holm {_p(mc['p_holm'])})" if holm else "")
      lines.append(
          f"| {pair['a']} | {pair['b']} | {level} | "
          f"{report.difference_text(entry['auc_difference'])} | "
          f"{delong_p} | "
          f"{report.difference_text(entry['a_at_b_specificity'])} | "
          f"{report.difference_text(entry['b_at_a_specificity'])} | "
          f"{mc['only_a_right']} / {mc['only_b_right']}, {mc_p} |")
  lines += [""] + [f"![ROC {level}]({file})" for level, file in figures.items()] + [""]
  lines += checklist.section(checklist.facts_for_comparison(loaded, result))
  return "\n".join(lines)
