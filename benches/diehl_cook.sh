#!/usr/bin/env bash
# Diehl & Cook 2015 STDP training speed: snnc (models/diehl_cook_<N>.snn, one thread) against
# Brian2 (benches/peers/diehl_cook_brian2.py, the same network) and, when its venv is there,
# BindsNET (benches/peers/diehl_cook_bindsnet.py: BindsNET's own DiehlAndCook2015 model, close
# to but not the same network; its docstring lists the differences) on the same first K MNIST
# training examples, and the ratio snnc/peer of training examples per second. Brian2's
# cpp_standalone is its fastest CPU target (one thread here, compilation excluded); add cython
# (runtime mode, one net.run per presentation) with TARGETS. The peer target column names the
# Brian2 target, or bindsnet (torch on the CPU, one thread). Needs the Brian2 venv
# (benches/peers/setup.sh) and MNIST in $SNNC_MNIST_DIR; the bindsnet rows need
# benches/peers/.venv-bindsnet (setup.sh bindsnet) or BINDSNET_PY, and are skipped without.
#   bash benches/diehl_cook.sh [examples] [neurons ...]      (default: 200 examples, 400 and 100)
#   TARGETS="cpp_standalone cython" bash benches/diehl_cook.sh 200 400
#   BINDSNET_PY=/path/to/python ...                          (a python with bindsnet installed)
#   SKIP_BUILD=1 ...                                         (use target/release/snnc as it is)
#   SNNC_ARGS="--precision f64" ...                          (more snnc run options; the models
#                                                             run in f32 by default, Brian2 in
#                                                             f64, BindsNET in f32)
# Every side simulates every presentation, retries included (the peers report their counts on
# stderr). snnc's rate is its metrics.csv train_samples_per_second (the training pass only,
# the labelling and test passes excluded); Brian2's is K over the wall time of the built
# program's run (its start-up and synapse creation included) or of the Python loop; BindsNET's
# is K over the wall time of its training loop (Poisson encoding included).
set -euo pipefail
cd "$(dirname "$0")/.."
k="${1:-200}"
shift || true
if (( $# )); then sizes=("$@"); else sizes=(400 100); fi
targets="${TARGETS:-cpp_standalone}"
: "${SNNC_MNIST_DIR:?set SNNC_MNIST_DIR to the MNIST folder}"
py=benches/peers/.venv-brian2/bin/python
[ -x "$py" ] || { echo "run benches/peers/setup.sh first" >&2; exit 1; }
bpy="${BINDSNET_PY:-benches/peers/.venv-bindsnet/bin/python}"
if ! command -v "$bpy" >/dev/null 2>&1; then
  echo "no BindsNET python ($bpy): skipping the bindsnet rows (bash benches/peers/setup.sh" \
    "bindsnet, or BINDSNET_PY=/path/to/python)" >&2
  bpy=
fi
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet

snnc_rate() { # neurons -> training examples/s
  local out log
  out=$(mktemp -d) log=$(mktemp)
  # shellcheck disable=SC2086 # SNNC_ARGS is meant to split
  if ! ./target/release/snnc run "models/diehl_cook_$1.snn" --limit-train "$k" --limit-test 10 --epochs 1 \
      --threads 1 --out "$out" ${SNNC_ARGS:-} >"$log" 2>&1; then
    echo "snnc failed:" >&2; tail -5 "$log" >&2; echo failed; rm -r "$out" "$log"; return
  fi
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "train_samples_per_second") c = i }
           NR == 2 { printf "%.2f\n", $c }' "$out/metrics.csv"
  rm -r "$out" "$log"
}

peer_row() { # neurons, target, snnc rate, peer command ... (prints one table row)
  local n="$1" target="$2" snnc="$3" line rate ratio
  shift 3
  if line=$("$@"); then
    rate=$(echo "$line" | sed -E 's/.*examples_per_s=([0-9.]+).*/\1/')
    ratio=$(awk -v a="$snnc" -v b="$rate" 'BEGIN { if (a + 0 > 0) printf "%.2fx", a / b; else print "-" }')
  else
    rate=failed ratio=-
  fi
  printf "$format" "$n" "$target" "$rate" "$snnc" "$ratio"
}

format='%-8s %-15s %10s %10s %11s\n'
printf "$format" neurons "peer target" "peer ex/s" "snnc ex/s" "snnc/peer"
for n in "${sizes[@]}"; do
  snnc=$(snnc_rate "$n")
  for target in $targets; do
    peer_row "$n" "$target" "$snnc" \
      $py benches/peers/diehl_cook_brian2.py --target "$target" --neurons "$n" --examples "$k"
  done
  if [ -n "$bpy" ]; then
    peer_row "$n" bindsnet "$snnc" \
      "$bpy" benches/peers/diehl_cook_bindsnet.py --neurons "$n" --examples "$k"
  fi
done
