#!/usr/bin/env bash
# Two builds of kiln side by side in one run: every zoo forward graph and training step
# (Adam), on 1 and 2 threads pinned with taskset, each measurement taken with A then B then
# A again (A's time is the mean of its two medians), so drift over the run cancels.
#
#   benches/binaries_ab.sh KILN_A KILN_B [RUNS]    # RUNS default 100
#
# Build the two binaries first (for a commit: git worktree add DIR REV, then cargo build
# --release there). Prints a markdown table of median times and the ratio B / A (below 1: B is
# faster).
set -euo pipefail
a_bin="$1"
b_bin="$2"
runs="${3:-100}"
median() { grep -oE '"median_us": [0-9.]+' | grep -oE '[0-9.]+$'; }
echo "| graph | threads | A µs | B µs | B / A |"
echo "|---|---|---|---|---|"
for model in xor_mlp mnist_mlp lenet5 cifar_cnn lstm_classifier transformer_block gan; do
  for step in "" "--train-step --optimizer adam"; do
    for threads in 1 2; do
      cpus=$([ "$threads" = 1 ] && echo 1 || echo 0,1)
      bench() {
        # shellcheck disable=SC2086
        taskset -c "$cpus" "$1" bench "$model" $step --threads "$threads" --runs "$runs" --json | median
      }
      a1=$(bench "$a_bin")
      b=$(bench "$b_bin")
      a2=$(bench "$a_bin")
      a=$(python3 -c "print(f'{($a1 + $a2) / 2:.1f}')")
      name="$model$([ -n "$step" ] && echo ' step' || echo ' forward')"
      echo "| $name | $threads | $a | $b | $(python3 -c "print(f'{$b / $a:.3f}')") |"
    done
  done
done
