"""A persistent score cache: re-scoring identical text with an identical scorer is free.

Keys are ``sha256(prompt, response)`` (:func:`text_keys`); values live under
``<root>/<scorer identity hash>/*.parquet`` (columns ``key`` string, ``value`` float64). Each
:meth:`ScoreCache.store` writes one new file atomically (temp name + ``os.replace``), so a crash
never leaves a torn file and concurrent writers never clobber each other; many small files are
compacted into one when they pile up.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paretohqd.hashing import sha256_json

_COMPACT_AT = 64


def text_key(prompt: str, response: str) -> str:
    """sha256 hex of the prompt and response, length-prefixed so no two pairs collide."""
    p = prompt.encode("utf-8", "surrogatepass")
    r = response.encode("utf-8", "surrogatepass")
    return hashlib.sha256(b"%d\n" % len(p) + p + r).hexdigest()


def text_keys(prompts: Sequence[str], responses: Sequence[str]) -> list[str]:
    """:func:`text_key` per row."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    return [text_key(p, r) for p, r in zip(prompts, responses, strict=True)]


def identity_hash(scorer: Any) -> str:
    """The cache namespace of a scorer: its ``identity_hash()``, or sha256 of ``identity()``.

    A plain string is taken as an already computed hash.
    """
    if isinstance(scorer, str):
        return scorer
    fn = getattr(scorer, "identity_hash", None)
    if callable(fn):
        return str(fn())
    return str(sha256_json(scorer.identity()))


class ScoreCache:
    """Scores by (text key, scorer identity), persisted as Parquet under ``root``.

    Parameters
    ----------
    root
        Cache directory (created on first store).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._mem: dict[str, dict[str, float]] = {}
        self._seen: dict[str, set[str]] = {}

    def _load(self, ident: str) -> dict[str, float]:
        """Read this identity's files not read yet into memory."""
        import pyarrow.parquet as pq

        mem = self._mem.setdefault(ident, {})
        seen = self._seen.setdefault(ident, set())
        folder = self.root / ident
        if not folder.is_dir():
            return mem
        for path in sorted(folder.glob("*.parquet")):
            if path.name in seen:
                continue
            try:
                table = pq.read_table(path, columns=["key", "value"])
            except (FileNotFoundError, OSError):
                continue  # removed by a concurrent compaction: its rows are in the merged file
            mem.update(zip(table.column("key").to_pylist(), table.column("value").to_pylist(),
                           strict=True))  # fmt: skip
            seen.add(path.name)
        return mem

    def lookup(self, scorer: Any, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Cached values for ``keys``.

        Returns
        -------
        values
            float64, NaN where missing.
        missing
            bool mask, True where the key is not cached.
        """
        mem = self._load(identity_hash(scorer))
        values = np.fromiter((mem.get(k, np.nan) for k in keys), dtype=np.float64, count=len(keys))
        missing = np.fromiter((k not in mem for k in keys), dtype=bool, count=len(keys))
        return values, missing

    def store(self, scorer: Any, keys: Sequence[str], values: Sequence[float] | np.ndarray) -> None:
        """Persist scores for ``keys`` (one new Parquet file, written atomically)."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(keys),):
            raise ValueError(f"{len(keys)} keys but values of shape {values.shape}")
        if not len(keys):
            return
        ident = identity_hash(scorer)
        mem = self._load(ident)
        name = f"{uuid.uuid4().hex}.parquet"
        self._write(self.root / ident / name, list(keys), values)
        mem.update(zip(keys, values.tolist(), strict=True))
        self._seen[ident].add(name)
        if len(self._seen[ident]) >= _COMPACT_AT:
            self.compact(ident)

    def compact(self, ident: str) -> None:
        """Merge this identity's files into one (written before the old ones are removed)."""
        mem = self._load(ident)
        folder = self.root / ident
        old = [p for p in folder.glob("*.parquet") if p.name in self._seen[ident]]
        name = f"{uuid.uuid4().hex}.parquet"
        self._write(folder / name, list(mem), np.fromiter(mem.values(), dtype=np.float64))
        for path in old:
            path.unlink(missing_ok=True)
        self._seen[ident] = {name}

    @staticmethod
    def _write(path: Path, keys: list[str], values: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        table = pa.table({"key": pa.array(keys, pa.string()), "value": pa.array(values)})
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
