#!/usr/bin/env bash
# One-GPU benchmark: installs the package, builds the synthetic dataset and runs
# the input and training benchmarks, printing one table each. Meant to finish in
# under 8 minutes on one NVIDIA H100 / H200. Needs pip access to PyPI (or a
# wheel mirror): it installs the package and tensorflow[and-cuda].
#   bash tools/gpu_bench.sh [DATA_DIR]
set -euo pipefail
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_bench.sh: no NVIDIA GPU here (nvidia-smi lists none): run it on a GPU machine" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
data_dir=${1:-/tmp/mammo_bench_data}
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q -e . "tensorflow[and-cuda]>=2.18,<2.22"
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/python -c "import tensorflow as tf; print('GPUs:', tf.config.list_physical_devices('GPU'))"
MAMMO_BUILD_WORKERS=$(nproc) .venv/bin/tfds build mammo_tfds/synthetic --config=600 --data_dir="$data_dir" >/dev/null
.venv/bin/python tools/bench_input.py --data_dir="$data_dir" --images=2048
.venv/bin/python tools/bench_train.py --data_dir="$data_dir" --models=resnet50 --sizes=224,600 \
  --policies=float32,mixed_float16 --batch_size=64 --steps=30 --min_steps=10 --max_seconds=10
.venv/bin/python tools/bench_train.py --data_dir="$data_dir" --models=cnn,vgg16,inceptionv3 --sizes=600 \
  --policies=float32,mixed_float16 --batch_size=32 --steps=20 --min_steps=5 --max_seconds=5
