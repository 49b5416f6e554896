#!/usr/bin/env bash
# Creates (or brings up to date) benches/peers/.venv with the peers' packages from PyPI, as
# pinned in requirements.txt: torch + snnTorch, JAX (CPU) + optax + Spyx. About 6 GB: the
# PyPI torch wheel brings the CUDA libraries along, but runs on the CPU here.
# Idempotent: a venv already installed from the same requirements.txt is left as it is.
#   bash benches/peers/setup.sh          (PYTHON=/path/to/python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# The stamp is written only after a complete install, so an interrupted one is redone.
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
  echo "$want" > "$stamp"
fi
.venv/bin/python - <<'PY'
import sys
import flax, jax, optax, snntorch, spyx, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, snntorch {snntorch.__version__}, "
      f"jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}, spyx {spyx.__version__}")
PY
