"""Compares two or more evaluated models on the same examples: compare.json, report.md, overlaid ROC curves.

Each model keeps its own decisions: a binary model its operating point
(chosen on validation by its own evaluation), a multi-class model the most
probable class (argmax), as its evaluation decided. Each is scored at the
levels its evaluation reports (`assessment.levels`: image, breast and
patient for binary tasks, image only for multi-class ones) with
patient-bootstrap intervals (`metrics.with_intervals`; multi-class: the
macro one-vs-rest ROC-AUC, accuracy, balanced accuracy and each class's
one-vs-rest AUC); every pair gets the paired statistics of `comparison`.
Which level decides "resolved": the level the evaluation's verdict uses
(`assessment.verdict_level`): breast for binary tasks, the level the
datasets' labels are defined at; image for multi-class ones. The other
levels are in the tables.
"""
import json
import pathlib

import numpy as np
from matplotlib.figure import Figure
from sklearn import metrics as skm

from mammo_train.evaluation import assessment, metrics, report, subgroups
from mammo_train.evaluation import checklist, comparison, scored

SHOWN_BINARY = ("roc_auc", "pr_auc", "sensitivity", "specificity")
SHOWN_MULTI_CLASS = ("macro_roc_auc", "accuracy", "balanced_accuracy")
ARGMAX = "the most probable class (argmax), as its own evaluation decided"


def report_path(workdir) -> pathlib.Path:
  """Where the comparison's report.md is written (and what the command prints)."""
  return pathlib.Path(workdir) / report.REPORT


def compare_folders(paths, workdir, n_bootstrap: int = 1000, seed: int = 0) -> dict:
  """Loads the folders (`scored.load`), checks they scored the same examples, writes the comparison.

  Raises scored.NotComparableError (naming the folder) when they did not.
  Returns the result as written to compare.json.
  """
  names = _names(paths)
  loaded = [scored.load(path, name) for path, name in zip(paths, names)]
  scored.check_same_examples(loaded)
  class_names = loaded[0].class_names
  binary = len(class_names) == 2
  decided = {s.name: assessment.decide(s.predictions, len(class_names), s.operating) for s in loaded}
  first = decided[names[0]]
  units = {level: (first[level].labels, first[level].groups) for level in first}
  result = {
      "dataset": {"name": loaded[0].dataset, "version": loaded[0].version, "split": loaded[0].split,
                  "class_names": list(class_names), "cross_validated": loaded[0].folds is not None,
                  "counts": assessment.counts(loaded[0].predictions, class_names)},
      "bootstrap": {"unit": "patient", "n_resamples": n_bootstrap, "seed": seed, "confidence": 0.95,
                    "method": "percentile, paired (both models on the same resamples)"},
      "deciding_level": assessment.verdict_level(units),
      "deciding_metric": subgroups.ranking_metric(class_names),
      "not_computed": None if binary else comparison.BINARY_ONLY,
      "models": {s.name: _model(s, decided[s.name], class_names, n_bootstrap, seed) for s in loaded},
      "pairs": comparison.compare_all(
          units, {name: {level: (unit.scores, unit.decisions) for level, unit in levels.items()}
                  for name, levels in decided.items()}, n_bootstrap, seed),
      "multiple_comparisons": (f"{len(names)} models, {len(names) * (len(names) - 1) // 2} pairs: p-values "
                               "Holm-adjusted per test and level (p_holm)" if len(names) > 2 else None),
  }
  for pair in result["pairs"]:
    pair["sentence"] = sentence(pair, result["deciding_level"], binary, multiple=len(names) > 2)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  figures = {}
  for level in units:
    file = f"roc_{level}.png"
    overlay = _roc_overlay(level, {name: levels[level] for name, levels in decided.items()}, class_names)
    (workdir / file).write_bytes(report.png(overlay))
    figures[level] = file
  stored = report.plain(result)
  (workdir / "compare.json").write_text(json.dumps(stored, indent=2) + "\n")
  report_path(workdir).write_text(markdown(stored, figures, loaded) + "\n")
  return stored


def _names(paths) -> list:
  """Each folder's name in the tables: its path as given, made unique."""
  names = []
  for path in paths:
    name = str(path).rstrip("/")
    names.append(name if name not in names else f"{name} ({len(names) + 1})")
  return names


