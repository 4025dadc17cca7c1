"""The pairwise driver's pieces: pair subsets, and a worker spec another process can receive."""

from __future__ import annotations

import pickle

import numpy as np

from paretohqd.executor import Item
from paretohqd.stages.kit.training.pairwise import (
    PairRows,
    PairwiseSpec,
    PreferencePairs,
    train_preference,
)
from paretohqd.stages.kit.training.sft import SFTSettings
from paretohqd.stages.modpo.config import ModpoConfig
from paretohqd.stages.modpo.objective import ModpoObjective

ROWS = PairRows(
    prompts=["p0", "p1", "p2"],
    a=["a0", "a1", "a2"],
    b=["b0", "b1", "b2"],
    signs=np.array([[1, 0], [0, -1], [1, 1]], dtype=np.float32),
    margins=np.array([[0.1, 0.0], [0.0, -0.2], [0.3, 0.4]]),
)


def test_subset_keeps_the_pairs_in_order() -> None:
    sub = ROWS.subset(np.array([2, 0]))
    assert (sub.prompts, sub.a, sub.b) == (["p2", "p0"], ["a2", "a0"], ["b2", "b0"])
    assert sub.signs.tolist() == [[1, 1], [1, 0]] and sub.margins[:, 1].tolist() == [0.4, 0.0]


def test_the_worker_and_its_spec_pickle() -> None:
    """What a distributed executor ships: a module-level worker, plain values, a class."""
    spec = PairwiseSpec("m", SFTSettings(), ["x", "y"], "sft", ROWS, ModpoConfig(), ModpoObjective)
    item = Item("pref-050-050", {"w": [0.5, 0.5]}, PreferencePairs([0.5, 0.5], np.array([0, 2])))
    worker, spec2, item2 = pickle.loads(pickle.dumps((train_preference, spec, item)))
    assert worker is train_preference and spec2.objective is ModpoObjective
    assert spec2.settings == spec.settings and spec2.rows.signs.tolist() == ROWS.signs.tolist()
    objective = spec2.objective(spec2.rows.subset(item2.payload.keep), [0.5, 0.5], spec2.method)
    assert len(objective.rows) == 2 and objective.k == 0
