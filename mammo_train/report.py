"""Writes an evaluation: metrics.json, ROC / PR / confusion-matrix PNGs, report.md, TensorBoard.

The JSON holds every number, for machines and later comparison; report.md is
for a person and embeds the PNGs; the same PNGs go to TensorBoard as images
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
HEADLINE = ("roc_auc", "pr_auc", "macro_roc_auc", "accuracy", "balanced_accuracy", "sensitivity",
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


def _png(figure: Figure) -> bytes:
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
  lines = [f"## {level_name.capitalize()} level", "",
           f"{level['n']} {level_name}s from {level['n_patients']} patients.", "",
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
           "Same splits, same metrics. Differences are model minus baseline with a paired patient-level "
           "bootstrap interval; the model beats a baseline on a metric when the whole interval is above 0.", ""]
  for level_name in levels:
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
        value = baseline["levels"][level_name][metric]
        lines.append(f"| {name} | {metric} | {'n/a' if value is None else f'{value:.3f}'} | "
                     f"{difference} | {'yes' if row['beats'] else 'no'} |")
    lines.append("")
  for name, baseline in baselines.items():
    lines.append(f"- **{name}**: {baseline['description']}")
  return lines + [""]


def markdown(result: dict, figures: dict) -> str:
  """report.md: what was evaluated, on what, at which threshold, and how well."""
  dataset, class_names = result["dataset"], result["dataset"]["class_names"]
  counts = dataset["counts"]
  lines = [f"# Evaluation of {result['model']} on {dataset['name']} ({dataset['split']})", "",
           f"- Dataset: {dataset['name']} version {dataset['version']}, split `{dataset['split']}`: "
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


def write(result: dict, curves: dict, workdir, tb_logdir=None, step: int = 0) -> list:
  """Writes metrics.json, the PNGs and report.md into workdir; returns the files written.

  Args:
    result: the metrics dict (`evaluate.evaluate_predictions` builds it).
    curves: level name -> (labels, scores) to draw ROC and PR curves from.
    workdir: folder to write into (created).
    tb_logdir: when given, the PNGs are also logged there as TensorBoard images.
    step: the TensorBoard step to log the images at (e.g. the last epoch).
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
      images[file] = _png(figure)
      figures[level_name].append((f"{level_name} {kind}", file))
  written = []
  for file, data in images.items():
    (workdir / file).write_bytes(data)
    written.append(workdir / file)
  stored = plain(result)
  (workdir / "metrics.json").write_text(json.dumps(stored, indent=2) + "\n")
  (workdir / "report.md").write_text(markdown(stored, figures) + "\n")
  written += [workdir / "metrics.json", workdir / "report.md"]
  if tb_logdir:
    with tf.summary.create_file_writer(str(tb_logdir)).as_default():
      for file, data in images.items():
        tf.summary.image(f"evaluation/{file[:-4]}", tf.image.decode_png(data)[None], step=step)
  return written