def _model(loaded: scored.Scored, levels: dict, class_names, n_bootstrap: int, seed: int) -> dict:
  """One model's entry: its folder, how it decides, and its figures with intervals at each level."""
  entry = {"folder": str(loaded.folder)}
  if loaded.operating:
    entry["operating_point"] = {"thresholds": loaded.operating.thresholds, "how": loaded.operating.how}
  else:
    entry["decisions"] = ARGMAX
  shown = SHOWN_BINARY if len(class_names) == 2 else SHOWN_MULTI_CLASS
  entry["levels"] = {}
  for level, unit in levels.items():
    scores = metrics.with_intervals(unit.labels, unit.scores, unit.decisions, unit.groups, class_names,
                                    n_bootstrap, seed)
    row = {"n": scores["n"], "n_patients": scores["n_patients"], **{name: scores[name] for name in shown},
           "ci": {name: scores["ci"][name] for name in shown}}
    if len(class_names) > 2:  # the macro AUC's terms, from the same resamples
      row["one_vs_rest_roc_auc"] = dict(zip(class_names, comparison.one_vs_rest_aucs(
          unit.labels, unit.groups, unit.scores, n_bootstrap, seed)))
    entry["levels"][level] = row
  return entry


def sentence(pair: dict, level: str, binary: bool, multiple: bool) -> str:
  """One plain sentence: is the AUC difference at the deciding `level` resolved by the paired interval?"""
  entry = pair["levels"][level]
  auc = entry["auc_difference"]
  test = "delong" if binary else "mcnemar"
  p_name = ("Holm-adjusted " if multiple else "") + ("DeLong p" if binary else "McNemar p")
  p = entry[test]["p_holm" if multiple else "p"]
  p_text = "n/a" if p is None or not np.isfinite(p) else f"{p:.3g}"
  difference = auc["difference"]
  interval = auc["ci"]
  said = (f"{pair['a']} minus {pair['b']}: {'ROC-AUC' if binary else 'macro one-vs-rest ROC-AUC'} difference "
          f"{difference:+.3f} [{interval[0]:+.3f}, {interval[1]:+.3f}] at {level} level ({p_name} {p_text}"
          f"{'' if binary else '; DeLong: binary tasks only, not computed'}); ")
  if auc["resolved"]:
    better = pair["a"] if difference > 0 else pair["b"]
    ranks = f"malignant above benign {level}s" if binary else "each class above the others"
    return said + f"resolved: {better} ranks {ranks} better on this data."
  return said + "not resolved: these examples cannot tell the two apart (the interval includes 0)."


def _roc_overlay(level: str, units: dict, class_names) -> Figure:
  """Every model's ROC curve at one level, each with its decisions' point: one panel for a binary task
  (malignant), one per class against the rest otherwise."""
  binary = len(class_names) == 2
  panels = [(1, "")] if binary else [(i, f": {name} vs rest") for i, name in enumerate(class_names)]
  figure = Figure(figsize=(5 * len(panels), 5), dpi=100, layout="constrained")
  for axes, (index, title) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
    for name, unit in units.items():
      positive = np.asarray(unit.labels) == index
      if positive.all() or not positive.any():
        continue
      scores = unit.scores if binary else unit.scores[:, index]
      x, y, _ = skm.roc_curve(positive, scores)
      line, = axes.plot(x, y, label=f"{name}: AUC {skm.roc_auc_score(positive, scores):.3f}")
      called = np.argmax(unit.decisions, axis=1) == index
      axes.plot(np.mean(called[~positive]), np.mean(called[positive]), "o", color=line.get_color())
    axes.plot([0, 1], [0, 1], ":", color="grey")
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="1 - specificity", ylabel="sensitivity",
             title=f"ROC, {level} level{title}\n(dots: each model's decisions)")
    axes.legend(loc="lower right", fontsize="small")
  return figure


def _p(value) -> str:
  return "n/a" if value is None else f"{value:.3g}"


def _p_cell(test: dict, holm: bool) -> str:
  return _p(test["p"]) + (f" (Holm {_p(test['p_holm'])})" if holm else "")


def markdown(result: dict, figures: dict, loaded: list) -> str:
  dataset = result["dataset"]
  counts = dataset["counts"]
  boot = result["bootstrap"]
  binary = len(dataset["class_names"]) == 2
  lines = [f"# Comparison of {len(result['models'])} models on {dataset['name']} {dataset['version']} "
           f"({'cross-validated' if dataset['cross_validated'] else dataset['split']})", ""]
  lines += [f"- {pair['sentence']}" for pair in result["pairs"]]
  breasts = f"{counts['breasts']} breasts, " if "breasts" in counts else ""
  lines += ["", f"Same examples for every model: {counts['images']} images, {breasts}{counts['patients']} "
            f"patients; classes {scored.kind(dataset['class_names'])}. 95% intervals: {boot['method']} bootstrap "
            f"over {boot['unit']}s, {boot['n_resamples']} resamples, seed {boot['seed']}. A difference is "
            f"resolved when the paired interval of its {report.metric_label(result['deciding_metric'])} difference "
            f"excludes 0, at "
            f"{result['deciding_level']} level.", ""]
  if result["multiple_comparisons"]:
    lines += [f"Multiple comparisons: {result['multiple_comparisons']}. With several pairs, some p-value is "
              "small by chance; read the adjusted ones.", ""]
  if result["not_computed"]:
    lines += [f"Not computed: {result['not_computed']}.", ""]
  lines += _models_section(result, binary) + _pairs_section(result, binary)
  lines += [""] + [f"![ROC {level}]({file})" for level, file in figures.items()] + [""]
  lines += checklist.section(checklist.facts_for_comparison(loaded, result))
  return "\n".join(lines)


