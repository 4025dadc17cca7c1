"""The ``paretohqd`` command line: thin commands over the config, runner and catalog.

Heavy modules (torch, transformers, the stages) are imported inside the commands that need
them, so ``paretohqd --help`` is instant. User mistakes print as one or two lines; ``--debug``
(or ``PARETOHQD_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from paretohqd.errors import (
    EXIT_ENVIRONMENT,
    EXIT_INTERRUPTED,
    EXIT_NOT_FRESH,
    EXIT_USAGE,
    ParetoHqDError,
    describe_os_error,
)


class _OneLineUsage(typer.core.TyperGroup):
    """Click's usage errors (an unknown option or command, a value of the wrong type) in one
    ``error:`` line with the help command to try, exit 2 (``EXIT_USAGE``): the same shape as
    every other error, so scripts and people read one line, not a Usage line and a boxed panel.

    Global options are accepted after the command too (:func:`hoist`)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        call = {
            "args": hoist(sys.argv[1:] if args is None else list(args), self),
            "prog_name": prog_name,
            "complete_var": complete_var,
            "windows_expand_args": windows_expand_args,
            **extra,
        }
        if not standalone_mode:
            return super().main(standalone_mode=False, **call)
        try:
            rv = super().main(standalone_mode=False, **call)
        except typer.Abort:
            _console(stderr=True).print("aborted")
            sys.exit(1)
        except typer.TyperException as exc:  # click's exceptions, as typer vendors them
            code = int(getattr(exc, "exit_code", EXIT_USAGE))
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # type: ignore[attr-defined]  # a bare command: its help
                sys.exit(code)
            format_message = getattr(exc, "format_message", None)
            message = format_message() if callable(format_message) else str(exc)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            _error(f"{message}{hint}", code)
            sys.exit(code)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="paretohqd",
    help="Multi-objective LLM alignment as a staged, inspectable pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    cls=_OneLineUsage,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="config TOML (default: ./paretohqd.toml)"),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a config key: section.key=value (repeatable)"),
]

JsonOpt = Annotated[
    bool, typer.Option("--json", help="print one JSON object on stdout (for scripts)")
]

F = TypeVar("F", bound=Callable[..., Any])
_state = {"debug": os.environ.get("PARETOHQD_DEBUG") == "1", "json": False}


def _console(stderr: bool = False) -> Any:
    """Rich output; 100 columns when piped (Rich's 80 truncates the comparison tables).

    Markup is off: messages, paths and table cells hold user text (``select.grid[0]``, a path
    with ``[/b]`` in it) that must print verbatim; styled output passes ``rich.text.Text``.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 100
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width, markup=False)


def _error(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` on stderr (and, under ``--json``, ``{"error": ..., "exit_code":
    ...}`` on stdout, so a script reading stdout sees why); the exit for the caller to raise."""
    from rich.text import Text

    _console(stderr=True).print(Text.assemble(("error:", "bold red"), f" {message}"))
    if _state["json"]:
        _print_json({"error": message, "exit_code": code})
    return typer.Exit(code)


