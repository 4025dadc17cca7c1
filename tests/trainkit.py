"""Training rows shared by the training-loop tests (sequential and fused): preference pairs
with a tie, two objectives that disagree on one pair, and margins of both signs."""

from __future__ import annotations

import numpy as np

from paretohqd.stages.kit.training.pairwise import PairRows

PAIRS = PairRows(
    prompts=["\n\nHuman: How do I bake bread?\n\nAssistant:"] * 3
    + ["\n\nHuman: Tell me a story.\n\nAssistant:"] * 3,
    a=[" Mix flour, water and yeast, then bake it.", " Once upon a time a cat was happy.", " Yes."]
    * 2,
    b=[" No.", " Go away.", " Maybe later, friend."] * 2,
    signs=np.array([[1.0, 1.0], [1.0, -1.0], [0.0, -1.0]] * 2, dtype=np.float32),
    margins=np.array([[0.5, 0.2], [0.3, -0.4], [0.0, -0.1]] * 2),
)
