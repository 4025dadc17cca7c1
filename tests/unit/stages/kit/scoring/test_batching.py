"""Batches of one token length: every row once, nothing to pad, longest first."""

from __future__ import annotations

import numpy as np
import pytest

from paretohqd.stages.kit.scoring.batching import equal_length_batches


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_equal_length_batches_cover_every_row_once(batch_size: int) -> None:
    lengths = np.random.default_rng(batch_size).integers(2, 12, size=200)
    batches = list(equal_length_batches(lengths, batch_size))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(lengths.size))
    assert all(0 < b.size <= batch_size and np.unique(lengths[b]).size == 1 for b in batches)
    firsts = [int(lengths[b[0]]) for b in batches]
    assert firsts == sorted(firsts, reverse=True)  # longest first
    assert all((np.diff(b) > 0).all() for b in batches)  # input order within a length
    counts = np.unique(lengths, return_counts=True)[1]
    assert len(batches) == sum(-(-counts // batch_size))  # the fewest batches


def test_no_rows_no_batches() -> None:
    assert list(equal_length_batches(np.array([], dtype=np.int64), 4)) == []
