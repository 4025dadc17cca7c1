"""Plan and run the stage graph incrementally.

A stage's fingerprint is the sha256 of its resolved parameters, the content hashes of its
inputs (recorded by the stages that wrote them), the hashes of the SQL files it runs, its
version, and the identity of everything outside the run it reads (datasets, models). A stage
whose fingerprint matches the manifest and whose outputs exist is skipped; otherwise ``status``
can name the component that changed.

Inputs enter by *content*, as in DVC: when a stage runs again and writes byte-identical
outputs (an edited input line that ``ingest.limit`` never reads, a re-run after ``--force``),
the stages below it stay fresh. Before a run, an input whose producer is about to run has no
known content yet; ``status`` shows its consumers as stale ("remade upstream first"), and the
run decides once the producer has written it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from paretohqd.atomic import remove, write_text
from paretohqd.catalog import connect, run_check, sql_hash
from paretohqd.config import Config, dump_config
from paretohqd.errors import ConfigError, ParetoHqDError, StageError
from paretohqd.executor import release_worker_state
from paretohqd.hashing import FileHasher, canonical_json, sha256_json
from paretohqd.lock import RunLock, holder
from paretohqd.logs import stage_log
from paretohqd.manifest import Manifest
from paretohqd.registry import artifacts_of, build_graph
from paretohqd.stage import Artifact, Stage, StageContext

logger = logging.getLogger("paretohqd.runner")

State = Literal["fresh", "stale", "missing", "running"]
Log = Callable[[str, str, str], None]

#: Prefix of an input's identity while its producer is stale: matches no recorded content.
PENDING = "pending:"


@dataclass
class PlanItem:
    """The state of one stage before a run."""

    stage: Stage
    fingerprint: str
    components: dict[str, Any]
    state: State
    reasons: list[str] = field(default_factory=list)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _short(value: Any) -> str:
    text: str = canonical_json(value)
    return text if len(text) <= 40 else text[:37] + "..."


def diff_components(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable reasons why ``new`` differs from the recorded ``old`` components."""
    reasons: list[str] = []
    if old.get("version") != new.get("version"):
        reasons.append(f"stage version {old.get('version')} → {new.get('version')}")
    old_p, new_p = _flatten(old.get("params", {})), _flatten(new.get("params", {}))
    for key in sorted(set(old_p) | set(new_p)):
        if old_p.get(key, "<unset>") != new_p.get(key, "<unset>"):
            reasons.append(
                f"param {key}: {_short(old_p.get(key, '<unset>'))} → "
                f"{_short(new_p.get(key, '<unset>'))}"
            )
    for key in sorted(set(old.get("inputs", {})) | set(new.get("inputs", {}))):
        now = new.get("inputs", {}).get(key)
        if str(now).startswith(PENDING):
            reasons.append(f"input `{key}` is remade upstream first")
        elif old.get("inputs", {}).get(key) != now:
            reasons.append(f"input `{key}` changed upstream")
    for key in sorted(set(old.get("sql", {})) | set(new.get("sql", {}))):
        if old.get("sql", {}).get(key) != new.get("sql", {}).get(key):
            reasons.append(f"sql/{key} changed")
    old_e, new_e = _flatten(old.get("external", {})), _flatten(new.get("external", {}))
    for key in sorted(set(old_e) | set(new_e)):
        if old_e.get(key) != new_e.get(key):
            reasons.append(f"external input {key} changed")
    return reasons or ["fingerprint changed"]


def _output_stats(run_dir: Path, art: Artifact, hasher: FileHasher) -> dict[str, Any]:
    """Path, rows, files, schema, bytes and the content hash (what consumers are keyed on;
    hidden files such as the engine's ``.items.json`` are not content)."""
    import pyarrow.parquet as pq

    path = run_dir / art.path
    stats: dict[str, Any] = {"path": art.path, "content": hasher.path(path)}
    glob = art.view_glob
    if glob is not None:
        files = sorted(run_dir.glob(glob)) if "*" in glob else [run_dir / glob]
        rows = 0
        schema: list[list[str]] | None = None
        for f in files:
            meta = pq.ParquetFile(f)
            rows += meta.metadata.num_rows
            if schema is None:
                schema = [
                    [n, str(t)]
                    for n, t in zip(meta.schema_arrow.names, meta.schema_arrow.types, strict=True)
                ]
        stats.update(rows=rows, files=len(files), schema=schema or [])
    if path.is_dir():
        stats["bytes"] = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    elif path.exists():
        stats["bytes"] = path.stat().st_size
    return stats


