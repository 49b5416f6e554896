#!/usr/bin/env bash
# Creates benches/peers/.venv with CPU PyTorch and snnTorch from PyPI (about 5.5 GB: the
# PyPI torch wheel brings CUDA libraries along, but runs on the CPU here).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --quiet torch snntorch numpy
.venv/bin/python -c "import torch, snntorch; print('torch', torch.__version__, 'snntorch', snntorch.__version__)"
