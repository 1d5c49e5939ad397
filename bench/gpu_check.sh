#!/usr/bin/env bash
# One check of a GPU machine, planned to fit 8 minutes, without network (see docs/bench.md):
#   bash bench/gpu_check.sh --plan                      # the steps, their budgets, the total; runs nothing
#   bash bench/gpu_check.sh --out "$OUT"                # on the GPU machine
#   bash bench/gpu_check.sh --device cpu --out DIR      # the same plan on tiny models (CI)
#   options: --only ID,... --skip ID,... --step-timeout S|ID=S,... --work DIR
# The interpreter is explicit, never "the first python3 on PATH": $PYTHON if set, else this
# checkout's .venv/bin/python if there is one, else python3 (on a GPU image, the one with torch).
# Everything else (steps, timeouts, wheels from .whl/, results) is bench/gpu_check.py.
set -u
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python="$(command -v python3)"; fi
fi
if [ -z "$python" ] || [ ! -x "$python" ]; then
    echo "gpu_check.sh: no Python interpreter (set PYTHON=/path/to/python)" >&2
    exit 3
fi
case " $* " in *" -h "*|*" --help "*) sed -n '2,9p' "$0" ;; esac
exec "$python" "$repo/bench/gpu_check.py" "$@"
