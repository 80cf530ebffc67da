#!/usr/bin/env bash
# kiln and the peers on the LSTM and transformer-block training steps, the gelu chain at 2^20
# and 2^24 elements, sgemm N=1024 and the MNIST MLP's inference at batch 128 (`WORKLOADS=...`
# picks; default: the first four), side by side in one run, 1 and 2 threads pinned with taskset. Prints a
# markdown table: each peer's median, kiln's (default: tier 2 and the default pipeline; tier 1;
# the `cse,dce` pipeline), and kiln / best peer.
#
#   benches/peers/side_by_side.sh PYTHON [KILN_BINARY]
#
# PYTHON is an interpreter with numpy, torch and jax[cpu] (a scratch venv outside the repo).
set -euo pipefail
py="$1"
kiln="${2:-target/release/kiln}"
here="$(dirname "$0")"
median() { grep -oE '"median_us": [0-9.]+' | grep -oE '[0-9.]+$'; }
echo "| workload | threads | PyTorch µs | torch.compile µs | JAX µs | kiln µs | kiln tier 1 µs | kiln cse,dce µs | kiln / best peer |"
echo "|---|---|---|---|---|---|---|---|---|"
for threads in 1 2; do
  cpus=$([ "$threads" = 1 ] && echo 0 || echo 0,1)
  for w in ${WORKLOADS:-lstm transformer gelu20 gelu24}; do
    case "$w" in
      lstm) target=(benches/lstm64.kir) ;;
      transformer) target=(transformer_block --train-step --batch 8) ;;
      gelu20) target=(benches/gelu_scalar_2p20.kir) ;;
      gelu24) target=(benches/gelu_scalar_2p24.kir) ;;
      sgemm) target=(benches/sgemm1024.kir) ;;
      mlp128) target=(mnist_mlp --batch 128) ;;
    esac
    peers=$(taskset -c "$cpus" "$py" "$here/workloads.py" "$w" --threads "$threads" --runs 30)
    pt=$(echo "$peers" | grep '"pytorch"' | median || echo nan)
    tc=$(echo "$peers" | grep '"torch.compile"' | median || echo nan)
    jx=$(echo "$peers" | grep '"jax"' | median || echo nan)
    k=$(taskset -c "$cpus" "$kiln" bench "${target[@]}" --threads "$threads" --runs 30 --json | median)
    k1=$(taskset -c "$cpus" "$kiln" bench "${target[@]}" --threads "$threads" --runs 30 --json --tier 1 | median)
    kb=$(taskset -c "$cpus" "$kiln" bench "${target[@]}" --threads "$threads" --runs 30 --json --pipeline cse,dce | median)
    ratio=$(python3 -c "import math; p=[v for v in (float('$pt'), float('$tc'), float('$jx')) if not math.isnan(v)]; print(f'{$k / min(p):.2f}')")
    echo "| $w | $threads | $pt | $tc | $jx | $k | $k1 | $kb | $ratio |"
  done
done
