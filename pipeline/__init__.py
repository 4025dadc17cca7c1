"""paretohqd: a staged, inspectable pipeline for multi-objective LLM alignment.

The engine (config, stage registry, runner, fingerprints, artifact IO, DuckDB catalog, CLI)
lives in this package; the stages live in :mod:`paretohqd.stages`. Nothing here imports torch,
so ``paretohqd --help`` stays instant.
"""

__version__ = "0.1.0"
