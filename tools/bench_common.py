"""Shared bits of the benchmark scripts: quiet TF, the synthetic dataset, printing figures."""
import json
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def ensure_synthetic(data_dir: str | None, config: str = "600") -> str:
  """A data dir holding synthetic/<config>, built there if missing (~1 min for 600)."""
  from mammo_tfds.synthetic import synthetic_dataset_builder  # pylint: disable=import-outside-toplevel
  data_dir = data_dir or os.path.join(tempfile.gettempdir(), "mammo_bench_data")
  builder = synthetic_dataset_builder.Builder(config=config, data_dir=data_dir)
  if not builder.is_prepared():
    print(f"building synthetic/{config} into {data_dir} ...", flush=True)
    builder.download_and_prepare()
  return data_dir


def rate(fn, images: int) -> float:
  """Images per second of fn(), which must process `images` images."""
  start = time.perf_counter()
  fn()
  return images / (time.perf_counter() - start)


def machine() -> str:
  import platform  # pylint: disable=import-outside-toplevel
  model = ""
  cpuinfo = pathlib.Path("/proc/cpuinfo")
  if cpuinfo.exists():
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")), "")
  return f"{os.cpu_count()} cores, {model or platform.processor()}"


def runtime_names(parser, requested: str | None) -> list:
  """Keras, then the runtimes of --runtimes (default: every one that can run here), each `resolve`d: every
  ratio is to Keras in the same run. An unknown runtime, or one that cannot run here, is a usage error."""
  from mammo_train import config  # pylint: disable=import-outside-toplevel
  from mammo_train.inference import runtimes  # pylint: disable=import-outside-toplevel
  names = requested.split(",") if requested else [n for n in config.RUNTIMES[1:] if runtimes.available(n)]
  for name in names:
    try:
      config.check(name != "auto", f"{name}: name the runtimes themselves ({', '.join(config.RUNTIMES[1:])})")
      runtimes.resolve(name, accelerator=False)
    except config.ConfigError as error:
      parser.error(f"--runtimes: {error}")
  return ["keras"] + [name for name in names if name != "keras"]


def emit(title: str, rows: list, as_json: bool, extra: dict | None = None):
  """Prints rows ([name, value, note]) as a table, or everything as JSON."""
  if as_json:
    print(json.dumps({"benchmark": title, "machine": machine(), "rows": [
        {"name": name, "value": value, "note": note} for name, value, note in rows], **(extra or {})}, indent=2))
    return
  print(f"\n{title}  ({machine()})")
  width = max(len(name) for name, _, _ in rows)
  for name, value, note in rows:
    shown = f"{value:10.2f}" if isinstance(value, float) else f"{value!s:>10}"
    print(f"  {name:<{width}}  {shown}  {note}")
