"""Prediction benchmark: files per second from CMMD-size DICOMs to scores, beside decode + preprocess alone.

Writes a CMMD-layout tree once (tools/write_cmmd.py, 2294x1914 8-bit DICOMs,
kept in --tree_dir for reruns), then times, on this machine:

- decode + preprocess alone: `reading.prepared_stream` over every file, at
  the stored size (600), with 1 and 2 worker processes;
- each model alone: its scores on the prepared images from memory, batch by
  batch, as `predict_files` calls it (resize to the input size included);
- end to end: `discovery.expand_paths` -> `predictor.predict_files` -> `predictor.rows`,
  with 1 and 2 workers, for the cnn and ResNet50 (weights none: speed does
  not depend on them) at 600 px, float32;
- each of the above per runtime of the model stage (--runtimes: keras and
  every installed one of `mammo_train.inference.runtimes`, converted before
  any timing, as `predict --runtime` does), with its ratio to Keras's in
  the same run (target for ResNet50 end to end: 1.8x).

Each end-to-end figure is also given as ratios, measured in the same run, to
decode alone, to the model alone, and to the two in turn (1 / (1/decode +
1/model): what reading each batch and then scoring it gives). With 2 workers
the files are read while the model scores the batch before, so end to end can
pass "the two in turn" only when the machine has cores the model leaves idle:
TensorFlow already spreads one batch over every core. Beside them, the
machine's own limit: the per-file work in 2 processes at once vs 1 (as in
bench_build), and what starting the 2 workers costs. The model is called
twice on every batch shape before any timing (tracing, oneDNN's first calls).
Each case runs once per repeat, interleaved, --repeats times, and the fastest
counts (a shared machine only ever adds time). ResNet50 at 600 px scores
about 0.5-2 images a second on 2 CPU cores, so it scores the first few files
only (MODEL:FILES).

  python tools/bench_predict.py                          # 24 files; cnn on all, resnet50 on 6: ~1.5 min on 2 busy
                                                         # cores (+40 s to write the files once)
  python tools/bench_predict.py --models=cnn --files=48 --repeats=3 --json
  python tools/bench_predict.py --models=resnet50 --files=6 --runtimes=keras,openvino --repeats=2
"""
import argparse
import multiprocessing
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bench_common  # pylint: disable=wrong-import-position

STORED_SIZE = 600  # the builders' default stored size (imaging.DEFAULT_SIZE)
IMAGE_SIZE = 600
BATCH_SIZE = 16  # predict's default
THRESHOLDS = {"image": 0.5, "breast": 0.5}  # any operating point: the decisions are not timed apart
WARMUP_CALLS = 2


