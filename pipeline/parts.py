"""Resumable part files for long stages.

A long stage (score, regenerate, evaluate) splits its work into numbered parts and writes each
part atomically. After a crash or Ctrl-C, the rerun finds the parts already written and only
does the rest: no lost and no duplicated rows. Parts live in a directory keyed by the stage's
fingerprint, so parts made under other parameters are never reused.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from paretohqd.atomic import write_parquet

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa


class PartStore:
    """Numbered Parquet parts under ``root/<fingerprint[:16]>/``."""

    def __init__(self, root: Path, fingerprint: str) -> None:
        self.root = Path(root)
        self.dir = self.root / fingerprint[:16]

    def _part(self, index: int) -> Path:
        return self.dir / f"part-{index:06d}.parquet"

    def done(self, index: int) -> bool:
        """Whether part ``index`` was completely written by an earlier attempt."""
        return self._part(index).exists()

    def write(self, index: int, frame: pl.DataFrame | pa.Table) -> None:
        """Write part ``index`` atomically."""
        write_parquet(self._part(index), frame)

    def paths(self) -> list[Path]:
        """The complete parts, in order."""
        return sorted(self.dir.glob("part-*.parquet")) if self.dir.exists() else []

    def iter_tables(self) -> Iterator[pa.Table]:
        """Read the parts in order."""
        import pyarrow.parquet as pq

        for path in self.paths():
            yield pq.read_table(path)

    def read_all(self) -> pa.Table | None:
        """All parts concatenated (``None`` when there are none)."""
        import pyarrow as pa

        tables = list(self.iter_tables())
        return pa.concat_tables(tables) if tables else None

    def drop_stale(self) -> None:
        """Remove parts left by runs with another fingerprint."""
        if self.root.exists():
            for child in self.root.iterdir():
                if child != self.dir:
                    shutil.rmtree(child, ignore_errors=True)

    def clear(self) -> None:
        """Remove every part (after the final artifact is written)."""
        shutil.rmtree(self.root, ignore_errors=True)