def _print_json(data: Any) -> None:
    """``data`` as one JSON document on stdout (paths and numbers as they are)."""
    import json

    sys.stdout.write(json.dumps(data, indent=1, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def friendly(fn: F) -> F:
    """Print user errors (``ParetoHqDError``) and the machine's OS errors (a full disk, a
    read-only directory) in one line and exit with their code (:data:`paretohqd.errors.
    EXIT_CODES`); keep bugs' tracebacks.

    A ``run`` stopped by an OS error leaves the stage it was in incomplete (its manifest entry
    is written only after it succeeds), so running again once the cause is fixed resumes it.
    """
    # For `run` the way out is another run.root; for the other commands, another path.
    elsewhere = (
        "choose another run.root (--set run.root=DIR); then run again (finished stages are kept)"
    )

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _state["json"] = bool(kwargs.get("as_json", False))
        try:
            return fn(*args, **kwargs)
        except ParetoHqDError as exc:
            if _state["debug"]:
                raise
            raise _error(str(exc), exc.exit_code) from None
        except OSError as exc:
            what = describe_os_error(exc)
            if what is None or _state["debug"]:
                raise
            where = elsewhere if fn.__name__ == "run" else "write elsewhere"
            raise _error(f"{what}, or {where}", EXIT_ENVIRONMENT) from None
        except KeyboardInterrupt:
            _console(stderr=True).print("interrupted: completed stages are kept; rerun to resume")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        _console().print(f"paretohqd {version('paretohqd')}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="more log lines (DEBUG)")
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="warnings and errors only; no progress bars")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Global options; they may also come after the command (``paretohqd run -q``)."""
    from paretohqd import logs

    _state["debug"] = debug  # per invocation: an earlier --debug must not stick
    logs.configure(-1 if quiet else verbose)


def _load(config: Path | None, overrides: list[str] | None) -> Any:
    from paretohqd.config import load_config

    return load_config(config, overrides)


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _stage_options(
    only: list[str] | None, from_: str | None, until: str | None
) -> tuple[list[str] | None, str | None, str | None]:
    """``--only``/``--from``/``--until`` as the runner takes them; an option given without a
    stage name (``--only ,``, ``--until ""``) is refused, never read as "every stage"."""
    from paretohqd.errors import UsageError

    names = _split(only)
    empty = [
        flag
        for flag, given, value in (
            ("--only", only, names),
            ("--from", from_, (from_ or "").strip()),
            ("--until", until, (until or "").strip()),
        )
        if given is not None and not value
    ]
    if empty:
        raise UsageError(f"{empty[0]} was given no stage name; name one (see `paretohqd status`)")
    return names, from_ and from_.strip(), until and until.strip()


@app.command()
@friendly
def init(
    directory: Annotated[Path, typer.Argument(help="project directory to create")],
    force: Annotated[bool, typer.Option(help="overwrite an existing config")] = False,
) -> None:
    """Write a commented starter config (paper-scale defaults) to DIR/paretohqd.toml."""
    from importlib import resources

    from paretohqd.config import DEFAULT_CONFIG_NAME
    from paretohqd.errors import ConfigError

    target = directory / DEFAULT_CONFIG_NAME
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; use --force to overwrite it")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(
            f"{directory} is not a directory (it, or a folder above it, is a file); "
            "give a directory to hold the config"
        ) from None
    text = (resources.files("paretohqd") / "templates" / "starter.toml").read_text()
    target.write_text(text)
    _console().print(f"wrote {target}; edit the [[ingest.sources]] paths, then `paretohqd run`")


@app.command()
@friendly
def run(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="run only these stages (comma-separated)")
    ] = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="this stage and everything downstream of it")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="this stage and everything it needs")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="rerun selected stages")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would run")] = False,
    executor: Annotated[
        str | None,
        typer.Option("--executor", help="local | ray: shorthand for --set executor.kind=..."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the stale stages of the pipeline (fresh ones are skipped).

    With ``--json`` the stage lines go to stderr and stdout gets one JSON object: the run
    directory and, per stage, its outcome (ran, skipped, would run) and detail."""
    from paretohqd.runner import Runner

    cfg = _load(config, [*(set_ or []), *([f"executor.kind={executor}"] if executor else [])])
    runner = Runner(cfg)
    console = _console(stderr=as_json)
    styles = {
        "ran": "green",
        "skipped": "dim",
        "would run": "yellow",
        "running": "cyan",
        "note": "yellow",
    }

    def log(stage: str, outcome: str, detail: str) -> None:
        from rich.text import Text

        style = styles.get(outcome, "")
        label = "skipped (fresh)" if outcome == "skipped" else outcome
        console.print(Text.assemble((f"{stage:<12} {label}", style), f"  {detail}"))

    names, first, last = _stage_options(only, from_, until)
    rows = runner.run(only=names, from_=first, until=last, force=force, dry_run=dry_run, log=log)
    console.print(f"run directory: {cfg.run_dir}")
    if as_json:
        _print_json(
            {
                "run": cfg.run.name,
                "run_dir": str(cfg.run_dir),
                "dry_run": dry_run,
                "stages": [{"stage": s, "outcome": o, "detail": d} for s, o, d in rows],
            }
        )


@app.command()
@friendly
def status(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="exit 1 when any stage is stale, missing or running"),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show each stage as fresh, stale (and why), missing, or running (pid)."""
    from rich.table import Table
    from rich.text import Text

    from paretohqd.manifest import Manifest
    from paretohqd.runner import Runner
    from paretohqd.summary import stage_states

    cfg = _load(config, set_)
    stages = stage_states(Runner(cfg), Manifest(cfg.run_dir))
    fresh = all(s["state"] == "fresh" for s in stages)
    if as_json:
        _print_json(
            {"run": cfg.run.name, "run_dir": str(cfg.run_dir), "fresh": fresh, "stages": stages}
        )
    else:
        table = Table(title=f"run {cfg.run.name} ({cfg.run_dir})")
        for col in ("stage", "state", "reason (or note)", "rows", "seconds"):
            table.add_column(col)
        colors = {"fresh": "green", "stale": "yellow", "missing": "red", "running": "cyan"}
        for s in stages:
            table.add_row(
                s["stage"],
                Text(s["state"], style=colors[s["state"]]),
                "; ".join(s["reasons"]) or s["note"] or "",
                "" if s["rows"] is None else str(s["rows"]),
                "" if s["seconds"] is None else f"{s['seconds']:.1f}",
            )
        _console().print(table)
    if check and not fresh:
        raise typer.Exit(EXIT_NOT_FRESH)


@app.command()
@friendly
def sql(
    query: Annotated[str | None, typer.Argument(help="SQL; omit for an interactive prompt")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | csv | json")] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the result to FILE.parquet")
    ] = None,
    schema: Annotated[bool, typer.Option("--schema", help="list views and columns")] = False,
    force: Annotated[bool, typer.Option("--force", help="replace an existing --output")] = False,
) -> None:
    """Query the run's artifacts with DuckDB (views named after them, read-only)."""
    from paretohqd import inspect as insp

    cfg = _load(config, set_)
    session = insp.Session.open(cfg)
    if fmt not in insp.FORMATS:
        from paretohqd.errors import UsageError

        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(insp.FORMATS)}")
    if schema:
        insp.print_schema(session, _console())
        return
    if query is None:
        insp.repl(session, _console())
        return
    if output is not None:
        n = session.export(query, output, force=force)
        _console().print(f"wrote {n} rows to {output}")
        return
    insp.print_result(session.query(query), fmt, _console())


@app.command()
@friendly
def summary(config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Stages, timings, per-preference mean scores of the selections, and where outputs are."""
    from paretohqd.summary import collect, print_summary

    cfg = _load(config, set_)
    if as_json:
        _print_json(collect(cfg))
    else:
        print_summary(cfg, _console())


@app.command()
@friendly
def report(config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Rebuild the evaluation report from eval/generations.parquet and print the comparison."""
    from rich.table import Table

    from paretohqd.runner import Runner

    cfg = _load(config, set_)
    meta = Runner(cfg).tool("report")
    if as_json:
        _print_json(meta | {"report": str(cfg.run_dir / meta["report"])})
        return
    table = Table(title="methods on held-out prompts (intervals: 95% bootstrap over prompts)")
    table.add_column("method", no_wrap=True)
    table.add_column("start")
    for col in ("HV", "HV interval", "follows w", "collapse"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("budget vs ParetoHqD")
    ranked = sorted(meta["hypervolume"].items(), key=lambda kv: -(kv[1]["hypervolume"] or 0.0))
    for method, hv in ranked:
        pf = meta["pref_following"].get(method)
        lo, hi = hv["hv_lo"], hv["hv_hi"]
        table.add_row(
            method,
            meta.get("start", {}).get(method) or "",
            "" if hv["hypervolume"] is None else f"{hv['hypervolume']:.3f}",
            "" if lo is None or hi is None else f"{lo:.3f}–{hi:.3f}",
            "" if pf is None else f"{pf:.2f}",
            f"{meta['collapse_rate'].get(method) or 0.0:.2f}",
            (meta["budget_flags"].get(method) or "").replace(" paretohqd", ""),
        )
    _console().print(table)
    _console().print(f"report: {os.path.relpath(cfg.run_dir / meta['report'])}")


@app.command("train-reward")
@friendly
def train_reward(
    data: Annotated[Path, typer.Argument(help="pairwise data file, directory or glob")],
    out: Annotated[Path, typer.Option("--out", "-o", help="head directory to write")],
    kind: Annotated[
        str, typer.Option(help="reader: hh-rlhf | table | oasst | pandalm | hf-datasets")
    ] = "hh-rlhf",
    column: Annotated[
        list[str] | None,
        typer.Option(help="table reader column mapping, e.g. --column prompt=question"),
    ] = None,
    label_map: Annotated[
        list[str] | None,
        typer.Option(
            "--label-map",
            help="labelled pairs: label value -> a, b or tie, e.g. --label-map 1=a --label-map 2=b",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="read at most this many records")] = None,
    encoder: Annotated[
        str | None, typer.Option(help="sentence-transformers dir (default: all-MiniLM-L6-v2)")
    ] = None,
    val_fraction: Annotated[float, typer.Option(help="share of prompts held out")] = 0.2,
    seed: Annotated[int, typer.Option(help="split and init seed")] = 0,
) -> None:
    """Fit a Bradley-Terry reward head on a frozen encoder from chosen/rejected pairs."""
    from paretohqd.errors import UsageError
    from paretohqd.registry import package_tool

    mapping = [c.partition("=") for c in column or []]
    for name, sep, value in mapping:
        if not (name and sep and value):
            raise UsageError(
                f"--column {name}{sep}{value}: expected SCHEMA=COLUMN, e.g. --column "
                "prompt=question"
            )
    labels = [c.partition("=") for c in label_map or []]
    for value, sep, side in labels:
        if not (value and sep and side):
            raise UsageError(
                f"--label-map {value}{sep}{side}: expected VALUE=a|b|tie, e.g. --label-map 2=b"
            )
    result = package_tool("train-reward").fn(
        data=data,
        out=out,
        kind=kind,
        columns={name: value for name, _, value in mapping},
        label_map={value: side for value, _, side in labels},
        limit=limit,
        encoder=encoder,
        val_fraction=val_fraction,
        seed=seed,
    )
    _console().print(
        f"wrote {out}: {result['pairs']} pairs, held-out pairwise accuracy "
        f"{result.get('val_accuracy', float('nan')):.3f} "
        f"(train {result.get('train_accuracy', float('nan')):.3f})"
    )


@app.command("convert-llama2c")
@friendly
def convert_llama2c_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="llama2.c .bin checkpoint")],
    tokenizer: Annotated[Path, typer.Argument(help="llama2.c tokenizer .bin (e.g. tok512.bin)")],
    out: Annotated[Path, typer.Argument(help="output Hugging Face model directory")],
    overwrite: Annotated[bool, typer.Option(help="replace an existing directory")] = False,
) -> None:
    """Convert a llama2.c checkpoint into a Hugging Face Llama directory with a fast tokenizer."""
    from paretohqd.registry import package_tool

    convert = package_tool("convert-llama2c").fn
    path = convert(checkpoint=checkpoint, tokenizer=tokenizer, out=out, overwrite=overwrite)
    _console().print(f"wrote {path}")


