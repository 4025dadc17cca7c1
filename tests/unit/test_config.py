"""Config loading: validation messages, overrides, path resolution, the starter template."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from paretohqd.config import config_from_dict, dump_config, load_config, parse_override
from paretohqd.errors import ConfigError

BASE = """
[run]
name = "x"
[[ingest.sources]]
kind = "hh-rlhf"
path = "d.jsonl"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_unknown_key_names_key_file_and_accepted_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace('name = "x"', 'name = "x"\nseeed = 3'))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "run.seeed" in msg and str(path) in msg
    assert "seed" in msg and "threads" in msg  # the accepted keys
    assert "\n" not in msg  # one line


def test_unknown_key_inside_list_of_tables(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + 'colums = {prompt = "q"}\n')
    with pytest.raises(ConfigError, match=r"ingest\.sources\.0\.colums.*columns"):
        load_config(path)


def test_wrong_type_is_reported_with_value(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace('name = "x"', 'name = "x"\nseed = "abc"'))
    with pytest.raises(ConfigError, match=r"`run\.seed`.*'abc'"):
        load_config(path)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[run\n"))


def test_overrides_are_typed(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE)
    cfg = load_config(path, ["run.seed=7", "ingest.sources.0.limit=5", "run.name=other"])
    assert cfg.run.seed == 7 and cfg.ingest.sources[0].limit == 5 and cfg.run.name == "other"
    with pytest.raises(ConfigError, match=r"run\.seed"):
        load_config(path, ["run.seed=notanumber"])
    with pytest.raises(ConfigError, match="index"):
        load_config(path, ["ingest.sources.3.limit=5"])
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(path, ["run.seed"])


def test_parse_override_values() -> None:
    assert parse_override("a.b=1") == (["a", "b"], 1)
    assert parse_override("a=[0.5, 0.5]") == (["a"], [0.5, 0.5])
    assert parse_override("a=hello") == (["a"], "hello")
    assert parse_override('a="1"') == (["a"], "1")


def test_paths_resolve_against_config_dir(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE))
    assert cfg.resolve("d.jsonl") == tmp_path / "d.jsonl"
    assert cfg.run_dir == tmp_path / "runs" / "x"


def test_token_filter_needs_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tokenizer"):
        load_config(
            _write(tmp_path, BASE.replace("[[ingest", "[ingest]\nmax_tokens = 5\n[[ingest"))
        )


def test_dump_round_trips(tmp_path: Path) -> None:
    import tomllib

    cfg = load_config(_write(tmp_path, BASE), ["run.seed=3"])
    again = config_from_dict(tomllib.loads(dump_config(cfg)), base_dir=tmp_path, source="x")
    assert again.model_dump() == cfg.model_dump()


def test_starter_template_is_valid(tmp_path: Path) -> None:
    text = (resources.files("paretohqd") / "templates" / "starter.toml").read_text()
    cfg = load_config(_write(tmp_path, text))
    assert cfg.ingest.sources[0].kind == "hh-rlhf"


def test_method_tables_come_from_their_packages_and_validate_as_strictly(tmp_path: Path) -> None:
    from paretohqd.config import declared_tables

    assert {"modpo", "raco", "pama"} <= set(declared_tables())
    cfg = load_config(_write(tmp_path, BASE + "[modpo]\nbeta = 0.3\n[pama]\n"))
    assert cfg.modpo.beta == 0.3 and cfg.pama.steps == 20 and cfg.raco is None  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"unknown key `modpo\.bta`.*beta"):
        load_config(_write(tmp_path, BASE + "[modpo]\nbta = 0.3\n"))
    with pytest.raises(ConfigError, match=r"`raco\.c`"):
        load_config(_write(tmp_path, BASE + "[raco]\nc = -1\n"))
    with pytest.raises(ConfigError, match=r"unknown key `mopdo`.*modpo"):
        load_config(_write(tmp_path, BASE + "[mopdo]\n"))


