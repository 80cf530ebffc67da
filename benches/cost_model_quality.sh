#!/usr/bin/env bash
# The cost model's quality on every zoo forward graph and training step (Adam, batch 32, one
# thread): `kiln profile` times every step against its prediction; this prints, per graph,
# the rank correlation, measured and predicted totals, and the optimizer's gain (cse,dce time
# over default time) as predicted and as measured.
#
#   benches/cost_model_quality.sh [KILN_BINARY] [RUNS]    # default: target/release/kiln, 20 runs
#
# Uses the model `kiln` would use (KILN_COST_MODEL, else this CPU's cache, else built in).
set -euo pipefail
kiln="${1:-target/release/kiln}"
runs="${2:-20}"
summary() { taskset -c 0 "$kiln" profile "$@" --runs "$runs" --summary | head -1; }
field() { sed -E "s/.*$1 ([0-9.e+-]+).*/\1/"; }
echo "| graph | steps | rank correlation | measured µs | predicted µs | measured gain | predicted gain |"
echo "|---|---|---|---|---|---|---|"
for model in mnist_mlp lenet5 cifar_cnn lstm_classifier transformer_block; do
  for step in "" "--train-step --optimizer adam"; do
    # shellcheck disable=SC2086
    a=$(summary "$model" $step)
    # shellcheck disable=SC2086
    b=$(summary "$model" $step --pipeline cse,dce)
    name="$model$([ -n "$step" ] && echo ' step' || echo ' forward')"
    steps=$(echo "$a" | sed -E 's/^@[^:]*: ([0-9]+) steps.*/\1/')
    rho=$(echo "$a" | field "rank correlation")
    ma=$(echo "$a" | field "measured"); pa=$(echo "$a" | field "predicted")
    mb=$(echo "$b" | field "measured"); pb=$(echo "$b" | field "predicted")
    echo "| $name | $steps | $rho | $ma | $pa | $(python3 -c "print(f'{$mb / $ma:.3f}')") | $(python3 -c "print(f'{$pb / $pa:.3f}')") |"
  done
done
