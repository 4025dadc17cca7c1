"""The ``select`` stage: per-preference top-k nearest each preference ray, written as shards.

Writes ``selection.parquet`` (pref_id, rank, sample_id, distance, layer),
``shards/round1/<pref_id>/{data.parquet,README.md}`` (and ``shards/round1/README.md``, which
makes the directory a ``datasets`` repo with one config per preference) and
``shard_overlap.parquet`` (rows shared and Jaccard index for every pair of shards); the
``shards`` SQL view unions every shard. The
pool is the first ``select.layers`` Pareto layers, grown layer by layer until it holds
``pool_factor × k × |grid|`` rows, so that different preferences can pick different data.
Round two declares the same stage over the regenerated pool with k/2.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from paretohqd.config import Config
from paretohqd.stage import Artifact, Stage, StageContext, Tool


def selection_artifact(name: str, path: str, **tags: Any) -> Artifact:
    """A selection table (tags: ``round``, ``layers`` and ``overlap`` artifacts, ``arm``)."""
    return Artifact(name, path, role="selection", tags=tags)


def shards_artifact(name: str, path: str, **tags: Any) -> Artifact:
    """A directory of per-preference shards, one ``<pref_id>/data.parquet`` each."""
    return Artifact(name, path, kind="dir", view=f"{path}/*/data.parquet", role="shards", tags=tags)


SELECTION = selection_artifact(
    "selection", "selection.parquet", round=1, layers="layers", overlap="shard_overlap"
)
SHARDS = shards_artifact("shards", "shards/round1", round=1)
SELECTION_LINEAR = selection_artifact(
    "selection_linear",
    "linear/selection.parquet",
    round=1,
    arm="linear",
    layers="layers",
    overlap="shard_overlap_linear",
)
SHARDS_LINEAR = shards_artifact("shards_linear", "shards/linear", round=1, arm="linear")
SHARD_OVERLAP = Artifact("shard_overlap", "shard_overlap.parquet")
SHARD_OVERLAP_LINEAR = Artifact("shard_overlap_linear", "linear/shard_overlap.parquet")
SQL_FILES = (
    "select_pool_sizes.sql",
    "select_ray.sql",
    "select_linear.sql",
    "select_shard_rows.sql",
    "select_overlap.sql",
    "layer_bounds.sql",
)


def _params(config: Config) -> Any:
    from paretohqd.stages.kit.hub import source_card_params

    return {
        "select": config.select.model_dump(mode="json"),
        "objectives": config.pareto_objectives,
        "sources": source_card_params(config),  # the cards' license and source_datasets
        "run": {"name": config.run.name},  # the repo card's pretty_name
    }


def _plot(
    ctx: StageContext, *, layers: str, selection: str, overlap: str, label: str, output: Any = None
) -> Any:
    from paretohqd.stages.select.plot import plot_stage_selection

    return plot_stage_selection(
        ctx, layers=layers, selection=selection, overlap=overlap, label=label, output=output
    )


def select_stage(
    name: str,
    *,
    layers: str,
    samples: str,
    round_: int,
    k: int,
    selection: Artifact,
    shards: Artifact,
    overlap: Artifact,
    mode: str | None = None,
) -> Stage:
    """Declare a select stage (round one or two) over the given layers and samples.

    ``mode`` overrides ``select.mode`` (the linear-scalarisation comparison arm).
    """
    from paretohqd.stages.select.stage import run_select

    variant = mode or f"round{round_}"
    return Stage(
        name=name,
        fn=partial(
            run_select,
            roles={"layers": layers, "samples": samples},
            round_=round_,
            k=k,
            selection=selection.name,
            shards=shards.name,
            overlap=overlap.name,
            mode=mode,
        ),
        inputs=(layers, samples),
        outputs=(selection, shards, overlap),
        section="select",
        # 5: cards carry the Hub's keys (project's under `paretohqd:`) and the shards
        # directory its own card with a config per preference (rows and their hashes kept)
        version="5",
        params=lambda config: {**_params(config), "round": {"k": k, "mode": mode}},
        sql=SQL_FILES,
        description=f"round-{round_} top-{k} per preference ray, SFT shards with cards",
        tools=(
            Tool(
                "plot-selection",
                partial(
                    _plot,
                    layers=layers,
                    selection=selection.name,
                    overlap=overlap.name,
                    label=variant,
                ),
                "scores by Pareto layer, preference rays, selected points, shard overlap",
                variant=variant,
            ),
        ),
    )


def stages(config: Config) -> list[Stage]:
    """Round one's select stage, and the linear comparison arm when asked for.

    The preference grid is checked here, when the graph is built, so a wrong vector in
    ``select.grid`` is refused before any stage runs rather than after scoring and sorting.
    """
    from paretohqd.stages.kit.preferences import build_grid

    if not config.objectives:
        return []
    build_grid(config.select.grid, len(config.pareto_objectives), step=config.select.step)
    extra = []
    if config.select.compare_linear:
        extra.append(
            select_stage(
                "select_linear",
                layers="layers",
                samples="samples",
                round_=1,
                k=config.select.k,
                selection=SELECTION_LINEAR,
                shards=SHARDS_LINEAR,
                overlap=SHARD_OVERLAP_LINEAR,
                mode="linear",
            )
        )
    return [
        select_stage(
            "select",
            layers="layers",
            samples="samples",
            round_=1,
            k=config.select.k,
            selection=SELECTION,
            shards=SHARDS,
            overlap=SHARD_OVERLAP,
        ),
        *extra,
    ]