def test_a_config_pickles_into_a_fresh_process(tmp_path: Path) -> None:
    """Workers (a Ray executor's, a spawned process) get the config by pickling."""
    import pickle
    import subprocess
    import sys

    cfg = load_config(_write(tmp_path, BASE + "[raco]\nbeta = 0.5\n"))
    blob = tmp_path / "cfg.pkl"
    blob.write_bytes(pickle.dumps(cfg))
    code = (
        "import pickle, sys; c = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "print(c.raco.beta, c.run_dir.name, type(c).__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(blob)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["0.5", "x", "FullConfig"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("run.seed=true", r"`run\.seed`.*expected a number, got the boolean true"),
        ("run.threads=false", r"`run\.threads`.*boolean false"),
        ("run.name=../x", r"`run\.name`.*pattern"),
        ("run.name=/abs", r"`run\.name`.*pattern"),
        ("run.name=..", r"`run\.name`.*would leave run\.root"),
    ],
)
def test_values_that_pydantic_would_coerce_or_paths_that_escape_are_refused(
    tmp_path: Path, override: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(_write(tmp_path, BASE), [override])


def test_evaluate_bounds_are_checked_at_load(tmp_path: Path) -> None:
    objectives = '[[objectives]]\nname = "a"\nscorer = "heuristic"\n[evaluate]\n'
    ok = load_config(_write(tmp_path, BASE + objectives + "bounds = {a = [0, 1]}\n"))
    assert ok.evaluate is not None and ok.evaluate.bounds == {"a": (0.0, 1.0)}
    with pytest.raises(ConfigError, match=r"evaluate\.bounds names 'b'.*defined: a"):
        load_config(_write(tmp_path, BASE + objectives + "bounds = {b = [0, 1]}\n"))
    with pytest.raises(ConfigError, match=r"evaluate\.bounds\.a = \[1\.0, 0\.0\]: min must be"):
        load_config(_write(tmp_path, BASE + objectives + "bounds = {a = [1, 0]}\n"))


@pytest.mark.parametrize("device", ["gpu0", "cuda:x", "tpu", "cuda:", "CPU", "cuda:-1", ""])
def test_a_device_that_is_no_device_is_refused_at_load(tmp_path: Path, device: str) -> None:
    """Every table with a device: the policy's, and a built-in scorer's options."""
    policy = BASE + f'[policy]\nmodel = "m"\ndevice = "{device}"\n'
    scorer = BASE + (
        '[[objectives]]\nname = "h"\nscorer = "hf-classifier"\nmodel = "m"\n'
        f'options = {{ device = "{device}" }}\n'
    )
    for text, key in ((policy, "policy.device"), (scorer, "objectives[0].options.device")):
        with pytest.raises(ConfigError) as err:
            load_config(_write(tmp_path, text))
        msg = str(err.value)
        assert key in msg and repr(device) in msg and "\n" not in msg
        assert "auto, cpu, cuda, cuda:N" in msg and "mps" in msg


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_every_device_form_loads(tmp_path: Path, device: str) -> None:
    text = BASE + f'[policy]\nmodel = "m"\ndevice = "{device}"\n'
    text += '[[objectives]]\nname = "h"\nscorer = "embedding-head"\nmodel = "m"\n'
    text += f'options = {{ device = "{device}" }}\n'
    cfg = load_config(_write(tmp_path, text))
    assert cfg.policy is not None and cfg.policy.device == device


def test_a_plugins_options_are_its_own(tmp_path: Path) -> None:
    """A plug-in scorer may give `device` its own meaning: the config does not judge it."""
    text = (
        BASE + '[[objectives]]\nname = "p"\nscorer = "mypkg:make"\noptions = { device = "tpu" }\n'
    )
    assert load_config(_write(tmp_path, text)).objectives[0].options["device"] == "tpu"


def test_config_files_that_are_not_text_or_not_files(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_bytes(b'[run]\nname = "\xff"\n')
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xff at offset 14\)"):
        load_config(bad)
    with pytest.raises(ConfigError, match="is a directory; pass the TOML file in it"):
        load_config(tmp_path)


def test_a_union_mistake_is_one_line_at_its_key(tmp_path: Path) -> None:
    """`select.grid` is a name or a list of vectors: one error, judged by what was given."""
    for grid, want in (
        ('"cube"', r"`select\.grid`: Input should be 'simplex' or 'ric13'"),
        ('[[0.5, "x"]]', r"`select\.grid\.0\.1`: Input should be a valid number"),
    ):
        with pytest.raises(ConfigError, match=want) as err:
            load_config(_write(tmp_path, BASE + f"[select]\ngrid = {grid}\n"))
        assert "\n" not in str(err.value) and "literal[" not in str(err.value)


PAIRS = '{ prompt = "input", response_a = "output_1", response_b = "output_2", label = "label" }'


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (f"columns = {PAIRS}", "columns map a `label`: set label_map"),
        (f'columns = {PAIRS}\nlabel_map = {{ "1" = "a", "2" = "c" }}', "label_map.2`: Input"),
        ('label_map = { "1" = "a" }', "label_map needs a `label` column"),
        ('columns = { prompt = "q", chosen = "c", rejected = "r", label = "l" }', "must map"),
        ('columns = { prompt = "q", answer = "a" }', "unknown column mapping key(s) answer"),
        ('ties = "drop"', "ties applies to labelled or scored pairs"),
        ('delimiter = ";;"', "delimiter must be one character"),
        ('quote_char = "ab"', "quote_char must be one character"),
        ('delimiter = "\'"\nquote_char = "\'"', "delimiter and quote_char are both"),
        ('encoding = "latin-9x"', "encoding 'latin-9x' is not a codec"),
        ('format = "jsonl"\ndelimiter = ";"', "delimiter applies to CSV/TSV files"),
        ('kind = "hh-rlhf"\nhas_header = false', "has_header applies to CSV/TSV files"),
        ('kind = "oasst"\ncolumns = { prompt = "a", response = "b" }', "not 'oasst'"),
    ],
)
def test_source_options_are_checked_at_load(tmp_path: Path, source: str, message: str) -> None:
    kind = "" if source.startswith("kind") else 'kind = "table"\n'
    (tmp_path / "paretohqd.toml").write_text(
        f'[[ingest.sources]]\n{kind}path = "d.json"\n{source}\n'
    )
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        load_config(tmp_path / "paretohqd.toml")
    assert "ingest.sources.0" in str(err.value)


def test_source_options_that_fit_load(tmp_path: Path) -> None:
    (tmp_path / "paretohqd.toml").write_text(
        f'[[ingest.sources]]\nkind = "table"\npath = "d/**/dataset.json"\ncolumns = {PAIRS}\n'
        'label_map = { "1" = "a", "2" = "b", "0" = "tie" }\nties = "drop"\n'
        '[[ingest.sources]]\nkind = "table"\npath = "d.csv"\ndelimiter = "\\t"\n'
        'encoding = "latin-1"\nhas_header = false\nquote_char = ""\n'
        'columns = { prompt = "column_1", response = "column_2" }\n'
    )
    first, second = load_config(tmp_path / "paretohqd.toml").ingest.sources
    assert first.label_map == {"1": "a", "2": "b", "0": "tie"} and first.ties == "drop"
    assert (second.delimiter, second.encoding, second.has_header) == ("\t", "latin-1", False)
