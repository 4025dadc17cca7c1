"""The regenerate stage function: representative round-one adapters answer fresh prompts.

Representatives (docs/algorithms.md §6): the adapter of each one-hot preference plus the
most balanced preference of the grid. Each (adapter, chunk of prompts) is one resumable part,
:class:`RegenerateSpec`'s request and finish for one index, run by the engine's executor, so a
killed run continues where it stopped; the policy is loaded once per process, only when some
part is left to do. A part is keyed by what defines it (the adapter's weights, the prompts,
the settings, its seed), and seeded by what it is rather than by its position, so when the
stage runs again for another reason (a preference added to the grid) the parts of unchanged
representatives are reused, not generated again. Output rows follow the samples schema, with
``source = "regen:<pref_id>"``, so round two reuses the score/pareto/select stages unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from paretohqd.catalog import run_sql
from paretohqd.errors import DataError
from paretohqd.stage import StageContext
from paretohqd.stages.kit.policy.generate import (
    GenerationRequest,
    GenerationResult,
    GenerationSettings,
)

if TYPE_CHECKING:
    import polars as pl


def representatives(pref_ids: Sequence[str], weights: Mapping[str, Sequence[float]]) -> list[str]:
    """One-hot preferences (one per objective) plus the one closest to uniform weights."""
    reps = [p for p in pref_ids if max(weights[p]) >= 1 - 1e-9]
    m = len(next(iter(weights.values())))
    uniform = np.full(m, 1 / m)
    balanced = min(
        pref_ids, key=lambda p: (float(np.abs(np.asarray(weights[p]) - uniform).sum()), p)
    )
    if balanced not in reps:
        reps.append(balanced)
    return reps


@dataclass(frozen=True)
class RegenerateSpec:
    """Everything a regenerate part needs, picklable: part ``r * chunks + c`` is representative
    ``r`` answering prompt chunk ``c`` (``part_size`` prompts)."""

    base: str
    settings: GenerationSettings
    backend: Literal["transformers", "vllm"]
    adapters: Path
    representatives: tuple[str, ...]
    prompts: tuple[tuple[str, str], ...]
    part_size: int
    key: str
    mix: int = 1

    @property
    def chunks(self) -> int:
        """Prompt chunks per representative."""
        return math.ceil(len(self.prompts) / self.part_size)

    @property
    def groups(self) -> list[tuple[int, ...]]:
        """Parts that generate together: about ``mix`` representatives, one chunk
        (:func:`~paretohqd.stages.kit.policy.generate.mixed_groups`)."""
        from paretohqd.stages.kit.policy.generate import mixed_groups

        return mixed_groups([(p, self.base) for p in self.representatives], self.chunks, self.mix)

    def part(self, index: int) -> tuple[str, int, tuple[tuple[str, str], ...]]:
        """Part ``index``: its representative, chunk number and prompts."""
        c = index % self.chunks
        pref = self.representatives[index // self.chunks]
        return pref, c, self.prompts[c * self.part_size : (c + 1) * self.part_size]

    def seed(self, index: int) -> int:
        """Part ``index``'s sampling seed: the run seed, the representative and the chunk."""
        from paretohqd.stages.kit.policy.generate import part_seed

        pref, c, _ = self.part(index)
        return part_seed(self.settings.seed, "regenerate", pref, c)

    def request(self, index: int) -> GenerationRequest:
        """Part ``index``'s prompts for its representative, with :meth:`seed`."""
        pref, _, chunk = self.part(index)
        return GenerationRequest(
            self.base, tuple(p for _, p in chunk), self.adapters / pref, self.seed(index), self.key
        )

    def finish(self, index: int, result: GenerationResult) -> pl.DataFrame:
        """Part ``index``'s rows: the representative's responses (skipped prompts dropped),
        with the part's generation counters on every row."""
        import polars as pl

        from paretohqd.stages.kit.records import normalise, sample_id

        pref, _, chunk = self.part(index)
        rows = [
            (pid, prompt, normalise(text))
            for (pid, prompt), text in zip(chunk, result.texts, strict=True)
            if text is not None
        ]
        return pl.DataFrame(
            {
                "sample_id": [sample_id(p, t) for _, p, t in rows],
                "prompt_id": [pid for pid, _, _ in rows],
                "prompt": [p for _, p, _ in rows],
                "response": [t for _, _, t in rows],
                "source": f"regen:{pref}",
                "split": "train",
                "truncated_prompts": result.truncated,
                "skipped_prompts": result.skipped,
                "new_tokens": result.new_tokens,
            },
            schema_overrides={
                "truncated_prompts": pl.Int32,
                "skipped_prompts": pl.Int32,
                "new_tokens": pl.Int64,
            },
        )


