#!/usr/bin/env bash
# One check of a GPU machine, in under 6 minutes, without network:
#   bash bench/gpu_check.sh [--device cpu|cuda] [--out DIR] [--budget SECONDS]
# Runs pytest tests/gpu, `opsconsole status --json` on the real NVML, the NVML sampling cost,
# gemma-infer (gemma-2-2b, random weights, bf16: eager / flex_attention / eager+compile) against the
# HBM-bandwidth ceiling, sd-infer (SD 1.5 random, 512x512 fp16, plain / compiled),
# gemma-lora and sd-lora for 20 steps, and nccl-check. Every step has a timeout; a failed
# step is recorded, not fatal. Writes results.json, summary.md and gpu_check.log to DIR
# (default: $OUT). With --device cpu the same steps run on tiny models (CI runs this).
#
# Python packages missing on the machine (textual, diffusers, ...) travel as wheels in
# .whl/ at the repository root; they are installed offline into a private --target dir.
set -u -o pipefail

device=cuda
out="${OUT:-}"
budget=345
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="${2:?--device needs cpu or cuda}"; shift 2 ;;
        --device=*) device="${1#--device=}"; shift ;;
        --out) out="${2:?--out needs a directory}"; shift 2 ;;
        --out=*) out="${1#--out=}"; shift ;;
        --budget) budget="${2:?--budget needs seconds}"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument: $1 (see --help)" >&2; exit 3 ;;
    esac
done
case "$device" in cpu|cuda) ;; *) echo "gpu_check.sh: --device must be cpu or cuda (got $device)" >&2; exit 3 ;; esac
if [ -z "$out" ]; then
    echo "gpu_check.sh: no output directory: pass --out DIR or set \$OUT" >&2
    exit 3
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if [ -x "$repo/.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then
    python="$repo/.venv/bin/python"
fi
mkdir -p "$out" || exit 3

# Carried wheels: install offline (no index, no deps) into a private dir on PYTHONPATH.
if compgen -G "$repo/.whl/*.whl" > /dev/null; then
    site="${TMPDIR:-/tmp}/opsconsole-gpu-check-site"
    if "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" "$repo"/.whl/*.whl; then
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    else  # e.g. wheels for another Python: go on with what is installed; the steps say what is missing
        echo "gpu_check.sh: warning: the wheels in .whl/ did not install into $site; continuing without them" >&2
    fi
fi
# opsconsole itself: the checkout, whether or not it is installed.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# No network on a GPU box: never try the Hugging Face Hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

cd "$repo" || exit 3
exec "$python" bench/gpu_check.py --device "$device" --out "$out" --budget "$budget"
