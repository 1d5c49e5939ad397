#!/usr/bin/env bash
# Fetch, here (with PyPI access), the wheels a GPU machine lacks, into .whl/ at the repository root,
# for bench/gpu_check.sh to install offline there. Versions are those of this checkout's venv.
#   bash bench/fetch_wheels.sh            # then carry .whl with the working tree
# The GPU image (Python 3.12, x86-64) already has torch, transformers, accelerate, peft, psutil,
# nvidia-ml-py, rich, pyyaml, pytest and hypothesis; it lacks these:
set -eu -o pipefail
packages=(textual mdit-py-plugins linkify-it-py platformdirs textual-plotext plotext textual-image
          rapidfuzz diffusers)
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
grep -qx '/.whl/' "$repo/.git/info/exclude" 2>/dev/null || echo '/.whl/' >> "$repo/.git/info/exclude"
mkdir -p "$repo/.whl"
pins=()
for name in "${packages[@]}"; do
    version="$("$python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")"
    pins+=("$name==$version")
done
"$python" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$repo/.whl" "${pins[@]}"
ls -la "$repo/.whl"
