"""How different the preference shards are: distinct rows, pairwise Jaccard, neighbours.

ParetoHqD's premise is that each preference direction trains on *its own* data near the front.
When the pool is too small every ray picks from the same few points and the shards collapse
into one; these numbers make that visible. The pairwise table comes from
``sql/select_overlap.sql``; the summaries here go to the manifest, the shard cards and
``paretohqd summary``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from paretohqd.stages.kit.preferences import Preference, adjacent_pairs, one_hot


def _pair_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "pref_a": row["pref_a"],
        "pref_b": row["pref_b"],
        "shared": int(row["shared"]),
        "jaccard": round(float(row["jaccard"]), 4),
    }


def overlap_summary(pairs: Any, selection: Any, prefs: Sequence[Preference]) -> dict[str, Any]:
    """Run-level overlap of one selection, for the manifest metadata.

    Parameters
    ----------
    pairs
        The ``select_overlap.sql`` table (pref_a, pref_b, rows_a, rows_b, shared, jaccard).
    selection
        The selection table (pref_id, sample_id, ...).
    prefs
        The preference grid, for the one-hot and adjacent pairs.

    Returns
    -------
    dict
        ``rows``, ``distinct_rows``, ``distinct_share``; ``jaccard`` (mean and max over all pairs
        and the pair that attains the max); ``one_hot`` and ``adjacent`` (the pairs, their mean
        and max Jaccard).
    """
    import polars as pl

    rows = selection.height
    distinct = selection["sample_id"].n_unique()
    out: dict[str, Any] = {
        "rows": rows,
        "distinct_rows": distinct,
        "distinct_share": round(distinct / rows, 4) if rows else 0.0,
    }
    if pairs.height == 0:  # a single preference: nothing can overlap
        return out | {"jaccard": None, "one_hot": None, "adjacent": None}
    top = pairs.sort(["jaccard", "pref_a", "pref_b"], descending=[True, False, False]).row(
        0, named=True
    )
    out["jaccard"] = {
        "mean": round(float(pairs["jaccard"].to_numpy().mean()), 4),
        "max": round(float(top["jaccard"]), 4),
        "max_pair": [top["pref_a"], top["pref_b"]],
    }
    ends = sorted(p.pref_id for p in prefs if one_hot(p))
    for name, wanted in (
        ("one_hot", [(a, b) for i, a in enumerate(ends) for b in ends[i + 1 :]]),
        ("adjacent", adjacent_pairs(prefs)),
    ):
        keys = pl.DataFrame(
            {"pref_a": [a for a, _ in wanted], "pref_b": [b for _, b in wanted]},
            schema={"pref_a": pl.String, "pref_b": pl.String},
        )
        found = keys.join(pairs, on=["pref_a", "pref_b"], how="inner")
        if found.height == 0:
            out[name] = None
            continue
        jac = found["jaccard"].to_numpy()
        out[name] = {
            "mean": round(float(jac.mean()), 4),
            "max": round(float(jac.max()), 4),
            "pairs": [_pair_record(r) for r in found.iter_rows(named=True)],
        }
    return out


def shard_overlap(
    pref_id: str, pairs: Any, selection: Any, adjacent: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """One shard's overlap with the others, for its card.

    ``unique_rows`` are the shard's rows that no other shard holds; ``adjacent`` lists the
    Jaccard index with each neighbouring preference (``adjacent`` from
    :func:`~paretohqd.stages.kit.preferences.adjacent_pairs`); ``max`` names the most similar shard.
    """
    import polars as pl

    mine = selection.filter(pl.col("pref_id") == pref_id)["sample_id"]
    others = selection.filter(pl.col("pref_id") != pref_id)["sample_id"]
    unique = int((~mine.is_in(others.implode())).sum())
    touching = pairs.filter((pl.col("pref_a") == pref_id) | (pl.col("pref_b") == pref_id))
    out: dict[str, Any] = {"unique_rows": unique, "adjacent": {}, "max": None}
    if touching.height == 0:
        return out
    other = (
        touching.with_columns(
            pl.when(pl.col("pref_a") == pref_id)
            .then(pl.col("pref_b"))
            .otherwise(pl.col("pref_a"))
            .alias("other")
        )
        .select("other", "shared", "jaccard")
        .sort(["jaccard", "other"], descending=[True, False])
    )
    top = other.row(0, named=True)
    out["max"] = {
        "pref_id": top["other"],
        "shared": int(top["shared"]),
        "jaccard": round(float(top["jaccard"]), 4),
    }
    neighbours = {b if a == pref_id else a for a, b in adjacent if pref_id in (a, b)}
    for row in (
        other.filter(pl.col("other").is_in(sorted(neighbours))).sort("other").iter_rows(named=True)
    ):
        out["adjacent"][row["other"]] = {
            "shared": int(row["shared"]),
            "jaccard": round(float(row["jaccard"]), 4),
        }
    return out