def ensure_tree(folder: pathlib.Path, files: int) -> list:
  """The first `files` DICOMs (in expand_paths order) of a tree written once with enough patients."""
  from mammo_train.inference import discovery  # pylint: disable=import-outside-toplevel
  marker = folder / "complete"
  if not marker.exists():
    from tools import write_cmmd  # pylint: disable=import-outside-toplevel
    print(f"writing {files} DICOMs at 2294x1914 into {folder} (about 1.5 s per image) ...", file=sys.stderr,
          flush=True)
    written = 0
    for series in write_cmmd.plan((files + 1) // 2, seed=0):  # 2 or 4 images per patient: enough patients
      written += len(write_cmmd.write_series(folder, series, seed=0))
      if written >= files:
        break
    marker.write_text("")
  found = discovery.expand_paths([str(folder)])
  if len(found) < files:
    raise SystemExit(f"--tree_dir: {folder} holds {len(found)} DICOMs, fewer than --files={files}: remove it")
  return found[:files]


def decode_alone(files: list, workers: int = 1) -> None:
  from mammo_train.inference import reading  # pylint: disable=import-outside-toplevel
  outcomes = list(reading.prepared_stream(files, STORED_SIZE, workers=workers))
  failed = [o for o in outcomes if isinstance(o, reading.Failure)]
  if failed:
    raise SystemExit(f"{failed[0].path}: {failed[0].detail}")


def end_to_end(model, forward, files: list, workers: int) -> None:
  from mammo_train.inference import discovery, predictor  # pylint: disable=import-outside-toplevel
  result = predictor.predict_files(model, discovery.expand_paths(files), stored_size=STORED_SIZE,
                                   image_size=IMAGE_SIZE, batch_size=BATCH_SIZE, workers=workers, score_with=forward)
  image_rows, _ = predictor.rows(result, THRESHOLDS)
  if len(image_rows) != len(files):
    raise SystemExit(f"scored {len(image_rows)} of {len(files)} files: {result.failures[:1]}")


def model_alone(forward, images) -> None:
  """The model stage as predict_files runs it: batches of stored images resized to the input (a no-op at 600)."""
  from mammo_train.inputs import data  # pylint: disable=import-outside-toplevel
  for start in range(0, len(images), BATCH_SIZE):
    forward(np.asarray(data.resize(images[start:start + BATCH_SIZE], IMAGE_SIZE)))


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--files", type=int, default=24, help="DICOMs read (decode alone, and models without :FILES)")
  parser.add_argument("--models", default="cnn,resnet50:6",
                      help="comma-separated MODEL[:FILES] of mammo_train.models.classifiers (weights none), at 600 px; "
                           "FILES: score only the first FILES files (default --files)")
  parser.add_argument("--repeats", type=int, default=3, help="runs of each case; the fastest counts")
  parser.add_argument("--runtimes", default=None,
                      help="comma-separated runtimes of the model stage (default: keras and every installed one)")
  parser.add_argument("--tree_dir", default=os.path.join(tempfile.gettempdir(), "mammo_bench_predict"))
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()
  from mammo_train import config  # pylint: disable=import-outside-toplevel
  specs = []
  for spec in args.models.split(","):
    name, _, count = spec.partition(":")
    if name not in config.MODELS:
      parser.error(f"--models: {spec!r}: the model must be one of {', '.join(config.MODELS)}")
    if count and not (count.isdigit() and 0 < int(count) <= args.files):
      parser.error(f"--models: {spec!r}: FILES must be a whole number from 1 to --files={args.files}")
    specs.append((name, int(count) if count else args.files))
  if args.files < 1 or args.repeats < 1:
    parser.error("--files and --repeats must be at least 1")
  from mammo_train.inference import runtimes  # pylint: disable=import-outside-toplevel
  names = bench_common.runtime_names(parser, args.runtimes)

  import keras  # pylint: disable=import-outside-toplevel
  from mammo_train.inference import reading  # pylint: disable=import-outside-toplevel
  from mammo_train.models import classifiers  # pylint: disable=import-outside-toplevel

  files = ensure_tree(pathlib.Path(args.tree_dir) / f"files_{args.files}", args.files)
  decode_alone(files, 1)  # warms the page cache and the imports: every case then reads from memory
  images = np.stack([p.image for p in reading.prepared_stream(files, STORED_SIZE, workers=1)])
  built, forwards = {}, {}
  conversions = tempfile.mkdtemp(prefix="mammo_bench_predict_onnx")
  for name, count in specs:
    keras.utils.set_random_seed(0)
    built[name] = classifiers.build(name, IMAGE_SIZE, 2, "none", 0.0, 0.0)
    for runtime in names:  # converted and checked against Keras before any timing
      forwards[(name, runtime)] = runtimes.checked_forward(built[name], runtime, conversions)
      for _ in range(WARMUP_CALLS):  # tracing and oneDNN's first calls, for every batch shape timed
        model_alone(forwards[(name, runtime)], images[:count])
  # Each case once per repeat, interleaved, so a slow spell of the shared machine hits every case alike.
  cases = {("decode", 1): lambda: decode_alone(files, 1), ("decode", 2): lambda: decode_alone(files, 2),
           ("pool", 2): lambda: decode_alone([], 2)}
  for name, count in specs:
    for runtime in names:
      forward = forwards[(name, runtime)]
      cases[(name, runtime, "alone")] = lambda f=forward, c=count: model_alone(f, images[:c])
      for workers in (1, 2):
        cases[(name, runtime, workers)] = lambda m=built[name], f=forward, c=count, w=workers: end_to_end(
            m, f, files[:c], w)
  # The machine's own limit: the files read in 2 processes at once, each all of them, vs 1 process once.
  pool = multiprocessing.get_context("fork").Pool(2)
  cases[("machine", 2)] = lambda: pool.map(decode_alone, [files, files], chunksize=1)
  seconds = {case: float("inf") for case in cases}
  with pool:
    for _ in range(args.repeats):
      for case, fn in cases.items():
        start = time.perf_counter()
        fn()
        seconds[case] = min(seconds[case], time.perf_counter() - start)

  decode = {w: args.files / seconds[("decode", w)] for w in (1, 2)}
  rows = [["decode + preprocess, 1 worker", decode[1], f"files/s ({args.files} files, in this process)"],
          ["decode + preprocess, 2 workers", decode[2], f"files/s; x{decode[2] / decode[1]:.2f} 1 worker"],
          ["  of which starting the 2 workers", seconds[("pool", 2)],
           f"s (fork + join of an empty pool); x{seconds[('pool', 2)] / seconds[('decode', 2)]:.2f} of its time"],
          ["machine limit: decode in 2 processes / 1", 2 * seconds[("decode", 1)] / seconds[("machine", 2)],
           "the most 2 workers could give here (each process reads every file; no pool overhead)"]]
  for name, count in specs:
    for runtime in names:
      alone = count / seconds[(name, runtime, "alone")]
      keras_alone = count / seconds[(name, "keras", "alone")]
      rows.append([f"{name} {IMAGE_SIZE}px {runtime} alone", alone,
                   f"img/s from memory ({count} images, batch {BATCH_SIZE}); x{alone / keras_alone:.2f} keras"])
      full = {}
      for workers in (1, 2):
        full[workers] = count / seconds[(name, runtime, workers)]
        in_turn = 1 / (1 / decode[workers] + 1 / alone)
        keras_full = count / seconds[(name, "keras", workers)]
        rows.append([f"{name} {IMAGE_SIZE}px {runtime} end to end, {workers} worker{'s' if workers > 1 else ''}",
                     full[workers], f"files/s ({count} files); x{full[workers] / keras_full:.2f} keras, "
                     f"x{full[workers] / decode[workers]:.2f} decode alone, x{full[workers] / alone:.2f} model "
                     f"alone, x{full[workers] / in_turn:.2f} the two in turn"])
      rows.append([f"{name} {runtime} speed-up 1 -> 2 workers, end to end", full[2] / full[1], ""])
  bench_common.emit(f"bench_predict: CMMD-size DICOMs (2294x1914) to scores, stored at {STORED_SIZE}, "
                    f"best of {args.repeats}", rows, args.json,
                    {"files": args.files, "models": dict(specs), "runtimes": names, "batch_size": BATCH_SIZE})


if __name__ == "__main__":
  main()
