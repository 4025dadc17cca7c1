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

from paretohqd.errors import ParetoHqDError, describe_os_error


class _OneLineUsage(typer.core.TyperGroup):
    """Click's usage errors (an unknown option or command, a value of the wrong type) in one
    ``error:`` line with the help command to try, exit 2: the same shape as every other error,
    so scripts and people read one line, not a Usage line and a boxed panel."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        import sys

        call = {
            "args": args,
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
            code = int(getattr(exc, "exit_code", 2))
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # type: ignore[attr-defined]  # a bare command: its help
                sys.exit(code)
            format_message = getattr(exc, "format_message", None)
            message = format_message() if callable(format_message) else str(exc)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            _error(f"{message}{hint}")
            sys.exit(code)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="paretohqd",
    help="Multi-objective LLM alignment as a staged, inspectable pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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

F = TypeVar("F", bound=Callable[..., Any])
_state = {"debug": os.environ.get("PARETOHQD_DEBUG") == "1"}


def _console(stderr: bool = False) -> Any:
    """Rich output; 100 columns when piped (Rich's 80 truncates the comparison tables).

    Markup is off: messages, paths and table cells hold user text (``select.grid[0]``, a path
    with ``[/b]`` in it) that must print verbatim; styled output passes ``rich.text.Text``.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 100
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width, markup=False)


def _error(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; the exit (code 2) for the caller to raise."""
    from rich.text import Text

    _console(stderr=True).print(Text.assemble(("error:", "bold red"), f" {message}"))
    return typer.Exit(2)


def friendly(fn: F) -> F:
    """Print user errors (``ParetoHqDError``) and the machine's OS errors (a full disk, a
    read-only directory) in one line and exit 2; keep bugs' tracebacks.

    A ``run`` stopped by an OS error leaves the stage it was in incomplete (its manifest entry
    is written only after it succeeds), so running again once the cause is fixed resumes it.
    """
    # For `run` the way out is another run.root; for the other commands, another path.
    elsewhere = (
        "choose another run.root (--set run.root=DIR); then run again (finished stages are kept)"
    )

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ParetoHqDError as exc:
            if _state["debug"]:
                raise
            raise _error(str(exc)) from None
        except OSError as exc:
            what = describe_os_error(exc)
            if what is None or _state["debug"]:
                raise
            where = elsewhere if fn.__name__ == "run" else "write elsewhere"
            raise _error(f"{what}, or {where}") from None
        except KeyboardInterrupt:
            _console(stderr=True).print("interrupted: completed stages are kept; rerun to resume")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False,
) -> None:
    _state["debug"] = debug  # per invocation: an earlier --debug must not stick


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
    from paretohqd.errors import StageError

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
        raise StageError(f"{empty[0]} was given no stage name; name one (see `paretohqd status`)")
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
) -> None:
    """Run the stale stages of the pipeline (fresh ones are skipped)."""
    from paretohqd.runner import Runner

    cfg = _load(config, [*(set_ or []), *([f"executor.kind={executor}"] if executor else [])])
    runner = Runner(cfg)
    console = _console()
    styles = {"ran": "green", "skipped": "dim", "would run": "yellow", "running": "cyan"}

    def log(stage: str, outcome: str, detail: str) -> None:
        from rich.text import Text

        style = styles.get(outcome, "")
        label = "skipped (fresh)" if outcome == "skipped" else outcome
        console.print(Text.assemble((f"{stage:<12} {label}", style), f"  {detail}"))

    names, first, last = _stage_options(only, from_, until)
    runner.run(only=names, from_=first, until=last, force=force, dry_run=dry_run, log=log)
    console.print(f"run directory: {cfg.run_dir}")


@app.command()
@friendly
def status(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Show each stage as fresh, stale (and why) or missing."""
    from rich.table import Table
    from rich.text import Text

    from paretohqd.manifest import Manifest
    from paretohqd.runner import Runner

    cfg = _load(config, set_)
    runner = Runner(cfg)
    manifest = Manifest(cfg.run_dir)
    table = Table(title=f"run {cfg.run.name} ({cfg.run_dir})")
    for col in ("stage", "state", "reason", "rows", "seconds"):
        table.add_column(col)
    colors = {"fresh": "green", "stale": "yellow", "missing": "red"}
    for item in runner.plan(manifest):
        entry = manifest.get(item.stage.name) or {}
        rows = sum(o.get("rows", 0) for o in entry.get("outputs", {}).values())
        table.add_row(
            item.stage.name,
            Text(item.state, style=colors[item.state]),
            "; ".join(item.reasons),
            str(rows) if entry else "",
            f"{entry['seconds']:.1f}" if entry else "",
        )
    _console().print(table)


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
        from paretohqd.errors import ConfigError

        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(insp.FORMATS)}")
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
def summary(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Stages, timings, per-preference mean scores of the selections, and where outputs are."""
    from paretohqd.summary import print_summary

    print_summary(_load(config, set_), _console())


@app.command()
@friendly
def report(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Rebuild the evaluation report from eval/generations.parquet and print the comparison."""
    from rich.table import Table

    from paretohqd.runner import Runner

    cfg = _load(config, set_)
    meta = Runner(cfg).tool("report")
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
    data: Annotated[Path, typer.Argument(help="pairwise data file or directory")],
    out: Annotated[Path, typer.Option("--out", "-o", help="head directory to write")],
    kind: Annotated[
        str, typer.Option(help="reader: hh-rlhf | table | oasst | pandalm | hf-datasets")
    ] = "hh-rlhf",
    column: Annotated[
        list[str] | None,
        typer.Option(help="table reader column mapping, e.g. --column prompt=question"),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="read at most this many records")] = None,
    encoder: Annotated[
        str | None, typer.Option(help="sentence-transformers dir (default: all-MiniLM-L6-v2)")
    ] = None,
    val_fraction: Annotated[float, typer.Option(help="share of prompts held out")] = 0.2,
    seed: Annotated[int, typer.Option(help="split and init seed")] = 0,
) -> None:
    """Fit a Bradley-Terry reward head on a frozen encoder from chosen/rejected pairs."""
    from paretohqd.errors import ConfigError
    from paretohqd.registry import package_tool

    mapping = [c.partition("=") for c in column or []]
    for name, sep, value in mapping:
        if not (name and sep and value):
            raise ConfigError(
                f"--column {name}{sep}{value}: expected SCHEMA=COLUMN, e.g. --column "
                "prompt=question"
            )
    result = package_tool("train-reward").fn(
        data=data,
        out=out,
        kind=kind,
        columns={name: value for name, _, value in mapping},
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


export_app = typer.Typer(
    help="Write a run's artifacts in formats other tools read.", no_args_is_help=True
)
app.add_typer(export_app, name="export")


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


def main() -> None:
    """Console-script entry point."""
    app(prog_name="paretohqd")


if __name__ == "__main__":  # pragma: no cover
    main()
