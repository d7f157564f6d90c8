#!/usr/bin/env bash
# Install the project into the current Python environment.
#   bash scripts/install.sh            runtime only
#   bash scripts/install.sh test       runtime + test tools
#   bash scripts/install.sh test,gpu   any extras of pyproject.toml, comma separated
# An existing torch (CPU or CUDA build) is kept; otherwise the pinned CPU/CUDA
# wheel torch==2.13.0 is installed, never an unpinned torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if "$PY" -c "import torch" 2>/dev/null; then
    echo "install: reusing torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
    "$PY" -m pip install -q "torch==2.13.0"
fi
extras=${1:-}
target="."
[ -n "$extras" ] && target=".[$extras]"
"$PY" -m pip install -q -e "$target"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
