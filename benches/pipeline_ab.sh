#!/usr/bin/env bash
# The optimizer's effect, A/B in one run: every zoo forward graph and training step (Adam),
# default pipeline against `cse,dce` (no rewriting), on 1 and 2 threads pinned with taskset.
#
#   benches/pipeline_ab.sh [KILN_BINARY] [RUNS]    # default: target/release/kiln, 50 runs
#
# Prints a markdown table of median times and the ratio default / cse,dce (below 1: the
# optimizer pays). Build the binary first: cargo build --release.
set -euo pipefail
kiln="${1:-target/release/kiln}"
runs="${2:-50}"
median() { grep -oE '"median_us": [0-9.]+' | grep -oE '[0-9.]+$'; }
echo "| graph | threads | default µs | cse,dce µs | default / cse,dce |"
echo "|---|---|---|---|---|"
for model in mnist_mlp lenet5 cifar_cnn lstm_classifier transformer_block; do
  for step in "" "--train-step --optimizer adam"; do
    for threads in 1 2; do
      cpus=$([ "$threads" = 1 ] && echo 1 || echo 0,1)
      # shellcheck disable=SC2086
      a=$(taskset -c "$cpus" "$kiln" bench "$model" $step --threads "$threads" --runs "$runs" --json | median)
      # shellcheck disable=SC2086
      b=$(taskset -c "$cpus" "$kiln" bench "$model" $step --threads "$threads" --runs "$runs" --json --pipeline cse,dce | median)
      name="$model$([ -n "$step" ] && echo ' step' || echo ' forward')"
      echo "| $name | $threads | $a | $b | $(python3 -c "print(f'{$a / $b:.3f}')") |"
    done
  done
done