def _models_section(result: dict, binary: bool) -> list:
  lines = ["## Models", ""]
  if binary:
    lines += ["Each at its own operating point, chosen on validation by its own evaluation.", ""]
    for name, model in result["models"].items():
      thresholds = ", ".join(f"{level} {value:.4f}" for level, value in model["operating_point"]["thresholds"]
                             .items())
      lines.append(f"- **{name}** ({model['folder']}): thresholds {thresholds}; "
                   f"{model['operating_point']['how']}.")
    shown, classes = SHOWN_BINARY, []
  else:
    lines += [f"Each decides {ARGMAX}; AUC <class> vs rest: that class's one-vs-rest ROC-AUC, the terms of the "
              "macro AUC.", ""]
    lines += [f"- **{name}**: {model['folder']}" for name, model in result["models"].items()]
    shown, classes = SHOWN_MULTI_CLASS, result["dataset"]["class_names"]
  lines += ["", "| model | level | n | patients | " + " | ".join([*shown, *(f"AUC {c} vs rest" for c in classes)])
            + " |", "| --- " * (4 + len(shown) + len(classes)) + "|"]
  for name, model in result["models"].items():
    for level, row in model["levels"].items():
      cells = [report.interval(row[m], row["ci"][m]) for m in shown]
      cells += [report.interval(row["one_vs_rest_roc_auc"][c]["value"], row["one_vs_rest_roc_auc"][c]["ci"])
                for c in classes]
      lines.append(f"| {name} | {level} | {row['n']} | {row['n_patients']} | " + " | ".join(cells) + " |")
  return lines


def _pairs_section(result: dict, binary: bool) -> list:
  holm = bool(result["multiple_comparisons"])
  mcnemar = (f"McNemar: which units each decides right, exact binomial below {comparison.MCNEMAR_EXACT_BELOW} "
             "discordant units.")
  if binary:
    lines = ["", "## Pairs", "",
             "AUC difference: A minus B, paired patient-bootstrap interval. DeLong: treats units as independent, "
             "exact at patient level, optimistic at image and breast level (several units per patient). "
             "Sensitivity at the other's specificity: A's best sensitivity where B's decisions have their "
             "specificity, minus B's sensitivity (and the other way). " + mcnemar, "",
             "| A | B | level | AUC A - B [95% CI] | DeLong p | sens. A at B's spec. - B | sens. B at A's spec. - A "
             "| McNemar (A only right / B only right) p |", "| --- " * 8 + "|"]
    for pair in result["pairs"]:
      for level, entry in pair["levels"].items():
        mc = entry["mcnemar"]
        lines.append(
            f"| {pair['a']} | {pair['b']} | {level} | {report.difference_text(entry['auc_difference'])} | "
            f"{_p_cell(entry['delong'], holm)} | {report.difference_text(entry['a_at_b_specificity'])} | "
            f"{report.difference_text(entry['b_at_a_specificity'])} | "
            f"{mc['only_a_right']} / {mc['only_b_right']}, {_p_cell(mc, holm)} |")
    return lines
  classes = result["dataset"]["class_names"]
  lines = ["", "## Pairs", "",
           "Macro AUC difference: A minus B of the macro one-vs-rest ROC-AUC, paired patient-bootstrap interval "
           "(the same resampled patients for both models); each class's one-vs-rest difference beside it, from "
           "the same resamples. DeLong: not computed, binary tasks only (see above). " + mcnemar
           + " McNemar treats units as independent (optimistic where a patient has several images); the "
           "bootstrap interval does not.", "",
           "| A | B | level | macro AUC A - B [95% CI] | " + " | ".join(f"{c} vs rest A - B" for c in classes)
           + " | McNemar (A only right / B only right) p |", "| --- " * (5 + len(classes)) + "|"]
  for pair in result["pairs"]:
    for level, entry in pair["levels"].items():
      auc, mc = entry["auc_difference"], entry["mcnemar"]
      lines.append(f"| {pair['a']} | {pair['b']} | {level} | {report.difference_text(auc)} | "
                   + " | ".join(report.difference_text(row) for row in auc["per_class"])
                   + f" | {mc['only_a_right']} / {mc['only_b_right']}, {_p_cell(mc, holm)} |")
  return lines
