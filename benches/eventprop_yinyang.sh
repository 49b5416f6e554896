#!/usr/bin/env bash
# EventProp training speed on seeds/002's Yin-Yang network (5-40-25-13-3 CubaLIF, first-spike
# cross-entropy, Adam 5e-3, batch 32, dt 0.1 ms, T 30 ms): snnc (benches/eventprop_yinyang_ce.snn,
# exact spike times, one thread) against mlGeNN's EventPropCompiler on GeNN's single-threaded
# CPU back end (benches/peers/eventprop_yinyang_mlgenn.py: the same network on GeNN's dt grid;
# its docstring lists the ten ways it differs), epoch by epoch in one run, and the ratio of
# training samples per second. mlGeNN and pygenn are not on PyPI: build them as
# benches/peers/requirements-mlgenn.txt says and point MLGENN_PY at that venv's python.
#   MLGENN_PY=/tmp/mlgenn-venv/bin/python bash benches/eventprop_yinyang.sh [epochs]   (default 2)
#   SKIP_BUILD=1 ...    (use target/release/snnc as it is)
# snnc's rate is metrics.csv's train_samples_per_second (training only); mlGeNN's is the
# script's (time.perf_counter around the epoch's training batches, build and test excluded).
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="${1:-2}"
py="${MLGENN_PY:-}"
[ -n "$py" ] && [ -x "$py" ] || { echo "set MLGENN_PY to a python with ml_genn and pygenn (benches/peers/requirements-mlgenn.txt)" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
target/release/snnc run benches/eventprop_yinyang_ce.snn --threads 1 --epochs "$epochs" --out "$out/snnc" >"$out/snnc.log" 2>&1
"$py" benches/peers/eventprop_yinyang_mlgenn.py --epochs "$epochs" >"$out/mlgenn.log" 2>"$out/mlgenn.err"
python3 - "$out" <<'PY'
import csv, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/snnc/metrics.csv")))
peer = {}
for line in open(f"{out}/mlgenn.log"):
    f = line.split()
    if f and f[0] == "epoch":
        peer[int(f[1])] = (float(f[3]), float(f[5]))
    elif f and f[0] == "build_seconds":
        print(f"mlGeNN build (code generation and compilation, not timed below): {float(f[1]):.1f} s")
print("| epoch | snnc samples/s | snnc test acc | mlGeNN samples/s | mlGeNN test acc | snnc / mlGeNN |")
print("| --- | --- | --- | --- | --- | --- |")
for r in rows:
    e = int(r["epoch"])
    ours = float(r["train_samples_per_second"])
    rate, acc = peer.get(e, (float("nan"), float("nan")))
    print(f"| {e} | {ours:.0f} | {float(r['test_accuracy']) * 100:.1f}% | {rate:.0f} | {acc * 100:.1f}% | {ours / rate:.2f}x |")
PY
