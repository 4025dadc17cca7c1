"""The held-out check: an evaluation prompt found in training data stops the evaluation."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from paretohqd.errors import StageError
from paretohqd.stages.evaluate.stage import check_heldout


def _con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register(
        "samples", pa.table({"sample_id": ["s1", "s2", "s3"], "prompt_id": ["p1", "p2", "p3"]})
    )
    con.register("shards", pa.table({"sample_id": ["s1"]}))
    con.register("pairs", pa.table({"prompt_id": ["p2"]}))
    con.register("regen_prompts", pa.table({"prompt_id": ["p1"]}))
    return con


def test_clean_split_passes() -> None:
    check_heldout(_con(), ["shards"], ["pairs", "regen_prompts"], ["p3"])


@pytest.mark.parametrize(("prompt", "view"), [("p1", "shards"), ("p2", "pairs")])
def test_leak_is_named(prompt: str, view: str) -> None:
    with pytest.raises(StageError, match=rf"appear in `{view}` \(e\.g\. {prompt}\)"):
        check_heldout(_con(), ["shards"], ["pairs"], [prompt, "p3"])