@app.command()
@friendly
def dag(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    mermaid: Annotated[bool, typer.Option("--mermaid", help="a Mermaid flowchart")] = False,
    dot: Annotated[bool, typer.Option("--dot", help="Graphviz DOT (pipe to `dot -Tsvg`)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The config's stage graph: what each stage reads (and from which stage) and writes."""
    from paretohqd.dag import as_data, render
    from paretohqd.errors import UsageError
    from paretohqd.registry import build_graph

    if sum((mermaid, dot, as_json)) > 1:
        raise UsageError("choose one of --mermaid, --dot and --json")
    stages = build_graph(_load(config, set_))
    if as_json:
        _print_json(as_data(stages))
        return
    sys.stdout.write(render(stages, "mermaid" if mermaid else "dot" if dot else "text"))


@app.command()
@friendly
def env(as_json: JsonOpt = False) -> None:
    """Versions (python, torch, CUDA, transformers, peft, vllm, duckdb, ray, ...) and the
    devices torch sees: paste it into a bug report."""
    from paretohqd.envinfo import collect, render

    info = collect()
    if as_json:
        _print_json(info)
    else:
        sys.stdout.write(render(info))


export_app = typer.Typer(
    help="Write a run's artifacts in formats other tools read.", no_args_is_help=True
)
app.add_typer(export_app, name="export")


@export_app.command("trl")
@friendly
def export_trl_cmd(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    round_: Annotated[int, typer.Option("--round", help="shards of round 1 or 2")] = 1,
    arm: Annotated[
        str | None, typer.Option("--arm", help="a comparison arm instead of a round: linear")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="directory (default: RUN/export/trl)")
    ] = None,
    pairs: Annotated[
        bool, typer.Option("--pairs", help="also the pairs as per-preference DPO datasets")
    ] = False,
) -> None:
    """The SFT shards as TRL datasets with exactly the project's tokens (and --pairs for DPO)."""
    from paretohqd.runner import Runner

    runner = Runner(_load(config, set_))
    variant = arm or f"round{round_}"
    meta = runner.tool("export-trl", variant=variant, out=out)
    prefs = meta["preferences"]
    rows = sum(p["rows"] for p in prefs.values())
    _console().print(
        f"wrote {os.path.relpath(meta['out'])}: {len(prefs)} preferences, {rows} rows "
        f"(max_length {meta['max_length']}: {sum(p['truncated'] for p in prefs.values())} "
        f"truncated as the project truncates; {sum(p['text_exact'] for p in prefs.values())} "
        "whose text alone re-tokenises to the same ids)"
    )
    _console().print(
        f"train: trl sft --model_name_or_path {os.path.relpath(meta['base_model'])} "
        f"--dataset_name {os.path.relpath(meta['out'])}/PREF --max_length {meta['max_length']}"
    )
    if pairs:
        dpo = runner.tool("export-dpo", out=out)
        kept = {k: v["pairs"] for k, v in dpo["preferences"].items()}
        dropped = sum(v["dropped_zero_margin"] for v in dpo["preferences"].values())
        _console().print(
            f"wrote {os.path.relpath(dpo['out'])}: {len(kept)} preferences, "
            f"{min(kept.values())}–{max(kept.values())} of {dpo['pairs']} pairs each "
            f"({dropped} dropped in all for a zero weighted margin; {dpo['prompt_cut']} prompts "
            f"cut on the left to fit max_length {dpo['max_length']})"
        )
        _console().print(
            f"train: trl dpo --model_name_or_path {os.path.relpath(meta['base_model'])} "
            f"--dataset_name {os.path.relpath(dpo['out'])}/PREF --max_length {dpo['max_length']}"
        )


@export_app.command("hub")
@friendly
def export_hub_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="directory to write the repos to")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    namespace: Annotated[
        str | None,
        typer.Option(help="Hub user or organisation the repos will live under (ids NS/NAME)"),
    ] = None,
    base_model: Annotated[
        str | None,
        typer.Option(
            "--base-model",
            help="Hub id of the policy, when the run has it only as a local directory",
        ),
    ] = None,
    license_: Annotated[
        str | None,
        typer.Option("--license", help="the models' Hub license id (default: the data's)"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an earlier export")] = False,
) -> None:
    """Adapters and full models as Hub model repos, shards as dataset repos, no local paths."""
    from rich.table import Table

    from paretohqd.runner import Runner

    result = Runner(_load(config, set_)).tool(
        "export-hub",
        out=out,
        namespace=namespace,
        base_model=base_model,
        license=license_,
        force=force,
    )
    table = Table(title=f"Hub repos in {out}")
    for col in ("kind", "repo id", "repos", "from the run", "MB"):
        table.add_column(col, justify="right" if col in ("repos", "MB") else "left")
    groups: dict[str, list[Any]] = {}
    for repo in result.repos:
        groups.setdefault(repo.group, []).append(repo)
    for group, repos in groups.items():
        size = sum(
            f.stat().st_size for r in repos for f in (out / r.folder).rglob("*") if f.is_file()
        )
        ids = repos[0].repo_id
        if len(repos) > 1:  # one per preference: the id ends in the preference's
            ids = ids.removesuffix(Path(repos[0].source).name) + "<pref_id>"
        table.add_row(repos[0].kind, ids, str(len(repos)), group, f"{size / 1e6:.2f}")
    _console().print(table)
    _console().print(
        f"upload each with `hf upload REPO_ID {out}/KINDs/NAME --repo-type KIND` "
        f"(every repo's folder and id: {out / 'export.json'})"
    )


plot_app = typer.Typer(help="Draw figures of a run's artifacts (PNG).", no_args_is_help=True)
app.add_typer(plot_app, name="plot")


@plot_app.command("selection")
@friendly
def plot_selection_cmd(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    round_: Annotated[int, typer.Option("--round", help="selection round: 1 or 2")] = 1,
    stage: Annotated[
        str | None, typer.Option("--arm", help="a comparison arm instead of a round: linear")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="PNG path (default: RUN/plots/)")
    ] = None,
) -> None:
    """Normalised scores coloured by Pareto layer, the preference rays and the selected points."""
    from paretohqd.runner import Runner

    variant = stage or f"round{round_}"
    path = Runner(_load(config, set_)).tool("plot-selection", variant=variant, output=output)
    _console().print(f"wrote {path}")


#: Options of the top-level callback, accepted anywhere before ``--`` (see :func:`hoist`).
GLOBAL_FLAGS = frozenset({"--debug", "--verbose", "--quiet", "-q", "--version"})


def _value_options(root: Any) -> set[str]:
    """Every option name of every command under ``root`` (a click command) that takes a value
    (``--set``, ``-o``, ...): the token after one is that value, never a global flag.

    Duck-typed: typer vendors its own click, whose classes are not ``click``'s."""
    names: set[str] = set()
    stack = [root]
    while stack:
        command = stack.pop()
        for param in command.params:
            is_option = getattr(param, "param_type_name", "") == "option"
            if is_option and not param.is_flag and not getattr(param, "count", False):
                names.update(param.opts)
        stack.extend(getattr(command, "commands", {}).values())
    return names


def hoist(argv: Sequence[str], root: Any) -> list[str]:
    """``argv`` with the global flags (``--debug``, ``-v``/``--verbose``, ``-q``/``--quiet``)
    moved before the command, so ``paretohqd run --until score -q`` works as users type it.

    A token is left alone where it is an option's value (``--set -q``) or follows ``--``.
    """
    takes_value = _value_options(root)
    front: list[str] = []
    rest: list[str] = []
    previous = ""
    for i, token in enumerate(argv):
        if token == "--":
            rest.extend(argv[i:])
            break
        is_global = token in GLOBAL_FLAGS or (
            len(token) > 1 and token[0] == "-" and set(token[1:]) == {"v"}
        )
        if is_global and previous not in takes_value:
            front.append(token)
        else:
            rest.append(token)
        previous = token
    return front + rest


def main() -> None:
    """Console-script entry point."""
    app(prog_name="paretohqd")


if __name__ == "__main__":  # pragma: no cover
    main()
