"""Training across machines: two workers on this machine, one cluster, only the chief writes,
each reads and decodes its own half of the training split."""
import json
import pathlib
import re
import shutil
import socket
import subprocess
import sys

import pytest

from mammo_train.inputs import data
from tests.test_train import FROZEN, QUICK, QUIET, history

REPO = pathlib.Path(__file__).resolve().parents[1]


def _free_ports(count: int) -> list[int]:
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _read_only_view_works(folder: pathlib.Path) -> bool:
  """Whether this machine lets a process see `folder` read-only (a mount namespace, as root)."""
  if not shutil.which("unshare"):
    return False
  probe = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && ! touch "$0/probe"',
                          str(folder)], capture_output=True, check=False)
  return probe.returncode == 0 and not (folder / "probe").exists()


def _decoded(output: str, what: str = r"training input: share (\d+) of (\d+) of \S+ train split: (\d+) examples"):
  """(share, of shares, training examples it reads and decodes) from a worker's log (`data.train_batches`)."""
  found = re.findall(what, output)
  assert len(found) == 1, output[-3000:]
  return tuple(int(value) for value in found[0])


def _each_decodes_its_half(outputs, builder, what=None):
  """Each worker decoded its own half of the training split, and together all of it."""
  total = data.num_examples(builder, "train")
  decoded = [_decoded(output, *([what] if what else [])) for output in outputs]
  assert [(share, shares) for share, shares, _ in decoded] == [(1, 2), (2, 2)]
  for _, _, count in decoded:
    assert 0.4 * total <= count <= 0.6 * total, (decoded, total)
  assert sum(count for _, _, count in decoded) == total


def _two_workers(workdir: pathlib.Path, argv: list[str]) -> list[str]:
  """Runs the trainer as a cluster of two workers on this machine, the second seeing `workdir` read-only;
  returns their outputs, after checking that both succeeded."""
  workdir.mkdir()
  if not _read_only_view_works(workdir):
    pytest.skip("needs `unshare -m` (root) to show the second worker a read-only workdir")
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
  argv = [*QUICK, f"--workdir={workdir}", "--strategy=multiworker", *argv]
  workers = []
  for index in range(2):
    env = {**QUIET, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
    command = [sys.executable, "-m", "mammo_train", *argv]
    if index == 1:  # the other worker sees the shared workdir read-only: any write would fail its run
      command = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(workdir), *command]
    workers.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True))
  try:
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
  finally:
    for worker in workers:
      worker.kill()
  for index, (worker, output) in enumerate(zip(workers, outputs)):
    assert worker.returncode == 0, f"worker {index}:\n{output[-3000:]}"
  return outputs


def test_two_workers_train_one_model_and_only_the_chief_writes(tiny_data_dir, tiny_builder, tmp_path):
  workdir = tmp_path / "run"
  outputs = _two_workers(workdir, [f"--data_dir={tiny_data_dir}", "--epochs=2", "--oversample"])
  run = json.loads((workdir / "run.json").read_text())
  assert run["replicas"] == 2 and run["strategy"] in ("CollectiveAllReduceStrategy", "MultiWorkerMirroredStrategy")
  assert run["finished"]
  assert (workdir / "final.keras").is_file() and (workdir / "eval" / "metrics.json").is_file()
  assert [row["epoch"] for row in history(workdir)] == ["0", "1"]
  assert "test image: roc_auc" in outputs[0] and "test image" not in outputs[1]  # only the chief evaluates
  _each_decodes_its_half(outputs, tiny_builder)


def test_two_workers_train_a_frozen_backbone_on_the_features_of_their_own_halves(tiny_data_dir, tiny_builder,
                                                                                  tmp_path):
  workdir = tmp_path / "run"
  outputs = _two_workers(workdir, [f"--data_dir={tiny_data_dir}", "--epochs=1", "--class_weights",
                                   *FROZEN])
  assert json.loads((workdir / "run.json").read_text())["finished"]
  assert [row["epoch"] for row in history(workdir)] == ["0"]
  _each_decodes_its_half(outputs, tiny_builder, r"feature cache: share (\d+) of (\d+) of the train split: (\d+)")
  # Only the chief's share is cached in the workdir, under a key that names it.
  (key,) = (workdir / "feature_cache").glob("*/key.json")
  assert json.loads(key.read_text())["share"] == [0, 2]
