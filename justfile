# paretohqd task runner. First use of any recipe creates .venv and installs the project
# (CPU torch pinned: an unpinned torch would pull a multi-GB CUDA build).

set shell := ["bash", "-euo", "pipefail", "-c"]

python := env_var_or_default("PYTHON", "python3")
venv := ".venv"
bin := venv + "/bin"
torch_cpu := "torch==2.13.0"

export HF_HUB_OFFLINE := "1"
export TRANSFORMERS_OFFLINE := "1"
export TOKENIZERS_PARALLELISM := "false"

# list recipes
default:
    @just --list

# create .venv and install the project with dev extras (only when pyproject.toml changed)
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    stamp={{venv}}/.installed
    if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then exit 0; fi
    {{python}} -c 'import sys; assert sys.version_info >= (3, 11), "paretohqd needs Python 3.11+"'
    [ -x {{bin}}/python ] || {{python}} -m venv {{venv}}
    {{bin}}/python -m pip install -q --upgrade pip
    {{bin}}/python -m pip install -q "{{torch_cpu}}"
    {{bin}}/python -m pip install -q -e ".[dev]"
    touch "$stamp"

# run the whole pipeline on the bundled data (CPU, minutes); a second run skips every stage
demo: setup
    {{bin}}/paretohqd run
    {{bin}}/paretohqd plot selection
    {{bin}}/paretohqd plot selection --round 2
    {{bin}}/paretohqd sql "select pref_id, count(*) as rows, avg(distance) as distance from shards group by 1 order by 1"
    {{bin}}/paretohqd summary

# the test suite (fast; slow/gpu/vllm checks are behind markers)
test *ARGS: setup
    {{bin}}/python -m pytest {{ARGS}}

# the slow checks too
test-slow *ARGS: setup
    {{bin}}/python -m pytest -m "not gpu and not vllm" {{ARGS}}

# ruff (lint + format check) and mypy on the engine and stages
lint: setup
    {{bin}}/ruff check .
    {{bin}}/ruff format --check .
    {{bin}}/mypy pipeline stages

# benchmarks against the libraries a user would otherwise pick (prints ratios)
bench: setup
    {{bin}}/python benchmarks/bench_pareto.py
    {{bin}}/python benchmarks/bench_score.py

# remove runs, caches and the virtual environment
clean:
    rm -rf runs .pytest_cache .ruff_cache .mypy_cache .hypothesis {{venv}}
    find . -name __pycache__ -type d -prune -exec rm -rf {} +
