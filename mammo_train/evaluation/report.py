"""Writes an evaluation: metrics.json, ROC / PR / confusion-matrix / reliability PNGs, report.md, TensorBoard.

The JSON holds every number, for machines and later comparison; report.md is
for a person and embeds the PNGs. Its first lines say plainly whether the
model beats the metadata-only baseline, overall and inside each shortcut
stratum, and which subgroup is weakest; then come the levels, the subgroup
tables, the within-stratum comparisons, calibration, saliency (a grid of
Grad-CAM heatmaps and, where the dataset records lesion locations, whether
they point at the lesions) and the baselines; the same PNGs go to TensorBoard as images
so a training run's dashboard shows the final evaluation next to its curves.
Figures are drawn on matplotlib's Agg canvas directly (no pyplot state, no
display needed).
"""
import io
import json
import math
import pathlib

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn import metrics as skm

# Metrics shown in the summary tables, in this order, where the task has them.
REPORT = "report.md"
METRICS = "metrics.json"
HEADLINE = ("roc_auc", "pr_auc", "pf1", "macro_roc_auc", "accuracy", "balanced_accuracy", "sensitivity",
            "specificity")


def plain(value):
  """JSON-safe: numpy scalars and arrays become Python ones, NaN / infinity become null."""
  if isinstance(value, dict):
    return {str(key): plain(item) for key, item in value.items()}
  if isinstance(value, (list, tuple, np.ndarray)):
    return [plain(item) for item in value]
  if isinstance(value, (np.integer, np.bool_)):
    return value.item()
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  return value


def png(figure: Figure) -> bytes:
  buffer = io.BytesIO()
  FigureCanvasAgg(figure).print_png(buffer)
  return buffer.getvalue()


def _curves(kind: str, labels, scores, class_names, level_metrics) -> Figure:
  """ROC or PR curve (one per class, one-vs-rest, when there are more than two)."""
  figure = Figure(figsize=(5, 5), dpi=100, layout="constrained")
  axes = figure.add_subplot()
  binary = len(class_names) == 2
  for index, name in enumerate(class_names[1:] if binary else class_names):
    positive = np.asarray(labels) == (1 if binary else index)
    score = scores if binary else scores[:, index]
    if positive.all() or not positive.any():
      continue
    if kind == "roc":
      x, y, _ = skm.roc_curve(positive, score)
      label = f"{name}: AUC {skm.roc_auc_score(positive, score):.3f}"
    else:
      y, x, _ = skm.precision_recall_curve(positive, score)
      label = f"{name}: AP {skm.average_precision_score(positive, score):.3f}"
    axes.plot(x, y, drawstyle="steps-post" if kind == "pr" else "default", label=label)
  if binary and "sensitivity" in level_metrics:
    malignant = level_metrics["per_class"][class_names[1]]
    point = ((1 - level_metrics["specificity"], level_metrics["sensitivity"]) if kind == "roc"
             else (malignant["recall"], malignant["precision"]))
    axes.plot(*point, "o", color="black", label="operating point")
  if kind == "roc":
    axes.plot([0, 1], [0, 1], ":", color="grey")
    axes.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity (true positive rate)")
  else:
    axes.set(xlabel="recall", ylabel="precision")
  axes.set(xlim=(0, 1), ylim=(0, 1.02), title=f"{kind.upper()} curve")
  axes.legend(loc="lower right" if kind == "roc" else "lower left")
  return figure


def _confusion(matrix, class_names) -> Figure:
  matrix = np.asarray(matrix, dtype=float)
  figure = Figure(figsize=(5, 4), dpi=100, layout="constrained")
  axes = figure.add_subplot()
  image = axes.imshow(matrix, cmap="Blues")
  figure.colorbar(image)
  ticks = np.arange(len(class_names))
  axes.set(xticks=ticks, yticks=ticks, xticklabels=class_names, yticklabels=class_names,
           xlabel="predicted", ylabel="true", title="confusion matrix")
  integral = np.allclose(matrix, np.round(matrix))
  for (row, column), count in np.ndenumerate(matrix):
    axes.text(column, row, f"{count:.0f}" if integral else f"{count:.1f}", ha="center", va="center",
              color="white" if count > matrix.max() / 2 else "black")
  return figure


