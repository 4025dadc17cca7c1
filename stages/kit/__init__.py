"""The shared kit below the stages: the project's ML library.

Stage packages hold a declaration and a run function; what several of them need lives here,
imported by stages and never importing them:

- ``records``: the normalised sample record, ids and the HH transcript format;
- ``preferences``: preference grids, stable pref_ids, neighbouring preferences;
- ``cards``: the shards' data cards (front matter for people, written beside the Parquet);
- ``pareto``: the exact non-dominated sorting kernels;
- ``scoring``: the reward scorers (classifiers, embedding heads, heuristics, columns), batching
  and the score cache;
- ``policy``: policy loading, generation backends (transformers, vLLM), llama2.c conversion;
- ``training``: the LoRA SFT loop, the pairwise methods' loop and losses, PAMA, the solvers
  (CAGrad, RACO, MGDA, Theorem 1) and the published learning-rate recipes.
"""
