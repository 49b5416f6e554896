#!/usr/bin/env bash
# Runs the same configurations in snnTorch and in snnc back to back on this machine with 2
# threads and prints training samples/s, peak RSS and the ratio. Needs the peer venv
# (benches/peers/setup.sh) and MNIST in $SNNC_MNIST_DIR.
#   bash benches/compare.sh [batches]      (SNNC_BACKEND=batched to measure the batched back end)
set -euo pipefail
cd "$(dirname "$0")/.."
batches="${1:-30}"
: "${SNNC_MNIST_DIR:?set SNNC_MNIST_DIR to the MNIST folder}"
py=benches/peers/.venv/bin/python
[ -x "$py" ] || { echo "run benches/peers/setup.sh first" >&2; exit 1; }
cargo build --release --quiet
samples=$(( batches * 128 ))

snnc_rate() { # model -> "samples/s rss_mib"
  local log rss rate
  log=$(mktemp)
  /usr/bin/time -v ./target/release/snnc run "$1" --backend "${SNNC_BACKEND:-jit}" --threads 2 --epochs 1 --limit-train "$samples" --limit-test 128 --out "$(mktemp -d)" >"$log" 2>&1
  rate=$(awk '$1 == "1" && $2 == "main" { for (i = 1; i <= NF; i++) if ($i ~ /%$/) last = i; print $(last + 1) }' "$log")
  rss=$(awk -F: '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$log")
  echo "$rate $rss"
}

printf '%-22s %14s %10s %14s %10s %8s\n' config "snnTorch s/s" "RSS MiB" "snnc s/s" "RSS MiB" ratio
for config in tutorial5 tutorial5-hoisted lab; do
  case $config in
    tutorial5) peer=$($py benches/peers/snntorch_peer.py tutorial5 --batches "$batches"); model=models/snntorch_tutorial5.snn ;;
    tutorial5-hoisted) peer=$($py benches/peers/snntorch_peer.py tutorial5 --hoist --batches "$batches"); model=models/snntorch_tutorial5.snn ;;
    lab) peer=$($py benches/peers/snntorch_peer.py lab --batches "$batches"); model=models/lab_lif_mnist.snn ;;
  esac
  peer_rate=$(echo "$peer" | sed -E 's/.*: ([0-9]+) training.*/\1/')
  peer_rss=$(echo "$peer" | sed -E 's/.*peak RSS ([0-9]+) MiB/\1/')
  read -r snnc_rate snnc_rss < <(snnc_rate "$model")
  ratio=$(awk -v a="$snnc_rate" -v b="$peer_rate" 'BEGIN { printf "%.2f", a / b }')
  printf '%-22s %14s %10s %14s %10s %8s\n' "$config" "$peer_rate" "$peer_rss" "$snnc_rate" "$snnc_rss" "${ratio}x"
done