def _representatives_of(ctx: StageContext) -> list[str]:
    """The representative adapters among those sft trained for the selection's preferences."""
    from paretohqd.stages.kit.selection import shard_index

    adapters: Path = ctx.path("adapters")
    pref_ids = sorted(p.name for p in adapters.iterdir() if (p / "adapter_config.json").exists())
    if not pref_ids:
        raise DataError(f"regenerate: no adapters under {adapters}; run the sft stage first")
    index = shard_index(ctx, "selection")
    pref_ids = [p for p in pref_ids if p in index]  # sft keeps exactly the selection's
    if not pref_ids:
        raise DataError("regenerate: no adapter matches a preference of the selection")
    return representatives(pref_ids, {p: index[p]["weights"] for p in pref_ids})


def run_regenerate(ctx: StageContext) -> Mapping[str, Any]:
    """Generate one response per (representative adapter, prompt) into generations.parquet."""
    import polars as pl

    from paretohqd.atomic import write_parquet
    from paretohqd.stages.kit.policy.generate import generation_settings, map_generation_parts
    from paretohqd.stages.kit.policy.identity import policy_model

    cfg, gen_cfg = ctx.config.regenerate, ctx.config.generation
    assert cfg is not None and ctx.config.policy is not None
    reps = _representatives_of(ctx)
    con = ctx.duckdb()
    try:
        prompts = run_sql(
            con,
            "sample_prompts.sql",
            {"split": "train", "n": cfg.prompts, "seed": ctx.config.run.seed},
        ).fetchall()
    finally:
        con.close()
    if not prompts:
        raise DataError("regenerate: samples has no train prompts")
    # The frozen prompt list: an artifact, so round two's inputs are inspectable in SQL.
    write_parquet(
        ctx.path("regen_prompts"),
        pl.DataFrame({"prompt_id": [pid for pid, _ in prompts], "prompt": [p for _, p in prompts]}),
    )
    spec = RegenerateSpec(
        base=policy_model(ctx.config),
        settings=generation_settings(ctx.config),
        backend=gen_cfg.backend,
        adapters=ctx.path("adapters"),
        representatives=tuple(reps),
        prompts=tuple((pid, p) for pid, p in prompts),
        part_size=cfg.part_size,
        key=ctx.fingerprint,
        mix=gen_cfg.mix_adapters,
    )
    n_parts = len(reps) * spec.chunks
    parts = ctx.keyed_parts(_part_definitions(ctx, spec))
    sizes = [min(cfg.part_size, len(prompts) - c * cfg.part_size) for c in range(spec.chunks)]
    run = map_generation_parts(ctx, spec, n_parts, store=parts, sizes=sizes * len(reps))
    table, counts = _assemble([pl.read_parquet(p) for p in parts.paths()])
    write_parquet(ctx.path("generations"), table)
    parts.complete()
    return {
        "representatives": reps,
        "prompts": len(prompts),
        "parts": {"total": run.parts, "reused": run.resumed},
        **counts,
        "backend": gen_cfg.backend,
    }


def _part_definitions(ctx: StageContext, spec: RegenerateSpec) -> list[dict[str, Any]]:
    """What each part's rows depend on (its key; the stage's identity is added): the base
    policy and the representative's weights (hashed once each), the prompts, the settings,
    the seed and the group it generates in."""
    from dataclasses import asdict

    from paretohqd.hashing import sha256_json
    from paretohqd.stages.kit.identity import adapter_identity, model_identity
    from paretohqd.stages.kit.policy.generate import with_groups

    base = model_identity(spec.base, ctx.hasher)
    adapters = {p: adapter_identity(spec.adapters / p, ctx.hasher) for p in spec.representatives}
    out = []
    for index in range(len(spec.representatives) * spec.chunks):
        pref, _, chunk = spec.part(index)
        out.append(
            {
                "base": base,
                "adapter": adapters[pref],
                "pref_id": pref,
                "prompts": sha256_json(chunk),
                "settings": asdict(spec.settings),
                "backend": spec.backend,
                "seed": spec.seed(index),
            }
        )
    return with_groups(out, spec.groups)


def _assemble(frames: list[pl.DataFrame]) -> tuple[pl.DataFrame, dict[str, int]]:
    """The generations table from the parts (first of each repeated sample_id) and the
    counters: rows generated, duplicates dropped, truncated and skipped prompts, new tokens."""
    import polars as pl

    table = pl.concat(frames) if frames else pl.DataFrame()
    counts: dict[str, int] = {}
    for key, col in (
        ("truncated", "truncated_prompts"),
        ("skipped", "skipped_prompts"),
        ("new_tokens", "new_tokens"),
    ):
        # Per-part counters are repeated on every row of the part: take one per part.
        counts[key] = int(sum(f[col][0] for f in frames if f.height))
    generated = table.height
    table = table.drop("truncated_prompts", "skipped_prompts", "new_tokens").unique(
        "sample_id", keep="first", maintain_order=True
    )
    if table.height == 0:
        raise DataError("regenerate: every prompt was skipped; see generation.long_prompt")
    return table, {"generated": generated, "duplicates_dropped": generated - table.height, **counts}
