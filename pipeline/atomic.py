"""Atomic writes: a reader never sees a half-written file.

Everything is written to a temporary name in the same directory and renamed into place, so a
crash or Ctrl-C leaves either the old file or the new one, never a truncated one. A write the
machine refuses (a full disk, a read-only directory) raises its ``OSError`` naming the target
path, not the temporary one, so the user learns which output could not be written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``path``, on failure remove it.

    Works for files and directories: a directory target that exists is replaced whole.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _naming(exc, path.parent) from exc
    tmp = _tmp_name(path)
    try:
        yield tmp
        if tmp.is_dir() and path.exists():
            old = _tmp_name(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        raise _naming(exc, path) from exc
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` naming ``path`` (writers such as pyarrow's name no file, others name the
    temporary one); same errno, so the same ``OSError`` subclass."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet(path: Path, frame: pl.DataFrame | pa.Table) -> None:
    """Write a polars DataFrame or an Arrow table to Parquet atomically (zstd)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = frame if isinstance(frame, pa.Table) else frame.to_arrow()
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def remove(path: Path) -> None:
    """Remove a file or a directory tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def prune_dirs(root: Path, keep: set[str]) -> list[str]:
    """Delete the subdirectories of ``root`` not named in ``keep`` (per-preference outputs of a
    preference that left the grid, heads no longer configured); return their names."""
    import shutil

    removed = []
    if root.exists():
        for child in sorted(root.iterdir()):
            if child.is_dir() and not child.name.startswith(".") and child.name not in keep:
                shutil.rmtree(child)
                removed.append(child.name)
    return removed
