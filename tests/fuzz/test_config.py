"""Malformed configs through ``paretohqd run``: one line naming the file and key, exit 3.

Almost every mistake is refused when the config loads (nothing runs, no manifest); what only
the stage that uses it can judge (a scorer kind, a plug-in) fails that stage in one line, with
the stages before it complete and the failing one not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzzkit import Case, check, config, jsonl

DATA = {"d.jsonl": jsonl()}
TWO = (
    '[[objectives]]\nname = "a"\nscorer = "heuristic"\noptions = { metric = "verbosity" }\n'
    '[[objectives]]\nname = "b"\nscorer = "heuristic"\noptions = { metric = "repetition" }\n'
)


def _bad(id_: str, tables: str, *says: str, note: str = "", **kw: object) -> Case:
    """A config whose ``tables`` hold one mistake; refused at load, so nothing runs."""
    return Case(id_, DATA, config(objective=False, tables=tables), says=says, note=note, **kw)


def _scorer(id_: str, objective: str, *says: str, note: str = "") -> Case:
    """An objective the score stage refuses when it builds its scorers: ingest completes."""
    return Case(
        id_,
        DATA,
        config(objective=False, tables=f'[[objectives]]\nname = "a"\n{objective}\n'),
        args=("run", "--until", "score"),
        says=says,
        missing=("score",),
        complete=("ingest",),
        note=note,
    )


def _device(id_: str, tables: str, key: str) -> Case:
    return _bad(
        id_,
        tables,
        key,
        "is not a device",
        "auto, cpu, cuda, cuda:N",
        "mps",
        note="accepted at load; failed (or ran on the CPU) later",
    )


CASES = [
    Case(
        "toml-syntax-error",
        DATA,
        config() + "\n[select\nk = 1\n",
        says=("paretohqd.toml", "not valid TOML", "line 13"),
    ),
    Case(
        "config-not-utf8",
        DATA,
        b'[run]\nname = "\xff\xfe"\n',
        says=("paretohqd.toml", "not UTF-8"),
        note="UnicodeDecodeError traceback",
    ),
    Case(
        "config-is-a-directory",
        {"cfg": None},
        None,
        args=("run", "-c", "{dir}/cfg"),
        says=("is a directory",),
        note="IsADirectoryError traceback",
    ),
    Case(
        "config-does-not-exist",
        {},
        None,
        args=("run", "-c", "{dir}/nope.toml"),
        says=("nope.toml", "not found"),
    ),
    Case("config-empty", {}, "", says=("missing required key `ingest`",)),
    _bad("unknown-table", "[bogus]\nx = 1\n", "unknown key `bogus`", "accepted keys here"),
    _bad("unknown-key", "[select]\nkk = 1\n", "unknown key `select.kk`", "pool_factor"),
    Case(
        "unknown-source-key",
        DATA,
        config(source='colums = { prompt = "q" }'),
        says=("unknown key `ingest.sources.0.colums`",),
    ),
    _bad("text-for-int", '[select]\nk = "ten"\n', "`select.k`", "valid integer", "'ten'"),
    _bad("bool-for-int", "[select]\nk = true\n", "`select.k`", "boolean"),
    _bad("bool-for-float", "[select]\npool_factor = false\n", "`select.pool_factor`", "boolean"),
    Case("list-for-table", DATA, "select = [1, 2]\n" + config(), says=("`select`",)),
    _bad("negative-k", "[select]\nk = -3\n", "`select.k`", "greater than or equal to 1"),
    _bad("zero-part-size", "[score]\npart_size = 0\n", "`score.part_size`"),
    _bad("zero-sft-steps", "[sft]\nsteps = 0\n", "`sft.steps`"),
    _bad(
        "no-lora-target-modules",
        "[sft]\ntarget_modules = []\n",
        "`sft.target_modules`",
        "at least 1 item",
        note="accepted; peft's NoMatchingPeftModuleError traceback when SFT started",
    ),
    Case(
        "negative-source-limit",
        DATA,
        config(source="limit = -1"),
        says=("`ingest.sources.0.limit`",),
    ),
    _bad("heldout-fraction-one", "[ingest]\nheldout_fraction = 1.0\n", "heldout_fraction"),
    Case(
        "no-sources",
        DATA,
        '[run]\nname = "t"\n[ingest]\nsources = []\n',
        says=("`ingest.sources`", "at least 1 item"),
    ),
    Case(
        "sources-not-a-list",
        DATA,
        '[ingest]\nsources = "d.jsonl"\n',
        says=("`ingest.sources`", "valid list"),
    ),
    Case(
        "unknown-source-kind",
        DATA,
        config(kind="xml"),
        says=("`ingest.sources.0.kind`", "'hh-rlhf'"),
    ),
    Case(
        "unknown-column-mapping",
        DATA,
        config(source='columns = { question = "q" }'),
        says=("unknown column mapping key(s) question",),
    ),
    _bad("token-filter-without-tokenizer", "[ingest]\nmax_tokens = 5\n", "`tokenizer`"),
    Case(
        "run-name-dot-dot",
        DATA,
        config().replace('name = "t"', 'name = ".."'),
        says=("`run.name`", "would leave run.root"),
    ),
    Case(
        "run-name-with-slash",
        DATA,
        config().replace('name = "t"', 'name = "a/b"'),
        says=("`run.name`", "'a/b'"),
    ),
    Case("run-name-empty", DATA, config().replace('name = "t"', 'name = ""'), says=("`run.name`",)),
    _bad(
        "duplicate-objective",
        TWO.replace('name = "b"', 'name = "a"'),
        "repeated: a",
        note="message began `<top level>`: Value error,",
    ),
    _bad(
        "objective-name-with-space",
        TWO.replace('name = "b"', 'name = "b c"'),
        "`objectives.1.name`",
    ),
    _bad(
        "pareto-unknown-objective",
        TWO + '[pareto]\nobjectives = ["zz"]\n',
        "pareto.objectives names 'zz'",
        "defined: a, b",
    ),
    _bad(
        "bounds-unknown-objective",
        TWO + "[evaluate]\nbounds = { zz = [0, 1] }\n",
        "evaluate.bounds names 'zz'",
    ),
    _bad(
        "bounds-min-above-max",
        TWO + "[evaluate]\nbounds = { a = [1, 0] }\n",
        "evaluate.bounds.a",
        "min must be < max",
    ),
    _bad(
        "head-not-declared",
        '[[objectives]]\nname = "a"\nscorer = "embedding-head"\nmodel = "run:reward_heads/zz"\n',
        "objectives[0].model",
        "no [[reward_heads]] named 'zz'",
    ),
    _bad(
        "grid-wrong-length",
        TWO + "[select]\ngrid = [[0.5, 0.3, 0.2]]\n",
        "select.grid[0]",
        "3 weights",
        note="refused only at select, after score and pareto ran",
    ),
    _bad(
        "grid-negative-weight",
        TWO + "[select]\ngrid = [[1.5, -0.5]]\n",
        "select.grid[0]",
        "non-negative",
        note="refused only at select",
    ),
    _bad(
        "grid-sums-to-zero",
        TWO + "[select]\ngrid = [[0.0, 0.0]]\n",
        "select.grid[0]",
        "sum",
        note="refused only at select",
    ),
    _bad(
        "grid-empty",
        TWO + "[select]\ngrid = []\n",
        "select.grid is empty",
        note="refused only at select",
    ),
    _bad(
        "grid-ric13-for-two",
        TWO + '[select]\ngrid = "ric13"\n',
        "ric13",
        "there are 2",
        note="refused only at select",
    ),
    _bad(
        "grid-step-not-a-divisor",
        TWO + "[select]\nstep = 0.3\n",
        "select.step = 0.3",
        note="refused only at select",
    ),
    _bad(
        "grid-unknown-name",
        TWO + '[select]\ngrid = "cube"\n',
        "`select.grid`: Input should be 'simplex' or 'ric13' (got 'cube')",
        note="two lines, keyed `select.grid.literal['simplex','ric13']` and `...list[list[float]]`",
    ),
    _bad(
        "grid-vector-of-text",
        TWO + '[select]\ngrid = [[0.5, "half"]]\n',
        "`select.grid.0.1`",
        "valid number",
        note="two lines, one per branch of the grid's type",
    ),
    _bad(
        "two-policy-sources",
        '[policy]\nmodel = "m"\nllama2c = { checkpoint = "a", tokenizer = "b" }\n',
        "exactly one of policy.model",
    ),
    _device("policy-device-gpu0", '[policy]\nmodel = "m"\ndevice = "gpu0"\n', "`policy.device`"),
    _device(
        "policy-device-cuda-x", '[policy]\nmodel = "m"\ndevice = "cuda:x"\n', "`policy.device`"
    ),
    _device("policy-device-tpu", '[policy]\nmodel = "m"\ndevice = "tpu"\n', "`policy.device`"),
    _device(
        "classifier-device-tpu",
        '[[objectives]]\nname = "a"\nscorer = "hf-classifier"\n'
        'model = "x"\noptions = { device = "tpu" }\n',
        "objectives[0].options.device",
    ),
    _device(
        "head-device-negative-index",
        '[[objectives]]\nname = "a"\nscorer = "heuristic"\n'
        'options = { metric = "verbosity", device = "cuda:-1" }\n',
        "objectives[0].options.device",
    ),
    _bad("method-negative-beta", "[modpo]\nbeta = -1\n", "`modpo.beta`"),
    _bad("method-unknown-key", "[raco]\nbeta2 = 1\n", "unknown key `raco.beta2`"),
    _scorer(
        "unknown-scorer-kind",
        'scorer = "bogus"',
        "objective 'a'",
        "scorer 'bogus'",
        "module:callable",
    ),
    _scorer(
        "unknown-heuristic-metric",
        'scorer = "heuristic"\noptions = { metric = "nope" }',
        "objective 'a'",
        "option 'metric'",
        "'conciseness'",
    ),
    _scorer(
        "unknown-scorer-option",
        'scorer = "heuristic"\noptions = { metric = "verbosity", metrik = 1 }',
        "objective 'a'",
        "unknown option 'metrik'",
    ),
    _scorer(
        "column-scorer-with-model",
        'scorer = "column"\nmodel = "m"\noptions = { column = "v" }',
        "objective 'a'",
        "takes no model",
    ),
    _scorer("plugin-os-system", 'scorer = "os:system"', "'os:system'", "standard library"),
    _scorer("plugin-builtins-eval", 'scorer = "builtins:eval"', "'builtins:eval'"),
    _scorer(
        "plugin-not-importable",
        'scorer = "no_such_module_x:f"',
        "cannot import",
        "'no_such_module_x'",
    ),
    _scorer("plugin-constant", 'scorer = "math:pi"', "'math:pi'"),
    Case(
        "no-objectives-until-score",
        DATA,
        config(objective=False),
        args=("run", "--until", "score"),
        says=("no stage named 'score'", "stages: ingest"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_config(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


def test_config_refusals_run_nothing(tmp_path: Path) -> None:
    """A grid refused when the graph is built leaves no trace: no stage ran."""
    case = _bad("grid-wrong-length", TWO + "[select]\ngrid = [[0.5, 0.3, 0.2]]\n", "3 weights")
    check(case, tmp_path)
    assert not (tmp_path / "runs" / "t" / "manifest.json").exists()
