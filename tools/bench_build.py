"""Build benchmark: CMMD-layout builds at the real film size, N vs 4N images, 1 vs 2 workers.

Writes CMMD-layout trees of 2294x1914 DICOMs with tools/write_cmmd.py (once,
kept in --tree_dir for reruns), then builds each in a fresh process and
reports images per second of the build (download_and_prepare only, not TF's
start-up) and the peak memory (PSS) of the whole process tree (builder plus
worker processes, sampled every 0.1 s). Targets: peak memory does not grow with N;
throughput grows with cores (>= 1.7x from 1 to 2 workers).

  python tools/bench_build.py [--patients=8] [--tree_dir=/tmp/mammo_bench_cmmd] [--json]
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bench_common  # pylint: disable=wrong-import-position


def ensure_tree(folder: pathlib.Path, patients: int) -> int:
  """Writes the tree once; returns its number of DICOM files."""
  marker = folder / "complete"
  if not marker.exists():
    from tools import write_cmmd  # pylint: disable=import-outside-toplevel
    print(f"writing {patients} patients at 2294x1914 into {folder} (about 1.5 s per image) ...", flush=True)
    write_cmmd.write_tree(folder, patients, seed=patients)
    marker.write_text("")
  return sum(1 for _ in folder.rglob("*.dcm"))


def build_once(manual_dir: str, data_dir: str) -> dict:
  """Child process: builds CMMD and prints how long download_and_prepare took."""
  import tensorflow  # pylint: disable=import-outside-toplevel,unused-import  # TFDS imports it lazily: not in the timing
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from mammo_tfds.cmmd import cmmd_dataset_builder  # pylint: disable=import-outside-toplevel
  builder = cmmd_dataset_builder.Builder(data_dir=data_dir)
  start = time.perf_counter()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  seconds = time.perf_counter() - start
  kept = sum(split.num_examples for split in builder.info.splits.values())
  return {"seconds": seconds, "kept": kept}


def measure(manual_dir: pathlib.Path, workers: int) -> dict:
  """Runs one build in a fresh process tree; returns its timing and peak memory."""
  import psutil  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as data_dir:
    env = {**os.environ, "MAMMO_BUILD_WORKERS": str(workers), "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.Popen([sys.executable, __file__, "--_child", str(manual_dir), data_dir],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    process, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
      try:
        tree = [process] + process.children(recursive=True)
        # PSS: forked workers share the parent's pages; RSS would count them twice.
        peak = max(peak, sum(p.memory_full_info().pss for p in tree if p.is_running()))
      except psutil.Error:
        pass
      time.sleep(0.1)
    output = child.stdout.read()
    if child.returncode:
      raise RuntimeError(f"build of {manual_dir} with {workers} workers failed:\n{output}")
    result = json.loads(output.strip().splitlines()[-1])
  return {**result, "peak_mb": peak / 2**20}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--patients", type=int, default=8, help="N: patients of the small tree (4N for the large)")
  parser.add_argument("--tree_dir", default=os.path.join(tempfile.gettempdir(), "mammo_bench_cmmd"))
  parser.add_argument("--json", action="store_true")
  parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._child:  # pylint: disable=protected-access
    print(json.dumps(build_once(*args._child)))  # pylint: disable=protected-access
    return

  rows, results = [], {}
  for scale in (1, 4):
    tree = pathlib.Path(args.tree_dir) / f"patients_{scale * args.patients}"
    images = ensure_tree(tree, scale * args.patients)
    for workers in (1, 2):
      result = measure(tree, workers)
      results[(scale, workers)] = result
      rows.append([f"{images} DICOMs, {workers} worker(s)", images / result["seconds"],
                   f"img/s; {result['seconds']:.1f} s; peak {result['peak_mb']:.0f} MB; kept {result['kept']}"])
  rows.append(["speed-up 1 -> 2 workers (4N)", results[(4, 1)]["seconds"] / results[(4, 2)]["seconds"],
               "target >= 1.7"])
  rows.append(["peak memory 4N / N (2 workers)", results[(4, 2)]["peak_mb"] / results[(1, 2)]["peak_mb"],
               "target ~1: does not grow with N"])
  bench_common.emit("bench_build: CMMD-layout build at 2294x1914", rows, args.json)


if __name__ == "__main__":
  main()
