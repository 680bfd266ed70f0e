"""Every script under tools/ runs: the smallest size, one repeat, and prints its table (or refuses clearly).

Smoke tests only: they assert that a script runs to its end and prints what
it promises, not its figures (timing-dependent assertions flake on a shared
machine). bench_common.py is a helper module the others import, covered by them.
"""
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"


def _run(argv, tmp_path, timeout=300) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "MAMMO_BUILD_WORKERS": "1",
         "TMPDIR": str(tmp_path)}
  command = [sys.executable, *argv] if argv[0].endswith(".py") or argv[0] == "-c" else argv
  return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(result, *expected):
  assert result.returncode == 0, result.stderr[-3000:]
  for text in expected:
    assert text in result.stdout, result.stdout[-3000:]


def test_every_tool_has_a_smoke_test():
  tested = {name for name in globals() if name.startswith("test_")}
  for script in TOOLS.iterdir():
    if script.suffix in (".py", ".sh") and script.name != "bench_common.py":
      assert f"test_{script.stem}" in tested, f"tools/{script.name} has no smoke test in {__file__}"


def test_bench_frozen(tiny_data_dir, tmp_path):
  result = _run([str(TOOLS / "bench_frozen.py"), f"--data_dir={tiny_data_dir}", "--config=tiny", "--image_size=32",
                 "--images=4", "--repeats=1", "--train_images=32", "--validation_images=8", "--epochs=1",
                 "--batch_size=4", "--runtimes=keras"], tmp_path)
  _ok(result, "bench_frozen:", "keras: backbone features", "head: one epoch at CMMD size", "1-epoch run")


def test_bench_predict(tmp_path):
  result = _run([str(TOOLS / "bench_predict.py"), "--files=1", "--models=cnn", "--repeats=1", "--runtimes=keras",
                 f"--tree_dir={tmp_path / 'tree'}"], tmp_path)
  _ok(result, "bench_predict:", "cnn 600px keras end to end, 2 workers")


def test_bench_model_step(tmp_path):
  result = _run([str(TOOLS / "bench_model_step.py"), "--models=cnn", "--sizes=32", "--policies=float32",
                 "--steps=1", "--warmup=1", "--batch_size=2"], tmp_path)
  _ok(result, "bench_model_step:", "cnn 32px float32: train img/s", "peak unknown")


def test_bench_train(tiny_data_dir, tmp_path):
  result = _run([str(TOOLS / "bench_train.py"), f"--data_dir={tiny_data_dir}", "--config=tiny", "--models=cnn",
                 "--sizes=32", "--policies=float32", "--batch_size=4", "--steps=1", "--min_steps=1",
                 "--max_seconds=0"], tmp_path)
  _ok(result, "bench_train:", "cnn 32px float32")


def test_bench_input(tiny_data_dir, tmp_path):
  result = _run([str(TOOLS / "bench_input.py"), f"--data_dir={tiny_data_dir}", "--dataset=synthetic/tiny",
                 "--images=16", "--naive_images=8", "--batch_size=8"], tmp_path)
  _ok(result, "bench_input:", "full augmentation / naive")


def test_bench_export(tmp_path):
  result = _run([str(TOOLS / "bench_export.py"), "--models=cnn:32", "--budget=0.05"], tmp_path)
  _ok(result, "Export serving speed")


def test_bench_build(tmp_path):
  result = _run([str(TOOLS / "bench_build.py"), "--dataset=cbis_ddsm", "--patients=1", "--film_size", "300", "200",
                 "--repeats=1", f"--tree_dir={tmp_path / 'trees'}"], tmp_path)
  _ok(result, "bench_build")


def test_contact_sheet(tiny_data_dir, tmp_path):
  out = tmp_path / "sheet.png"
  result = _run([str(TOOLS / "contact_sheet.py"), "--dataset=synthetic/tiny", f"--data_dir={tiny_data_dir}",
                 f"--out={out}", "--thumb=16"], tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert out.stat().st_size > 0


def _writer(script, tmp_path, *args):
  result = _run([str(TOOLS / script), str(tmp_path / "out"), *args], tmp_path)
  _ok(result, "wrote")
  assert any(path.is_file() for path in (tmp_path / "out").rglob("*"))


def test_write_cmmd(tmp_path):
  _writer("write_cmmd.py", tmp_path, "--patients=2", "--height=64", "--width=48")


def test_write_cbis(tmp_path):
  # The smallest films tests/test_cbis_ddsm.py writes.
  _writer("write_cbis.py", tmp_path, "--patients=1", "--height=120", "--width=72")


def test_write_cbis_refuses_films_too_small_to_show_a_breast(tmp_path):
  result = _run([str(TOOLS / "write_cbis.py"), str(tmp_path / "out"), "--patients=2", "--height=20",
                 "--width=20"], tmp_path)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "write_cbis.py: --height=20 --width=20: a 20 x 20 film left no breast visible beside its border strips, "
      "ruler and label: write larger films (at least about 140 x 84)"]


def test_write_manifest(tmp_path):
  _writer("write_manifest.py", tmp_path, "--patients=1", "--height=64", "--width=48")


def test_write_fake_mias(tmp_path):
  result = _run([str(TOOLS / "write_fake_mias.py"), str(tmp_path / "mias")], tmp_path)
  _ok(result, "all-mias.tar.gz")


def test_gpu_bench(tmp_path):
  result = _run(["bash", str(TOOLS / "gpu_bench.sh"), str(tmp_path / "data")], tmp_path, timeout=60)
  if result.returncode == 0:
    pytest.skip("a GPU is here: the full benchmark ran")
  assert result.returncode == 2 and result.stderr.strip() == (
      "gpu_bench.sh: no NVIDIA GPU here (nvidia-smi lists none): run it on a GPU machine")


def test_bench_model_step_reaches_its_models_without_tensorflow(tmp_path):
  """On the GPU machine there is no TensorFlow: the script's mammo_train imports (the Keras-only
  classifiers) must not reach it. TensorFlow is blocked and Keras stubbed; an unknown model then
  has to be refused by the script's own check, which needs `classifiers` imported."""
  script = ("import runpy, sys\nfrom unittest import mock\nsys.modules['tensorflow'] = None\n"
            "sys.modules['keras'] = mock.MagicMock()\n"
            f"sys.argv = [{str(TOOLS / 'bench_model_step.py')!r}, '--models=nosuchnet']\n"
            f"runpy.run_path({str(TOOLS / 'bench_model_step.py')!r}, run_name='__main__')\n")
  result = _run(["-c", script], tmp_path)
  assert result.returncode == 2 and "--models: each must be one of cnn, resnet50" in result.stderr, result.stderr


def test_write_rsna(tmp_path):
  _writer("write_rsna.py", tmp_path, "--patients=1", "--scale=0.02", "--test-patients=0")
