"""Training: LoRA SFT (``sft``), the pairwise methods' loop (``loop``) with their losses and
method definitions (MODPO, RACO), PAMA's online loop, the gradient-combination solvers, and the
published learning-rate recipes (``recipes``)."""
