#!/usr/bin/env bash
# Training speed of seeds/000's energy network under FPTT with the authors' one-step truncation
# (models/energy_control.snn: 784-600-500-500-10 two-compartment ALIF, T = 50, K = 10 windows,
# batch 256, f32) against the PyTorch peer (benches/peers/fptt_energy_torch.py, the same
# network, loop and truncation), on 2 threads, with the machine's f32 GEMM peak, all in one run
# (absolute rates on a shared machine are noise; the ratios are the result).
#   bash benches/fptt.sh [images]   (default 4096 training images, 256 test images;
#       SKIP_BUILD=1 to use the binaries as they are; SNNC="a b" to time several snnc binaries
#       in turn, default target/release/snnc; PYTHON= the peer's interpreter, default
#       benches/peers/.venv/bin/python from setup.sh; NO_PEER=1 to leave the peer out)
# Work per training sample, from the model's sizes: the forward pass runs 50 steps of every
# connection, the backward pass one step per window (10) of the weight gradients and of the
# input gradients (the first layer's input gradient is not needed).
set -euo pipefail
cd "$(dirname "$0")/.."
images="${1:-4096}"
tests=256
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --quiet
fi
export SNNC_MNIST_DIR="${SNNC_MNIST_DIR:-../shared/data/mnist}"
python="${PYTHON:-benches/peers/.venv/bin/python}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

peak=$(cargo bench --quiet --bench gemm 2>/dev/null | awk '/^peak/ { v = $(NF - 1) } END { print v }')
i=0
for snnc in ${SNNC:-target/release/snnc}; do
  "$snnc" run models/energy_control.snn --epochs 1 --threads 2 --limit-train "$images" --limit-test "$tests" \
    --out "$out/snnc$i" >"$out/snnc$i.log" 2>&1
  i=$((i + 1))
done
if [ -z "${NO_PEER:-}" ]; then
  "$python" benches/peers/fptt_energy_torch.py --mnist "$SNNC_MNIST_DIR" --limit-train "$images" \
    --limit-test "$tests" --epochs 1 --threads 2 --no-bias --json "$out/peer.json" >"$out/peer.log" 2>&1
fi
python3 - "$out" "$peak" "${SNNC:-target/release/snnc}" <<'PY'
import csv, json, os, sys
out, peak, binaries = sys.argv[1], float(sys.argv[2]), sys.argv[3].split()
# Multiply-adds per step, every projection counted dense: feed-forward 784x600 + 600x500 +
# 500x500 + 500x10, feedback 500x600 + 500x500 + 10x500. Backward, per swept step: the weight
# gradients (the same count) and the input gradients of all but the pixels' projection.
dense = 784 * 600 + 600 * 500 + 500 * 500 + 500 * 10 + 500 * 600 + 500 * 500 + 10 * 500
inputs = dense - 784 * 600
forward = 50 * dense
backward = 10 * (dense + inputs)
flop = 2 * (forward + backward)
print(f"f32 GEMM peak, 2 threads: {peak:.1f} GFLOP/s; {flop / 1e6:.1f} MFLOP per training sample")
rates = []
for i, binary in enumerate(binaries):
    row = list(csv.DictReader(open(f"{out}/snnc{i}/metrics.csv")))[-1]
    rate = float(row["train_samples_per_second"])
    rates.append(rate)
    gf = rate * flop / 1e9
    print(f"snnc {binary}: {rate:.1f} samples/s, {gf:.1f} GFLOP/s, {100 * gf / peak:.1f}% of peak, "
          f"train {100 * float(row['train_accuracy']):.2f}%, test {100 * float(row['test_accuracy']):.2f}%")
if os.path.exists(f"{out}/peer.json"):
    peer = json.load(open(f"{out}/peer.json"))[-1]
    rate = peer["train_samples_per_second"]
    gf = rate * flop / 1e9
    print(f"PyTorch: {rate:.1f} samples/s, {gf:.1f} GFLOP/s, {100 * gf / peak:.1f}% of peak, "
          f"train {100 * peer['train_accuracy']:.2f}%, test {100 * peer['test_accuracy']:.2f}%")
    for binary, r in zip(binaries, rates):
        print(f"snnc / PyTorch ({binary}): {r / rate:.2f}")
PY
