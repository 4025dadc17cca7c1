#!/usr/bin/env bash
# The GPU checks (tests/gpu, marker `gpu`) in one command, on any Python that has a CUDA torch:
# `just test-gpu` runs it with .venv's Python; on the workplace's device machine it is the one
# command to give the device tool:
#
#     bash scripts/gpu-wheels.sh                              # here, once: fills .whl/ (~3 MB)
#     device run: command "bash scripts/gpu-check.sh", carry [".whl"], timeout_s 540
#
# What it does: installs the carried wheels the Python lacks (or has older), installs the project
# (`pip install --no-deps -e .`, offline; symlinks on PYTHONPATH if pip cannot), checks that the
# checks' imports load, fails (exit 2) when torch sees no CUDA device, then runs
# `pytest -m gpu tests/gpu -s` (extra arguments go to pytest). Figures are printed, summed up at
# the end, and written to gpu-figures.json beside gpu-check.log in $PARETOHQD_GPU_REPORT_DIR,
# else $OUT (the device tool brings that folder back), else runs/gpu-check/.
#
# Constraints found for the device machine (the tool library's device README and KINDS.md, read
# 2026-11; no GPU was lent to the session that wrote this, so it has not run there yet):
# - It starts bare and reaches no network: no pip index, no model hub. Everything comes from the
#   repo copy (the stories260K checkpoint in data/ is converted on the spot) and carried files.
# - What travels (tracked and untracked-not-ignored files plus `carry` paths) is capped at
#   64 MiB; the repo is ~5 MB. A venv with torch cannot travel, so the image's own `python3`
#   (Python 3.12, /opt/torch/.venv) is used: it has a CUDA torch, transformers, peft,
#   safetensors, numpy, pyarrow, matplotlib, tqdm, pyyaml, rich, typer, numba and pytest (with
#   pytest-timeout). It lacks pydantic (the hf-classifier scorer's options), polars, duckdb,
#   moocore and tomli-w; the checks need only pydantic of those (the training loop writes its
#   log with pyarrow), so scripts/gpu-wheels.sh downloads pydantic and its own needs as
#   cp312 manylinux wheels into .whl/ (git-ignored), and `carry` brings them.
# - vLLM is not in the image, and its CUDA wheel (hundreds of MB) cannot travel, so the vLLM
#   checks skip there with the reason; they run wherever a CUDA build of vllm is installed.
# - One command may run 10 minutes, and a session has 15 minutes of device time in all (machine
#   start included), so the checks are sized to a few minutes on one GPU; PARETOHQD_GPU_MODEL
#   (a larger local model directory) adds its own minutes.
# - At most 8 files come back from $OUT: this writes two.
#
# Environment: PYTHON (default python3), GPU_WHEELS (default .whl), PARETOHQD_GPU_REPORT_DIR,
# PARETOHQD_GPU_MODEL, PARETOHQD_GPU_DRY_RUN=1 (run on the CPU to test the checks themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

py=${PYTHON:-python3}
wheels=${GPU_WHEELS:-.whl}
report=${PARETOHQD_GPU_REPORT_DIR:-${OUT:-runs/gpu-check}}
export PARETOHQD_GPU_REPORT_DIR=$report
scratch=${TMPDIR:-/tmp}
say() { echo "gpu-check: $*" >&2; }

if ! "$py" -c 'import torch' 2>/dev/null; then
    say "$py cannot import torch; set PYTHON to a Python with a CUDA build of torch"
    exit 2
fi

# 1. Carried wheels whose distribution this Python lacks, or has in an older version.
if compgen -G "$wheels/*.whl" >/dev/null; then
    mapfile -t need < <("$py" - "$wheels" <<'EOF'
import sys
from importlib import metadata
from pathlib import Path

def key(version):
    try:
        from packaging.version import Version
        return Version(version)
    except ImportError:  # no packaging: install what is missing, keep what is there
        return None

for wheel in sorted(Path(sys.argv[1]).glob("*.whl")):
    dist, version = wheel.name.split("-")[:2]
    try:
        have = metadata.version(dist)
    except metadata.PackageNotFoundError:
        print(wheel)
        continue
    if key(have) is not None and key(have) < key(version):
        print(wheel)
EOF
    )
    if ((${#need[@]})); then
        say "installing ${need[*]##*/} into $scratch/paretohqd-site"
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$scratch/paretohqd-site" "${need[@]}"
        export PYTHONPATH="$scratch/paretohqd-site${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi

# 2. The project, offline and without its dependencies (the image has its own torch stack).
if ! "$py" -c 'import paretohqd' 2>/dev/null; then
    say "installing paretohqd (pip install --no-deps -e .)"
    log=$scratch/paretohqd-pip.log
    if ! "$py" -m pip install -q --no-index --no-deps --no-build-isolation -e . >"$log" 2>&1; then
        # pip's packages map paretohqd -> pipeline/, paretohqd.stages -> stages/, and
        # paretohqd.sql -> sql/; symlinks give the same layout
        say "pip could not install it (see $log); putting symlinks on PYTHONPATH instead"
        shim=$scratch/paretohqd-src
        rm -rf "$shim" && mkdir -p "$shim/paretohqd"
        for f in pipeline/*; do ln -s "$PWD/$f" "$shim/paretohqd/"; done
        ln -s "$PWD/stages" "$shim/paretohqd/stages"
        ln -s "$PWD/sql" "$shim/paretohqd/sql"
        export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi

# 3. Everything the checks import, named when missing.
"$py" - <<'EOF'
import importlib
import sys

missing = []
for name in (
    "pytest", "numpy", "pyarrow", "matplotlib", "safetensors", "transformers", "peft",
    "pydantic", "paretohqd.stages.kit.training.sft", "paretohqd.stages.kit.policy.generate",
    "paretohqd.stages.kit.policy.llama2c", "paretohqd.stages.kit.scoring.hf_classifier",
):
    try:
        importlib.import_module(name)
    except ImportError as exc:
        missing.append(f"{name} ({exc})")
if missing:
    sys.exit(
        "gpu-check: cannot import " + "; ".join(missing) + ". Carry the wheels: run "
        "`bash scripts/gpu-wheels.sh` here and name .whl in the device tool's carry"
    )
EOF

# 4. A CUDA device, or a clear failure (never a run of skips that looks like a pass).
if [[ -z "${PARETOHQD_GPU_DRY_RUN:-}" || "${PARETOHQD_GPU_DRY_RUN}" == 0 ]]; then
    if ! "$py" - <<'EOF'
import sys

import torch

if not torch.cuda.is_available():
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    sys.exit(
        f"gpu-check: torch {torch.__version__} ({build}) sees no CUDA device, so the GPU "
        "checks cannot run here. On a GPU machine, install a CUDA build of torch into this "
        "Python (`just setup` installs the CPU build into .venv)."
    )
print(f"gpu-check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
    then
        exit 2
    fi
fi

# 5. The checks; the log and the figures land in the report folder.
mkdir -p "$report"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
set +e
"$py" -m pytest -m gpu tests/gpu -s -p no:cacheprovider "$@" 2>&1 | tee "$report/gpu-check.log"
status=${PIPESTATUS[0]}
set -e
say "pytest exited $status; figures in $report/gpu-figures.json"
exit "$status"
