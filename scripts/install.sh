#!/usr/bin/env bash
# Install the project into the current Python environment.
#   bash scripts/install.sh               train, sample and evaluate (adds the train extra: Lightning)
#   bash scripts/install.sh inference     sample and evaluate only: no Lightning
#   bash scripts/install.sh test          the train install + test tools
#   bash scripts/install.sh test,gpu      any extras of pyproject.toml, comma separated
#   bash scripts/install.sh inference,test  extras without the train one
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
extras=()
train=1
IFS=',' read -r -a asked <<< "${1:-}"
for extra in "${asked[@]}"; do
    case "$extra" in
        "") ;;
        inference) train=0 ;;
        *) extras+=("$extra") ;;
    esac
done
[ "$train" = 1 ] && extras=(train "${extras[@]}")
target="."
if [ "${#extras[@]}" -gt 0 ]; then
    target=".[$(IFS=,; echo "${extras[*]}")]"
fi
"$PY" -m pip install -q -e "$target"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
