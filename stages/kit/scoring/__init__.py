"""Reward scorers behind ``[[objectives]]``: a Protocol and registry (``scorers``), the
Hugging Face classifier, the embedding Bradley-Terry head, heuristics, numeric columns, length-
sorted batching and the cross-run score cache."""
