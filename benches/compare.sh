#!/usr/bin/env bash
# Runs every peer configuration (snnTorch eager and torch.compile, plain JAX, Spyx; each plain
# and hoisted) and snnc back to back on this machine with 2 threads, and prints training
# samples/s, peak RSS, the ratio snnc/peer per row and, per model, snnc against the fastest
# peer. Needs the peer venv (benches/peers/setup.sh) and MNIST in $SNNC_MNIST_DIR.
#   bash benches/compare.sh [batches]        (SNNC_BACKEND picks snnc's back end, default jit)
#   PEERS="jax spyx" bash benches/compare.sh (only the peers named: snntorch jax spyx)
# Run it on an otherwise idle machine: with 2 threads on 2 cores, anything else running makes
# the OpenMP peers (snnTorch) wait at every parallel region, and their rate collapses.
set -euo pipefail
cd "$(dirname "$0")/.."
batches="${1:-30}"
: "${SNNC_MNIST_DIR:?set SNNC_MNIST_DIR to the MNIST folder}"
peers="${PEERS:-snntorch jax spyx}"
py=benches/peers/.venv/bin/python
[ -x "$py" ] || { echo "run benches/peers/setup.sh first" >&2; exit 1; }
cargo build --release --quiet
samples=$(( batches * 128 ))
logs=$(mktemp -d)  # each peer's stderr, kept for the rows that fail

snnc_rate() { # model -> "samples/s rss_mib"
  local log out rss rate
  log=$(mktemp) out=$(mktemp -d)
  /usr/bin/time -v ./target/release/snnc run "$1" --backend "${SNNC_BACKEND:-jit}" --threads 2 --epochs 1 --limit-train "$samples" --limit-test 128 --out "$out" >"$log" 2>&1
  rate=$(awk '$1 == "1" && $2 == "main" { for (i = 1; i <= NF; i++) if ($i ~ /%$/) last = i; print $(last + 1) }' "$log")
  rss=$(awk -F: '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$log")
  rm -r "$log" "$out"
  echo "$rate $rss"
}

# One row per peer configuration: "peer<TAB>label<TAB>script and arguments". Hoisting is the
# input projection once per sample (tutorial 5: the input is constant over time) or once for
# all steps as one product (lab: fresh Bernoulli spikes each step).
peer_rows() {
  cat <<'EOF'
snntorch	snntorch eager	snntorch_peer.py
snntorch	snntorch eager hoisted	snntorch_peer.py --hoist
snntorch	snntorch compile	snntorch_peer.py --compile
snntorch	snntorch compile hoisted	snntorch_peer.py --compile --hoist
jax	jax scan	jax_peer.py
jax	jax scan hoisted	jax_peer.py --hoist
jax	jax unrolled	jax_peer.py --unroll full
jax	jax unrolled hoisted	jax_peer.py --unroll full --hoist
spyx	spyx unrolled	spyx_peer.py --unroll full
spyx	spyx unrolled hoisted	spyx_peer.py --unroll full --hoist
EOF
}

format='%-10s %-25s %10s %8s %9s %10s %8s %8s\n'
printf "$format" config peer "peer s/s" "RSS MiB" compile "snnc s/s" "RSS MiB" snnc/peer
summary=() failures=()
for config in tutorial5 lab; do
  case $config in
    tutorial5) model=models/snntorch_tutorial5.snn ;;
    lab) model=models/lab_lif_mnist.snn ;;
  esac
  read -r snnc_rate snnc_rss < <(snnc_rate "$model")
  best_rate=0 best_label=none
  while IFS=$'\t' read -r peer label command; do
    [[ " $peers " == *" $peer "* ]] || continue
    errors="$logs/$config-${label// /-}.log"
    # shellcheck disable=SC2086 # the arguments are meant to split
    if line=$($py benches/peers/$command "$config" --batches "$batches" 2>"$errors"); then
      rate=$(echo "$line" | sed -E 's/.*: ([0-9]+) training.*/\1/')
      rss=$(echo "$line" | sed -E 's/.*peak RSS ([0-9]+) MiB.*/\1/')
      compile=$(echo "$line" | sed -E 's/.*compile ([0-9.]+) s.*/\1/')
      ratio=$(awk -v a="$snnc_rate" -v b="$rate" 'BEGIN { printf "%.2fx", a / b }')
      if (( rate > best_rate )); then best_rate=$rate best_label=$label; fi
      printf "$format" "$config" "$label" "$rate" "$rss" "${compile} s" "$snnc_rate" "$snnc_rss" "$ratio"
    else
      printf "$format" "$config" "$label" failed - - "$snnc_rate" "$snnc_rss" -
      failures+=("$label ($config): see $errors")
    fi
  done < <(peer_rows)
  if (( best_rate > 0 )); then
    summary+=("$(awk -v c="$config" -v a="$snnc_rate" -v b="$best_rate" -v l="$best_label" \
      'BEGIN { printf "%-10s snnc %s s/s against the fastest peer, %s at %s s/s: %.2fx", c, a, l, b, a / b }')")
  fi
done
echo
if (( ${#summary[@]} )); then printf '%s\n' "${summary[@]}"; fi
if (( ${#failures[@]} )); then printf 'failed: %s\n' "${failures[@]}"; else rm -r "$logs"; fi
