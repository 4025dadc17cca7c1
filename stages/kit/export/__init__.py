"""Copies of a run's artifacts in formats other tools read (``paretohqd export ...``)."""
