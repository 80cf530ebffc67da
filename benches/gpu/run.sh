#!/usr/bin/env bash
# The GPU issue's measurements, on a machine with an NVIDIA GPU: the GPU differential tests,
# kiln's training steps on the GPU (`kiln bench --device cuda --train-step`), then the same
# workloads in PyTorch eager and torch.compile (benches/gpu/peers.py). Run from the repo root:
#
#     bash benches/gpu/run.sh
#
# NVRTC: found on the loader's path, else install the wheel and point KILN_NVRTC_DIR at it
# (done here when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${KILN_NVRTC_DIR:-}" ] && ! ldconfig -p 2>/dev/null | grep -q libnvrtc; then
  export KILN_NVRTC_DIR="$PWD/target/nvrtc"
  ls "$KILN_NVRTC_DIR"/nvidia/cuda_nvrtc/lib/libnvrtc.so.* >/dev/null 2>&1 ||
    python3 -m pip install --quiet --target "$KILN_NVRTC_DIR" "nvidia-cuda-nvrtc-cu12==12.9.86"
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
KILN_REQUIRE_GPU=1 cargo test --release --features cuda --test gpu -- --nocapture 2>&1 | tail -n 30
cargo build --release --features cuda
for w in "mnist_mlp 128" "mnist_mlp 4096" "lenet5 64" "lenet5 1024" "transformer_block 8" "transformer_block 64"; do
  set -- $w
  ./target/release/kiln bench "$1" --batch "$2" --train-step --device cuda --runs 50
done
python3 benches/gpu/peers.py --runs 50
