#!/usr/bin/env bash
# The wheels the GPU checks need beyond the device machine's image, for scripts/gpu-check.sh:
# pydantic and its own needs (the image has the torch stack, pyarrow and pytest, not pydantic),
# at the versions this checkout's .venv has (pydantic-core must be pydantic's own pin), as
# manylinux x86-64 wheels for the image's Python (3.12), into .whl/ (git-ignored; ~3 MB).
# Run it here, where pip reaches the package index; the device tool's `carry` takes .whl along.
#
#     bash scripts/gpu-wheels.sh [DEST]     # GPU_PYTHON_VERSION=3.12, PYTHON=.venv/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.whl}
py=${PYTHON:-.venv/bin/python}
pyver=${GPU_PYTHON_VERSION:-3.12}

mapfile -t pins < <("$py" - <<'EOF'
from importlib import metadata

for dist in ("pydantic", "pydantic-core", "annotated-types", "typing-inspection",
             "typing-extensions"):
    print(f"{dist}=={metadata.version(dist)}")
EOF
)
rm -rf "$dest" && mkdir -p "$dest"
platforms=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${p}_x86_64")
done
# pip warns once per package about this machine's file:// indexes; keep real errors only
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
    --implementation cp "${platforms[@]}" -d "$dest" "${pins[@]}" \
    2> >(grep -v "is ignored: it is neither" >&2)
ls -1 "$dest"
du -sh "$dest"
