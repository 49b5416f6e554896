#!/usr/bin/env bash
# The seeds/003 sweeps on a short budget: fast-sigmoid slope z and number of steps T for the
# 784-10-10 lab network, one epoch each on 20,000 training images, tested on 10,000.
#   bash benches/lab_sweeps.sh > sweeps.txt
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SNNC_MNIST_DIR:?set SNNC_MNIST_DIR to the MNIST folder}"
cargo build --release --quiet
model=models/lab_lif_mnist.snn
tmp=$(mktemp -d)
run() { # label, extra args...
  local label=$1; shift
  local acc
  acc=$(./target/release/snnc run "$model" --epochs 1 --limit-train 20000 --set lr=2e-3 --out "$tmp/$label" "$@" 2>/dev/null \
    | awk '$1 == "1" && $2 == "main" { for (i = 1; i <= NF; i++) if ($i ~ /%$/) last = i; print $last }')
  printf '%-10s %s\n' "$label" "$acc"
}
echo "z sweep (T = 50):"
for z in 0.5 1 2 5 10; do
  sed "s/fast_sigmoid(slope = 2)/fast_sigmoid(slope = $z)/" "$model" > "$tmp/z$z.snn"
  model_saved=$model; model="$tmp/z$z.snn"; run "z=$z"; model=$model_saved
done
echo "T sweep (z = 2):"
for steps in 2 5 25 50; do
  run "T=$steps" --set "steps=$steps"
done
