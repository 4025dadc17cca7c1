"""Stable hashes for fingerprints: canonical JSON, file contents, directories.

File hashes are cached by (path, size, mtime_ns) in a small JSON file, so ``status`` on a run
with large datasets or weights does not re-read them every time.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, allow_nan=True)


def sha256_json(value: Any) -> str:
    """sha256 hex digest of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def sha256_text(text: str) -> str:
    """sha256 hex digest of a UTF-8 string."""
    return hashlib.sha256(text.encode()).hexdigest()


class FileHasher:
    """Content hashes of files and directories, cached on (size, mtime_ns).

    Parameters
    ----------
    cache_file
        Where to persist the cache between processes; ``None`` keeps it in memory only.
    """

    def __init__(self, cache_file: Path | None = None) -> None:
        self._cache_file = cache_file
        self._cache: dict[str, list[Any]] = {}
        self._dirty = False
        if cache_file is not None and cache_file.exists():
            try:
                self._cache = json.loads(cache_file.read_text())
            except (OSError, json.JSONDecodeError):
                self._cache = {}

    @property
    def cache_file(self) -> Path | None:
        """Where the cache persists, so a worker process can read the hashes already known."""
        return self._cache_file

    def file(self, path: Path) -> str:
        """sha256 of one file's bytes."""
        path = Path(path).resolve()
        st = path.stat()
        key = str(path)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return str(hit[2])
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        value = digest.hexdigest()
        self._cache[key] = [st.st_size, st.st_mtime_ns, value]
        self._dirty = True
        return value

    def path(self, path: Path) -> str:
        """sha256 over a file, or over every file of a directory (relative names included)."""
        path = Path(path)
        if path.is_file():
            return self.file(path)
        if not path.is_dir():
            raise FileNotFoundError(path)
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = child.relative_to(path).as_posix()
            if rel.startswith(".") or "/." in rel:
                continue
            digest.update(rel.encode() + b"\0" + self.file(child).encode() + b"\n")
        return digest.hexdigest()

    def save(self) -> None:
        """Persist the cache (atomically) if anything was added."""
        if self._cache_file is None or not self._dirty:
            return
        self._cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._cache_file.with_name(f".{self._cache_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._cache))
        os.replace(tmp, self._cache_file)
        self._dirty = False
