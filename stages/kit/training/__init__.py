"""Training: the one loop (``loop``) and its SFT objective (``sft``), the pairwise methods'
shared objective and per-preference driver (``pairwise``), their losses (``losses``), the
gradient-combination solvers (``solvers``), and the published learning-rate recipes
(``recipes``). Each method's own objective lives in its stage package (``stages/modpo``,
``stages/raco``, ``stages/pama``)."""
