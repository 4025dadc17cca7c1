"""What a stage is: a declaration plus a pure function.

A :class:`Stage` says which artifacts it reads and writes, which config table parameterises it,
which SQL files and models it depends on, and a version bumped when its behaviour changes. The
runner turns those into a fingerprint; the stage's function only ever sees a
:class:`StageContext`. Rounds of ParetoHqD are the same function declared twice with other
inputs and parameters, never copied code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from paretohqd.config import Config
    from paretohqd.executor import (
        Item,
        ItemGroupWorker,
        ItemsRun,
        ItemWorker,
        PartGroupWorker,
        PartsRun,
        PartWorker,
    )
    from paretohqd.hashing import FileHasher
    from paretohqd.parts import KeyedPartStore, Parts, PartStore


ArtifactKind = Literal["parquet", "dir"]


#: What an artifact is for, so consumers ask the graph instead of listing names:
#: ``adapters`` (per-preference LoRA adapters of one method; tags ``method``, ``start``,
#: ``order``, ``data``), ``model`` (a full model evaluated as a method of its own; tags ``method``),
#: ``shards`` (per-preference training rows; a table of samples), ``training_prompts`` (a
#: table with the ``prompt_id`` of every prompt some model trained on), ``selection`` (which
#: samples each preference selected; tags ``round``, ``layers``, ``overlap``), ``policy``
#: (the base policy a run builds, e.g. converted from llama2.c).
ROLES = ("adapters", "model", "shards", "training_prompts", "selection", "policy")
#: Roles of artifacts that are models: what an item (an adapter) trained on top of them is
#: keyed on, so new base weights retrain the adapters.
MODEL_ROLES = ("model", "policy")


@dataclass(frozen=True)
class Artifact:
    """A named output under the run directory.

    ``view`` is a glob (relative to the run dir) of Parquet files that ``paretohqd sql`` exposes
    as a view named after the artifact; ``None`` means the artifact is not a table. ``role``
    (one of :data:`ROLES`) and ``tags`` say what it is for (see :data:`ROLES`).
    """

    name: str
    path: str
    kind: ArtifactKind = "parquet"
    view: str | None = None
    role: str | None = None
    tags: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"artifact {self.name!r}: unknown role {self.role!r} ({ROLES})")

    @property
    def view_glob(self) -> str | None:
        """The Parquet glob behind the SQL view (the file itself for a Parquet artifact)."""
        if self.view is not None:
            return self.view
        return self.path if self.kind == "parquet" else None


@dataclass(frozen=True)
class Tool:
    """A named command a stage package offers the CLI (``report``, ``plot-selection``, ...).

    A tool declared on a :class:`Stage` is called as ``fn(ctx, **options)`` with that stage's
    context; a package-level tool (``TOOLS`` in the package, no run needed) as
    ``fn(**options)``. ``variant`` tells tools of one name apart (``round1``, ``round2``).
    The CLI parses options and renders what ``fn`` returns; the work happens here.
    """

    name: str
    fn: Callable[..., Any]
    description: str = ""
    variant: str = ""


@dataclass(frozen=True)
class Stage:
    """Declaration of one pipeline stage.

    Parameters
    ----------
    name
        Unique stage name, used by ``--only``/``--from``/``--until``.
    fn
        ``fn(ctx) -> metadata``: does the work; returns JSON-able stats for the manifest. A
        ``note`` (one short line, e.g. the reward heads' held-out accuracy) is what ``run``
        prints beside the stage and ``status`` shows for it; ``notes`` (lines, e.g. ingest's
        quarantine counts) are printed after it.
    inputs
        Names of artifacts produced by earlier stages.
    outputs
        Artifacts this stage writes.
    params
        ``params(config)`` returns the JSON-able parameters that define the outputs, keyed by
        config section (default: ``{section: table}``) so ``status`` can name the changed key.
        Everything that changes outputs must be in here.
    external
        ``external(config, hasher)`` returns identities of things outside the run directory
        (dataset files, model directories, hub ids) with content hashes.
    sql
        SQL files under ``sql/`` the stage runs (their hashes enter the fingerprint).
    checks
        Files under ``sql/checks/`` that must return zero rows after the stage.
    reads_roles
        Also read every artifact of these roles that another stage writes (the registry adds
        them to ``inputs`` in graph order): evaluate reads every method's adapters this way.
    tools
        Commands run in this stage's context (:class:`Tool`).
    validate
        ``validate(config)`` raises :class:`~paretohqd.errors.ConfigError` for what is wrong in
        the config alone (a preference vector, a scorer's kind or options): run when the graph
        is built, so ``status``, ``run --dry-run`` and ``dag`` catch it before any stage runs.
    """

    name: str
    fn: Callable[[StageContext], Mapping[str, Any] | None]
    inputs: tuple[str, ...] = ()
    outputs: tuple[Artifact, ...] = ()
    section: str | None = None
    version: str = "1"
    params: Callable[[Config], Any] | None = None
    external: Callable[[Config, FileHasher], Mapping[str, Any]] | None = None
    sql: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    description: str = ""
    reads_roles: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    validate: Callable[[Config], None] | None = None

    def resolved_params(self, config: Config) -> Any:
        """The parameters that enter the fingerprint."""
        if self.params is not None:
            return self.params(config)
        if self.section is None:
            return {}
        section = config.section(self.section)
        return {self.section: None if section is None else section.model_dump(mode="json")}


@dataclass
class StageContext:
    """Everything a stage function may touch."""

    stage: Stage
    config: Config
    run_dir: Path
    fingerprint: str
    artifacts: Mapping[str, Artifact]
    hasher: FileHasher
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The stage's external identities as fingerprinted (model and data content hashes).
    external: Mapping[str, Any] = field(default_factory=dict)
    #: The fingerprints of the stage's inputs, by artifact name.
    input_fingerprints: Mapping[str, str] = field(default_factory=dict)
    #: ``run --force``: make every item again, even those recorded as current (parts of an
    #: interrupted attempt are still resumed).
    force: bool = False

    @property
    def params(self) -> Any:
        """The stage's config table."""
        return self.config.section(self.stage.section) if self.stage.section else None

    def path(self, artifact: str) -> Path:
        """Absolute path of an artifact (input or output) of this run."""
        try:
            return self.run_dir / self.artifacts[artifact].path
        except KeyError:
            raise KeyError(f"stage {self.stage.name!r} knows no artifact {artifact!r}") from None

    def parts(self, name: str = "parts") -> PartStore:
        """A resumable part-file store keyed by this stage's fingerprint."""
        from paretohqd.parts import PartStore

        return PartStore(self.run_dir / ".parts" / self.stage.name / name, self.fingerprint)

    def keyed_parts(self, definitions: Sequence[Mapping[str, Any]]) -> KeyedPartStore:
        """A part store where part ``i`` is defined by ``definitions[i]`` alone (keyed with
        :func:`paretohqd.executor.work_key`): parts of unchanged definitions are reused from
        the last completed run."""
        from paretohqd.executor import work_key
        from paretohqd.parts import KeyedPartStore

        keys = [work_key(self, d) for d in definitions]
        return KeyedPartStore(self.run_dir / ".parts" / self.stage.name / "keyed", keys)

    def inputs_with_role(self, role: str) -> list[Artifact]:
        """The stage's input artifacts of ``role``, in input order (see :data:`ROLES`)."""
        return [a for n in self.stage.inputs if (a := self.artifacts[n]).role == role]

    def map_parts(
        self,
        worker: PartWorker,
        spec: Any,
        n_parts: int,
        *,
        store: Parts | None = None,
        sizes: list[int] | None = None,
        unit: str = "part",
        groups: Sequence[Sequence[int]] | None = None,
        group: PartGroupWorker | None = None,
    ) -> PartsRun:
        """Run ``worker(spec, i)`` for each part not yet written, or ``group(spec, members)``
        for each of ``groups`` with a part not yet written (:mod:`paretohqd.executor`)."""
        from paretohqd.executor import executor_for

        return executor_for(self).map_parts(
            self,
            worker,
            spec,
            n_parts,
            store=store,
            sizes=sizes,
            unit=unit,
            groups=groups,
            group=group,
        )

    def map_items(
        self,
        worker: ItemWorker,
        spec: Any,
        items: list[Item],
        root: Path,
        *,
        unit: str = "item",
        group: ItemGroupWorker | None = None,
    ) -> ItemsRun:
        """Make every item whose key changed under ``root`` (see :mod:`paretohqd.executor`);
        ``group`` makes several in one pass (fused training)."""
        from paretohqd.executor import executor_for

        return executor_for(self).map_items(self, worker, spec, items, root, unit=unit, group=group)

    def read_parts(self, store: Parts | None = None) -> list[pa.Table]:
        """The part tables written so far, in order."""
        return list((store or self.parts()).iter_tables())

    def duckdb(self, roles: Mapping[str, str] | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with this stage's inputs as views.

        ``roles`` maps the view names the stage's SQL uses to artifact names, so round two can
        run round one's SQL (``{"samples": "generations", "scores": "scores_round2"}``).
        """
        from dataclasses import replace

        from paretohqd.catalog import connect

        arts = [self.artifacts[n] for n in self.stage.inputs]
        for role, name in (roles or {}).items():
            arts.append(replace(self.artifacts[name], name=role))
        con: duckdb.DuckDBPyConnection = connect(self.run_dir, arts)
        return con
