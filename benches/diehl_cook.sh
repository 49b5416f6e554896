#!/usr/bin/env bash
# Diehl & Cook 2015 STDP training speed: snnc (models/diehl_cook_<N>.snn, one thread) against
# Brian2 (benches/peers/diehl_cook_brian2.py, the same network) on the same first K MNIST
# training examples, and the ratio snnc/Brian2 of training examples per second. Brian2's
# cpp_standalone is its fastest CPU target (one thread here, compilation excluded); add cython
# (runtime mode, one net.run per presentation) with TARGETS. Needs the Brian2 venv
# (benches/peers/setup.sh) and MNIST in $SNNC_MNIST_DIR.
#   bash benches/diehl_cook.sh [examples] [neurons ...]      (default: 200 examples, 400 and 100)
#   TARGETS="cpp_standalone cython" bash benches/diehl_cook.sh 200 400
#   SKIP_BUILD=1 ...                                         (use target/release/snnc as it is)
#   SNNC_ARGS="--precision f32" ...                          (more snnc run options; the models
#                                                             ask for f64, as Brian2 runs)
# Both sides simulate every presentation, retries included (Brian2 reports its count on
# stderr). snnc's rate is its metrics.csv train_samples_per_second (the training pass only,
# the labelling and test passes excluded); Brian2's is K over the wall time of the built
# program's run (its start-up and synapse creation included) or of the Python loop.
set -euo pipefail
cd "$(dirname "$0")/.."
k="${1:-200}"
shift || true
if (( $# )); then sizes=("$@"); else sizes=(400 100); fi
targets="${TARGETS:-cpp_standalone}"
: "${SNNC_MNIST_DIR:?set SNNC_MNIST_DIR to the MNIST folder}"
py=benches/peers/.venv-brian2/bin/python
[ -x "$py" ] || { echo "run benches/peers/setup.sh first" >&2; exit 1; }
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

format='%-8s %-15s %10s %10s %11s\n'
printf "$format" neurons "brian2 target" "brian2 ex/s" "snnc ex/s" "snnc/brian2"
for n in "${sizes[@]}"; do
  snnc=$(snnc_rate "$n")
  for target in $targets; do
    if line=$($py benches/peers/diehl_cook_brian2.py --target "$target" --neurons "$n" --examples "$k"); then
      rate=$(echo "$line" | sed -E 's/.*examples_per_s=([0-9.]+).*/\1/')
      ratio=$(awk -v a="$snnc" -v b="$rate" 'BEGIN { if (a + 0 > 0) printf "%.2fx", a / b; else print "-" }')
    else
      rate=failed ratio=-
    fi
    printf "$format" "$n" "$target" "$rate" "$snnc" "$ratio"
  done
done
