#!/usr/bin/env bash
# Training speed of seeds/004's spiking conv auto-encoder (models/sae_dense.snn: conv 16 and 32
# 5x5, 100 latent, two transposed convs, T = 100, batch 64, f32) against snnTorch
# (benches/peers/sae_snntorch.py, the same network and loss), on 2 threads, in one run.
#   bash benches/sae.sh [batches]   (default 8; SKIP_BUILD=1 to use target/release/snnc as it is)
# snnc's time per batch: two runs of 2 and 2 + batches training batches (8 test samples), the
# difference of their training times (metrics.csv: samples / samples per second) over
# `batches`, so that the first batch's allocations and the test pass are not counted.
# snnTorch's: the median of `batches` timed batches after 2 warm-up batches (the script's
# time.perf_counter around forward, backward and Adam's step).
set -euo pipefail
cd "$(dirname "$0")/.."
batches="${1:-8}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
export SNNC_MNIST_DIR="${SNNC_MNIST_DIR:-../shared/data/mnist}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for n in 2 $((2 + batches)); do
  target/release/snnc run models/sae_dense.snn --epochs 1 --threads 2 --limit-train $((64 * n)) --limit-test 8 --out "$out/snnc$n" >"$out/snnc$n.log" 2>&1
done
benches/peers/.venv/bin/python benches/peers/sae_snntorch.py --batches "$batches" --warmup 2 --threads 2 --full-loss >"$out/peer.json"
python3 - "$out" "$batches" <<'PY'
import csv, json, sys
out, batches = sys.argv[1], int(sys.argv[2])
def train_seconds(n):
    row = list(csv.DictReader(open(f"{out}/snnc{n}/metrics.csv")))[-1]
    return 64 * n / float(row["train_samples_per_second"])
snnc = (train_seconds(2 + batches) - train_seconds(2)) / batches
peer = json.load(open(f"{out}/peer.json"))
print(f"snnc     {snnc:.2f} s per batch of 64 (f32, 2 threads)")
print(f"snnTorch {peer['median_s']:.2f} s per batch (median of {len(peer['batch_seconds'])}, torch {peer['torch']}, snntorch {peer['snntorch']}, 2 threads)")
print(f"snnTorch / snnc: {peer['median_s'] / snnc:.2f}")
PY