def _clean_temp_files(run_dir: Path) -> None:
    """Remove temp files of writes that a killed process never renamed (we hold the lock)."""
    if not run_dir.exists():
        return
    for tmp in run_dir.rglob(".*.tmp-*"):
        remove(tmp)


def apply_threads(threads: int | None) -> None:
    """Cap CPU threads for torch (now, or when a stage imports it) and the BLAS libraries.

    On a small shared machine one thread is often faster than two; ``run.threads`` decides.
    """
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


#: The key under ``external`` that holds why a stage's external inputs could not be identified.
EXTERNAL_ERROR = "error"


class Runner:
    """Plans and executes the stages of one run directory."""

    def __init__(self, config: Config, stages: Sequence[Stage] | None = None) -> None:
        self.config = config
        self.stages = list(stages) if stages is not None else build_graph(config)
        self.run_dir = config.run_dir
        self.artifacts = artifacts_of(self.stages)
        self.producer = {a.name: s.name for s in self.stages for a in s.outputs}
        self.hasher = FileHasher(self.run_dir / ".cache" / "file-hashes.json")
        unknown = sorted(set(config.executor.stages) - {s.name for s in self.stages})
        if unknown:
            known = ", ".join(s.name for s in self.stages)
            raise ConfigError(
                f"executor.stages names {', '.join(map(repr, unknown))}, which is no stage of "
                f"this config (stages: {known})"
            )

    # ------------------------------------------------------------------ planning
    def stage(self, name: str) -> Stage:
        """Look up a stage by name (with a helpful error)."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        known = ", ".join(s.name for s in self.stages)
        raise StageError(f"no stage named {name!r} in this config (stages: {known})")

    def components(self, stage: Stage, input_fps: dict[str, str]) -> dict[str, Any]:
        """Everything the fingerprint of ``stage`` is computed from.

        A stage whose external inputs cannot be identified (a model file that is not there)
        gets ``external = {"error": message}``: planning and earlier stages go on, and the
        stage reports the problem when it is reached (``status`` shows it as the reason).
        """
        try:
            external = stage.external(self.config, self.hasher) if stage.external else {}
        except ParetoHqDError as exc:
            external = {EXTERNAL_ERROR: str(exc)}
        sql = {name: sql_hash(name) for name in stage.sql}
        sql.update({f"checks/{name}": sql_hash(f"checks/{name}") for name in stage.checks})
        return {
            "version": stage.version,
            "params": stage.resolved_params(self.stage_config(stage.name)),
            "inputs": {name: input_fps.get(name, "") for name in stage.inputs},
            "sql": sql,
            "external": dict(external),
        }

    def stage_config(self, name: str) -> Config:
        """The config stage ``name`` runs with and is fingerprinted by: ``"auto"`` devices and
        dtypes resolved on this driver for where the stage's work runs
        (:func:`paretohqd.devices.resolve_config`)."""
        from paretohqd.devices import resolve_config

        return resolve_config(self.config, name)

    def input_identity(self, manifest: Manifest, name: str) -> str:
        """What artifact ``name`` is, as its consumers' fingerprints see it: the content hash
        its producer recorded (the producer's fingerprint for entries written before content
        was recorded); empty when the producer has not completed."""
        entry = manifest.get(self.producer[name]) or {}
        content = entry.get("outputs", {}).get(name, {}).get("content")
        return f"content:{content}" if content else str(entry.get("fingerprint", ""))

    def plan(self, manifest: Manifest | None = None) -> list[PlanItem]:
        """Fingerprint every stage from the config and compare with the manifest.

        An input whose producer is fresh enters by its recorded content; one whose producer
        will run is pending (its consumers are stale until the run knows the new content).
        """
        manifest = manifest or Manifest(self.run_dir)
        pid = holder(self.run_dir)
        other = None if pid == os.getpid() else pid  # another process's run, if any
        fresh: dict[str, bool] = {}
        planned: dict[str, str] = {}
        items: list[PlanItem] = []
        for stage in self.stages:
            input_ids = {
                n: self.input_identity(manifest, n)
                if fresh[self.producer[n]]
                else PENDING + planned[self.producer[n]]
                for n in stage.inputs
            }
            comps = self.components(stage, input_ids)
            fp = sha256_json(comps)
            item = self._state(stage, fp, comps, manifest, other)
            planned[stage.name] = fp
            fresh[stage.name] = item.state == "fresh"
            items.append(item)
        self.hasher.save()
        return items

    def _state(
        self,
        stage: Stage,
        fp: str,
        comps: dict[str, Any],
        manifest: Manifest,
        holder_pid: int | None = None,
    ) -> PlanItem:
        """The stage's state; ``holder_pid`` is the process running in the run directory now
        (0: one whose pid is unknown), which makes a stage marked running "running", not
        "interrupted"."""
        entry = manifest.get(stage.name)
        problem = comps["external"].get(EXTERNAL_ERROR)
        if problem:
            return PlanItem(stage, fp, comps, "stale" if entry else "missing", [problem])
        if entry is None:
            running = manifest.data.get("running", {}).get(stage.name)
            if running and holder_pid is not None:
                pid = f"pid {holder_pid}" if holder_pid else "pid unknown"
                return PlanItem(stage, fp, comps, "running", [f"running ({pid}) since {running}"])
            why = f"interrupted run started {running}" if running else "never run"
            return PlanItem(stage, fp, comps, "missing", [why])
        missing = [a.path for a in stage.outputs if not (self.run_dir / a.path).exists()]
        if missing:
            return PlanItem(stage, fp, comps, "stale", [f"output {p} missing" for p in missing])
        if entry.get("fingerprint") != fp:
            reasons = diff_components(entry.get("components", {}), comps)
            return PlanItem(stage, fp, comps, "stale", reasons)
        return PlanItem(stage, fp, comps, "fresh", [])

    def select(
        self,
        *,
        only: Sequence[str] | None = None,
        from_: str | None = None,
        until: str | None = None,
    ) -> list[str]:
        """Names of the stages a run should consider, in order: ``from_`` and everything
        downstream of it, ``until`` and everything it needs, ``only`` these."""
        from paretohqd.registry import ancestors, descendants

        for name in [*(only or []), *(x for x in (from_, until) if x)]:
            self.stage(name)
        chosen = [s.name for s in self.stages]
        if from_:
            below = descendants(self.stages, from_)
            chosen = [n for n in chosen if n in below]
        if until:
            above = ancestors(self.stages, until)
            chosen = [n for n in chosen if n in above]
        if only:
            chosen = [n for n in chosen if n in set(only)]
        return chosen

    def context(self, name: str) -> StageContext:
        """The context stage ``name`` would run with, for tools that work on its outputs
        (rebuilding a report, drawing a plot); its fingerprint is the planned one."""
        stage = self.stage(name)
        item = next(i for i in self.plan() if i.stage.name == name)
        return StageContext(
            stage=stage,
            config=self.stage_config(name),
            run_dir=self.run_dir,
            fingerprint=item.fingerprint,
            artifacts=self.artifacts,
            hasher=self.hasher,
            external=item.components.get("external", {}),
            input_fingerprints=item.components.get("inputs", {}),
        )

    def tool(self, name: str, *, variant: str | None = None, **options: Any) -> Any:
        """Run tool ``name`` of the stage offering it (the one of ``variant`` when several
        do) in that stage's context, and return what it returns."""
        from paretohqd.registry import stage_tools

        offered = stage_tools(self.stages, name)
        chosen = [(s, t) for s, t in offered if variant is None or t.variant == variant]
        if not chosen:
            have = ", ".join(t.variant or s.name for s, t in offered)
            which = f"`{name}` for {variant!r}" if variant else f"`{name}`"
            raise StageError(
                f"no stage of this config offers {which} "
                + (f"(offered for: {have})" if have else "(the stage that offers it is off)")
            )
        stage, tool = chosen[0]
        return tool.fn(self.context(stage.name), **options)

    # ------------------------------------------------------------------ running
    def run(
        self,
        *,
        only: Sequence[str] | None = None,
        from_: str | None = None,
        until: str | None = None,
        force: bool = False,
        dry_run: bool = False,
        log: Log | None = None,
    ) -> list[tuple[str, str, str]]:
        """Run the selected stages that are stale (all selected ones with ``force``).

        Returns ``(stage, outcome, detail)`` rows: outcome is ``ran``, ``skipped``, ``would run``
        or ``note`` (a line the stage that ran wants seen, after its ``ran`` row).
        """
        emit: Log = log or (lambda *_: None)
        apply_threads(self.config.run.threads)
        selected = self.select(only=only, from_=from_, until=until)
        results: list[tuple[str, str, str]] = []
        if dry_run:
            for item in self.plan():
                if item.stage.name not in selected:
                    continue
                if item.state == "fresh" and not force:
                    row = (item.stage.name, "skipped", "fresh")
                else:
                    row = (item.stage.name, "would run", "; ".join(item.reasons) or "forced")
                emit(*row)
                results.append(row)
            return results

        self.run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.run_dir):
            _clean_temp_files(self.run_dir)
            write_text(self.run_dir / "config.toml", dump_config(self.config))
            manifest = Manifest(self.run_dir)
            for stage in self.stages:
                recorded = {n: self.input_identity(manifest, n) for n in stage.inputs}
                comps = self.components(stage, recorded)
                fp = sha256_json(comps)
                item = self._state(stage, fp, comps, manifest)
                if stage.name not in selected:
                    continue
                if item.state == "fresh" and not force:
                    row = (stage.name, "skipped", "fresh")
                    emit(*row)
                    results.append(row)
                    continue
                problem = comps["external"].get(EXTERNAL_ERROR)
                if problem:
                    raise StageError(f"stage {stage.name!r} cannot run: {problem}")
                self._require_inputs(stage, manifest)
                why = "; ".join(item.reasons) or "forced"
                emit(stage.name, "running", why)
                with stage_log(self.run_dir, stage.name):
                    logger.info("%s running: %s", stage.name, why)
                    entry = self._execute(stage, fp, comps, manifest, force=force)
                    detail = f"{entry['seconds']:.1f}s"
                    rows = [f"{k} {o['rows']}" for k, o in entry["outputs"].items() if "rows" in o]
                    if rows:
                        detail += " (" + ", ".join(rows) + " rows)"
                    # What the stage wants seen: a summary on its row (a head's accuracy), and
                    # lines after it (ingest: quarantined rows by reason, where to look).
                    meta = entry["metadata"]
                    if meta.get("note"):
                        detail += f"; {meta['note']}"
                    logger.info("%s ran: %s", stage.name, detail)
                    notes = [(stage.name, "note", str(n)) for n in meta.get("notes", [])]
                    for note in notes:
                        logger.info("%s note: %s", stage.name, note[2])
                for row in [(stage.name, "ran", detail), *notes]:
                    emit(*row)
                    results.append(row)
            self.hasher.save()
        return results

    def _require_inputs(self, stage: Stage, manifest: Manifest) -> None:
        for name in stage.inputs:
            producer = self.producer[name]
            if manifest.get(producer) is None:
                raise StageError(
                    f"stage {stage.name!r} needs `{name}` from stage {producer!r}, which has not "
                    f"completed; run `paretohqd run --until {producer}` first"
                )

    def _execute(
        self,
        stage: Stage,
        fp: str,
        comps: dict[str, Any],
        manifest: Manifest,
        *,
        force: bool = False,
    ) -> dict[str, Any]:
        manifest.stages.pop(stage.name, None)
        started = datetime.now(UTC).isoformat(timespec="seconds")
        manifest.data.setdefault("running", {})[stage.name] = started
        manifest.save()
        ctx = StageContext(
            stage=stage,
            config=self.stage_config(stage.name),
            run_dir=self.run_dir,
            fingerprint=fp,
            artifacts=self.artifacts,
            hasher=self.hasher,
            external=comps.get("external", {}),
            input_fingerprints=comps.get("inputs", {}),
            force=force,
        )
        # Every stage starts from the same process state, whatever ran before it: the run's
        # thread settings (float reductions depend on them) and no loaded models or caches
        # (a shared encoder's embedding cache holds values computed in other batches), so
        # results never depend on the order stages run in.
        apply_threads(self.config.run.threads)
        release_worker_state()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        children0 = os.times()
        metadata = dict(stage.fn(ctx) or {})
        metadata.update(ctx.metadata)
        children1 = os.times()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        cpu += (children1.children_user - children0.children_user) + (
            children1.children_system - children0.children_system
        )
        for art in stage.outputs:
            if not (self.run_dir / art.path).exists():
                raise StageError(f"stage {stage.name!r} finished without writing {art.path}")
        if stage.checks:
            con = connect(
                self.run_dir, [self.artifacts[n] for n in stage.inputs] + list(stage.outputs)
            )
            try:
                for check in stage.checks:
                    run_check(con, check)
            finally:
                con.close()
        entry = {
            "fingerprint": fp,
            "components": comps,
            "started": started,
            "seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
            "outputs": {a.name: _output_stats(self.run_dir, a, self.hasher) for a in stage.outputs},
            "metadata": metadata,
        }
        manifest.data.get("running", {}).pop(stage.name, None)
        manifest.set(stage.name, entry)
        return entry
