#!/usr/bin/env bash
# Creates (or brings up to date) the peers' venvs with their packages from PyPI:
# - .venv, as pinned in requirements.txt: torch + snnTorch, JAX (CPU) + optax + Spyx. About
#   6 GB: the PyPI torch wheel brings the CUDA libraries along, but runs on the CPU here.
# - .venv-brian2, as pinned in requirements-brian2.txt: Brian2 (diehl_cook_brian2.py), in a
#   venv of its own because Brian 2.9.0 does not run with the NumPy 2.4 of .venv. About 150 MB.
# - .venv-bindsnet, as pinned in requirements-bindsnet.txt: BindsNET 0.3.4 + torch
#   (diehl_cook_bindsnet.py), in a venv of its own for BindsNET's requirements (pandas 3,
#   gymnasium[atari], opencv, ...). About 6 GB, the CUDA libraries again; CPython 3.11 to 3.13.
# Idempotent: a venv already installed from the same requirements file is left as it is.
#   bash benches/peers/setup.sh [main|brian2|bindsnet]   (default all three;
#       PYTHON=/path/to/python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
which="${1:-all}"

setup_venv() { # venv folder, requirements file
  local stamp="$1/.requirements.sha256" want
  want=$(sha256sum "$2" | cut -d' ' -f1)
  if [ ! -x "$1/bin/python" ]; then
    "$python" -m venv "$1"
  fi
  # The stamp is written only after a complete install, so an interrupted one is redone.
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$1/bin/python" -m pip install --quiet --upgrade pip
    "$1/bin/python" -m pip install --quiet -r "$2"
    echo "$want" > "$stamp"
  fi
}

if [ "$which" = all ] || [ "$which" = main ]; then
  setup_venv .venv requirements.txt
  .venv/bin/python - <<'PY'
import sys
import flax, jax, optax, snntorch, spyx, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, snntorch {snntorch.__version__}, "
      f"jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}, spyx {spyx.__version__}")
PY
fi
if [ "$which" = all ] || [ "$which" = brian2 ]; then
  setup_venv .venv-brian2 requirements-brian2.txt
  .venv-brian2/bin/python -c 'import sys, brian2, numpy
print(f"python {sys.version.split()[0]}, brian2 {brian2.__version__}, numpy {numpy.__version__}")'
fi
if [ "$which" = all ] || [ "$which" = bindsnet ]; then
  setup_venv .venv-bindsnet requirements-bindsnet.txt
  .venv-bindsnet/bin/python - <<'PY'
import sys
from importlib.metadata import version
import bindsnet, numpy, torch  # bindsnet has no __version__
print(f"python {sys.version.split()[0]}, bindsnet {version('bindsnet')}, torch {torch.__version__}, "
      f"numpy {numpy.__version__}")
PY
fi