def interval_text(level: dict, name: str) -> str:
  """'0.812 [0.760, 0.861]': a metric of a (JSON-plain) level with its interval, or 'n/a'."""
  low, high = level.get("ci", {}).get(name, (None, None))
  value = level[name]
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "n/a"
  if low is None or (isinstance(low, float) and math.isnan(low)):
    return f"{value:.3f}"
  return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _level_section(level_name: str, level: dict, class_names, figures) -> list:
  units = (f"{level['n']} patients" if level_name == "patient"
           else f"{level['n']} {level_name}s from {level['n_patients']} patients")
  rule = {"breast": " A breast's score is the mean of its views' scores.",
          "patient": " A patient's score is the highest of their breasts' scores, and a patient is called "
                     "malignant when any breast is (the breast threshold); each patient has one exam here, "
                     "so this is also the exam level."}.get(level_name, "")
  lines = [f"## {level_name.capitalize()} level", "", f"{units}.{rule}", "",
           "| metric | value [95% CI] |", "| --- | --- |"]
  lines += [f"| {name} | {interval_text(level, name)} |" for name in HEADLINE if name in level]
  lines += ["", "| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
  for name in class_names:
    cells = [interval_text(level, f"{name}_{key}") for key in ("precision", "recall", "f1")]
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {level['per_class'][name]['support']} |")
  lines += ["", "Confusion matrix (rows: true, columns: predicted):", "",
            "| | " + " | ".join(class_names) + " |", "| --- " * (len(class_names) + 1) + "|"]
  for name, row in zip(class_names, level["confusion_matrix"]):
    lines.append(f"| {name} | " + " | ".join(f"{v:g}" for v in row) + " |")
  lines.append("")
  lines += [f"![{name}]({file})" for name, file in figures]
  return lines + [""]


def _flat(level: dict, class_names) -> dict:
  """A level's metrics by the names the interval and comparison tables use."""
  flat = dict(level)
  for name in class_names:
    flat.update({f"{name}_{key}": value for key, value in level["per_class"][name].items()})
  return flat


def _baseline_section(baselines: dict, levels) -> list:
  lines = ["## Baselines", "",
           "Same splits, same metrics. Each baseline value has its patient-bootstrap interval; differences are "
           "model minus baseline with a paired patient-level bootstrap interval (the same resamples); the model "
           "beats a baseline on a metric when the whole interval is above 0.", ""]
  for level_name in [name for name in levels if any(name in b["comparison"] for b in baselines.values())]:
    lines += [f"### {level_name.capitalize()} level", "",
              "| baseline | metric | baseline value | model - baseline [95% CI] | model beats it |",
              "| --- | --- | --- | --- | --- |"]
    for name, baseline in baselines.items():
      comparison = baseline["comparison"].get(level_name, {})
      for metric in HEADLINE:
        if metric not in comparison:
          continue
        row = comparison[metric]
        difference = "n/a" if row["difference"] is None else (
            f"{row['difference']:+.3f} [{row['ci'][0]:+.3f}, {row['ci'][1]:+.3f}]"
            if row["ci"][0] is not None else f"{row['difference']:+.3f}")
        value, (low, high) = baseline["levels"][level_name][metric], row.get("baseline_ci") or (None, None)
        shown = "n/a" if value is None else f"{value:.3f}" + ("" if low is None else f" [{low:.3f}, {high:.3f}]")
        lines.append(f"| {name} | {metric} | {shown} | {difference} | {'yes' if row['beats'] else 'no'} |")
    lines.append("")
  for name, baseline in baselines.items():
    lines.append(f"- **{name}**: {baseline['description']}")
  return lines + [""]


def difference_text(row: dict) -> str:
  """'+0.031 [-0.012, +0.074]' for a comparison entry (difference, ci)."""
  if row.get("difference") is None:
    return "n/a"
  low, high = row.get("ci") or (None, None)
  if low is None:
    return f"{row['difference']:+.3f}"
  return f"{row['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def metric_label(metric: str) -> str:
  return {"roc_auc": "ROC-AUC", "macro_roc_auc": "macro ROC-AUC"}.get(metric, metric)


def verdict_lines(verdict: dict) -> list:
  """The report's first lines: beats the metadata-only baseline or not, overall and per stratum; weakest."""
  level, metric = verdict["level"], metric_label(verdict["metric"])
  lines = []
  baseline = verdict.get("baseline")
  if baseline is None and verdict.get("shortcuts"):
    lines.append(f"- **Metadata-only baseline**: not compared here (the dataset declares "
                 f"{', '.join(verdict['shortcuts'])} as possible shortcuts).")
  elif baseline is None:
    lines.append("- **Metadata-only baseline**: this dataset declares no non-image feature as a possible "
                 "shortcut, so there is none to beat.")
  else:
    overall = baseline["overall"]
    said = "beats" if overall.get("beats") else "does NOT beat"
    lines.append(f"- **The model {said} the metadata-only baseline** ({baseline['name']}: logistic regression on "
                 f"{' + '.join(baseline['shortcuts'])}, no pixels) at {level} level: {metric} model minus "
                 f"baseline {difference_text(overall)} (95% paired patient-bootstrap interval; beats = the "
                 "whole interval above 0).")
    cells = []
    for row in baseline["strata"]:
      where = f"{row['feature']} {row['subgroup']}"
      if row["too_few"]:
        cells.append(f"{where}: too few to say")
      else:
        cells.append(f"{where}: {difference_text(row)} {'beats' if row.get('beats') else 'does not beat'}")
    lines.append("- **Within each stratum** (the shortcut partly or wholly removed): " + "; ".join(cells) + ".")
  weakest = verdict.get("weakest")
  if weakest is None:
    lines.append("- **Weakest subgroup**: none can be named; no subgroup has enough patients of each class at "
                 "any level.")
  else:
    ci, at = weakest["ci"], weakest["level"]
    bounds = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else ""
    lines.append(f"- **Weakest subgroup** ({at} level {metric}): {weakest['feature']} {weakest['subgroup']}, "
                 f"{weakest['value']:.3f}{bounds} ({weakest['n']} {at}s, {weakest['n_patients']} patients)"
                 + ("." if at == level else f"; no {level}-level subgroup has enough patients of each class."))
  return lines


def _subgroup_section(subgroups: dict, class_names) -> list:
  declaration = subgroups["declaration"]
  binary = len(class_names) == 2
  metrics = ("roc_auc", "sensitivity", "specificity", "accuracy") if binary else (
      "macro_roc_auc", "accuracy", "balanced_accuracy")
  lines = ["## Subgroups", "",
           f"Declared by the dataset ({declaration['source']}). Each subgroup is scored on its own examples, "
           f"with its own patient bootstrap. Fewer than {declaration['min_patients_per_class']} patients in a "
           "class: too few to say (counts only). A feature appears at the levels where it is the same for "
           "every image of a unit (view: image level only).", ""]
  for level_name, rows in subgroups["levels"].items():
    if not rows:
      continue
    lines += [f"### {level_name.capitalize()} level", "",
              "| feature | subgroup | n | patients | " + " | ".join(class_names) + " | "
              + " | ".join(metrics) + " |", "| --- " * (4 + len(class_names) + len(metrics)) + "|"]
    for row in rows:
      counts = " | ".join(f"{row['per_class'][name]['n']}" for name in class_names)
      values = (" | ".join(["too few to say"] + [""] * (len(metrics) - 1)) if row["too_few"]
                else " | ".join(interval_text(_flat(row["metrics"], class_names), name) for name in metrics))
      lines.append(f"| {row['feature']} | {row['subgroup']} | {row['n']} | {row['n_patients']} | {counts} | "
                   f"{values} |")
    lines.append("")
  return lines


def _strata_section(strata: dict, baselines: dict, metric: str) -> list:
  name = strata["baseline"]
  lines = ["## The model against the metadata-only baseline, inside each stratum", "",
           f"{name}: {baselines[name]['description']}. Inside a stratum of a "
           f"shortcut, that shortcut cannot separate the classes any more; what is left is what the model "
           f"learned elsewhere. {metric_label(metric)}; difference = model minus baseline with a paired "
           "patient-bootstrap interval.", ""]
  for level_name, rows in strata["levels"].items():
    if not rows:
      continue
    lines += [f"### {level_name.capitalize()} level", "",
              "| shortcut | stratum | n | patients | model | baseline | model - baseline [95% CI] "
              "| model beats it |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
      if row["too_few"]:
        lines.append(f"| {row['feature']} | {row['subgroup']} | {row['n']} | {row['n_patients']} | "
                     "too few to say | | | |")
        continue
      comparison = row["comparison"][metric]
      lines.append(f"| {row['feature']} | {row['subgroup']} | {row['n']} | {row['n_patients']} | "
                   f"{interval(row['model'].get(metric), None)} | "
                   f"{interval(row['baseline'].get(metric), None)} | "
                   f"{difference_text(comparison)} | {'yes' if comparison['beats'] else 'no'} |")
    lines.append("")
  return lines


def _calibration_section(calibrated: dict, figure_file: str | None) -> list:
  lines = ["## Calibration", "",
           f"One map per level, {calibrated['how']}, applied unchanged to this split. Expected "
           f"calibration error over {calibrated['bins']} equal-width bins and Brier score, before and after, with "
           "95% patient-bootstrap intervals; after - before is paired.", "",
           "| level | map | ECE before | ECE after | ECE after - before | Brier before | Brier after | "
           "Brier after - before |", "| --- " * 8 + "|"]
  for level_name, entry in calibrated["levels"].items():
    cells = []
    for measure in ("ece", "brier"):
      m = entry[measure]
      cells += [interval(m["before"], m["before_ci"]), interval(m["after"], m["after_ci"]),
                difference_text({"difference": m["difference"], "ci": m["difference_ci"]})]
    fitted = entry["map"]
    described = fitted["method"] + (f" (slope {fitted['slope']:.3f}, intercept {fitted['intercept']:+.3f})"
                                    if fitted["method"] == "platt" else "")
    lines.append(f"| {level_name} | {described} | " + " | ".join(cells) + " |")
  lines.append("")
  if figure_file:
    lines += [f"![reliability diagram]({figure_file})", ""]
  return lines


def _saliency_section(saliency: dict, localisation: dict | None) -> list:
  lines = ["## Saliency", "",
           f"Grad-CAM of the malignant score (its logit) at layer `{saliency['layer']}`, on the model's input, for "
           f"the {saliency['images']} images of this split; rows: malignant / benign, decided correctly or not "
           f"at the image threshold {saliency['threshold']:.4f}, the most confident of each first.", "",
           f"![saliency grid]({saliency['grid']})", ""]
  if not localisation:
    return lines
  lines += [f"Does it point at the lesions? Lesion boxes: {localisation['boxes']}. Pointing game: the share of "
            "images whose heatmap maximum (in source pixels) lies inside a lesion box; mass inside: the share of "
            "the heatmap's total inside the boxes. Malignant images are the measure; benign ones show where the "
            "most malignant-looking evidence was. 95% patient-bootstrap intervals.", "",
            "| images | n | patients | pointing game | heatmap mass inside | no box (left out) | blank heatmaps |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
  for name in ("malignant", "benign"):
    entry = localisation.get(name)
    if not entry:
      continue
    cells = [interval(entry[m]["value"], entry[m]["ci"]) for m in ("pointing_game", "mass_inside")]
    lines.append(f"| {name} | {entry['n']} | {entry['n_patients']} | {cells[0]} | {cells[1]} | "
                 f"{entry['n_without_lesion_box']} | {entry['n_blank']} |")
  return lines + [""]


def interval(value, ci) -> str:
  if value is None:
    return "n/a"
  if not ci or ci[0] is None:
    return f"{value:.3f}"
  return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _reliability(calibrated: dict) -> Figure:
  """Reliability diagram: per level, fraction malignant against mean probability, before and after."""
  levels = calibrated["levels"]
  figure = Figure(figsize=(5 * len(levels), 5), dpi=100, layout="constrained")
  for axes, (level_name, entry) in zip(figure.subplots(1, len(levels), squeeze=False)[0], levels.items()):
    for when, style in (("before", "o--"), ("after", "s-")):
      curve = entry["reliability"][when]
      axes.plot(curve["mean_probability"], curve["fraction_malignant"], style,
                label=f"{when}: ECE {entry['ece'][when]:.3f}")
    axes.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="mean predicted P(malignant) in bin",
             ylabel="fraction malignant in bin", title=f"reliability, {level_name} level")
    axes.legend(loc="upper left")
  return figure


def markdown(result: dict, figures: dict) -> str:
  """report.md: what was evaluated, on what, at which threshold, and how well."""
  dataset, class_names = result["dataset"], result["dataset"]["class_names"]
  counts = dataset["counts"]
  lines = [f"# Evaluation of {result['model']} on {dataset['name']} ({dataset['split']})", ""]
  if result.get("verdict"):
    lines += verdict_lines(result["verdict"]) + [""]
  lines += [f"- Dataset: {dataset['name']} version {dataset['version']}, split `{dataset['split']}`: "
           f"{counts['images']} images, {counts['patients']} patients"
           + (f", {counts['breasts']} breasts" if "breasts" in counts else "") + "; per class: "
           + ", ".join(f"{name} {count}" for name, count in counts["per_class"].items()) + "."]
  lines.append(f"- Decisions: {result['decisions']}.")
  threshold = result.get("threshold")
  if threshold:
    values = ", ".join(f"{level} {value:.4f}" for level, value in threshold["values"].items())
    lines.append(f"- Operating threshold (malignant when score >= threshold): {values}; {threshold['how']}.")
  boot = result["bootstrap"]
  lines += [f"- 95% intervals: percentile bootstrap over {boot['unit']}s, {boot['n_resamples']} resamples, "
            f"seed {boot['seed']}.", ""]
  for level_name, level in result["levels"].items():
    lines += _level_section(level_name, _flat(level, class_names), class_names, figures[level_name])
  if result.get("subgroups"):
    lines += _subgroup_section(result["subgroups"], class_names)
  if result.get("strata"):
    lines += _strata_section(result["strata"], result["baselines"], result["verdict"]["metric"])
  if result.get("calibration"):
    lines += _calibration_section(result["calibration"], figures.get("calibration"))
  if result.get("saliency"):
    lines += _saliency_section(result["saliency"], result.get("localisation"))
  if result.get("baselines"):
    lines += _baseline_section(result["baselines"], result["levels"])
  return "\n".join(lines)


def summary(results: dict) -> str:
  """Several evaluations of one split side by side (e.g. every baseline), linking to their reports."""
  first = next(iter(results.values()))
  dataset = first["dataset"]
  metrics = [name for name in HEADLINE if name in first["levels"]["image"]]
  lines = [f"# {dataset['name']} ({dataset['split']}): side by side", "",
           f"95% intervals: patient-level percentile bootstrap, {first['bootstrap']['n_resamples']} resamples, "
           f"seed {first['bootstrap']['seed']}.", "",
           "| evaluation | level | " + " | ".join(metrics) + " |", "| --- " * (len(metrics) + 2) + "|"]
  for name, result in results.items():
    for level_name, level in result["levels"].items():
      lines.append(f"| [{name}]({name}/report.md) | {level_name} | "
                   + " | ".join(interval_text(level, metric) for metric in metrics) + " |")
  return "\n".join(lines) + "\n"


def write(result: dict, curves: dict, workdir, tb_logdir=None, step: int = 0, pictures: dict | None = None) -> list:
  """Writes metrics.json, the PNGs and report.md into workdir; returns the files written.

  Args:
    result: the metrics dict (`evaluate.evaluate_predictions` builds it).
    curves: level name -> (labels, scores) to draw ROC and PR curves from.
    workdir: folder to write into (created).
    tb_logdir: when given, the PNGs are also logged there as TensorBoard images.
    step: the TensorBoard step to log the images at (e.g. the last epoch).
    pictures: more PNGs drawn elsewhere, file name -> bytes (the saliency
      grid), written and logged like the plots.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  class_names = result["dataset"]["class_names"]
  images, figures = {}, {}
  for level_name, (labels, scores) in curves.items():
    level = result["levels"][level_name]
    drawn = {"roc": _curves("roc", labels, scores, class_names, level),
             "pr": _curves("pr", labels, scores, class_names, level),
             "confusion": _confusion(level["confusion_matrix"], class_names)}
    figures[level_name] = []
    for kind, figure in drawn.items():
      file = f"{level_name}_{kind}.png"
      images[file] = png(figure)
      figures[level_name].append((f"{level_name} {kind}", file))
  if result.get("calibration"):
    images["calibration_reliability.png"] = png(_reliability(plain(result["calibration"])))
    figures["calibration"] = "calibration_reliability.png"
  images.update(pictures or {})
  written = []
  for file, data in images.items():
    (workdir / file).write_bytes(data)
    written.append(workdir / file)
  stored = plain(result)
  (workdir / METRICS).write_text(json.dumps(stored, indent=2) + "\n")
  (workdir / REPORT).write_text(markdown(stored, figures) + "\n")
  written += [workdir / METRICS, workdir / REPORT]
  if tb_logdir:
    with tf.summary.create_file_writer(str(tb_logdir)).as_default():
      for file, data in images.items():
        tf.summary.image(f"evaluation/{file[:-4]}", tf.image.decode_png(data)[None], step=step)
  return written
