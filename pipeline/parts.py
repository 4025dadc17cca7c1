"""Resumable part files for long stages.

A long stage (score, regenerate, evaluate) splits its work into numbered parts and writes each
part atomically. After a crash or Ctrl-C, the rerun finds the parts already written and only
does the rest: no lost and no duplicated rows. Two stores:

- :class:`PartStore` keeps parts in a directory keyed by the stage's fingerprint, so parts made
  under other parameters are never reused, and removes them once the stage's artifact is
  written (score: its rows are cached per row anyway).
- :class:`KeyedPartStore` names each part by its own key (what defines that part alone: the
  adapter's weights, the prompts of its chunk, its seed, ...) and keeps the parts of the last
  completed run, so a stage that runs again because *something else* changed (a preference
  added to the grid) reuses every part whose key is unchanged: regenerate and evaluate only
  generate for new or changed adapters.
"""

from __future__ import annotations

import json
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from paretohqd.atomic import remove, write_parquet, write_text

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa


class Parts(Protocol):
    """What :meth:`paretohqd.executor.Executor.map_parts` writes into."""

    def begin(self, *, force: bool = False) -> None:
        """Prepare for an attempt: drop what may not be reused."""

    def done(self, index: int) -> bool:
        """Whether part ``index`` is already written (and may be reused)."""

    def write(self, index: int, frame: pl.DataFrame | pa.Table) -> None:
        """Write part ``index`` atomically."""

    def paths(self) -> list[Path]:
        """The written parts, in index order."""

    def iter_tables(self) -> Iterator[pa.Table]:
        """Read the written parts, in index order."""

    def complete(self) -> None:
        """The stage's artifact is written: keep or drop the parts as the store's policy says."""


class _Reading(ABC):
    """Reading back for both stores: whatever :meth:`paths` lists, in order."""

    @abstractmethod
    def paths(self) -> list[Path]:
        """The written parts, in order."""

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


class PartStore(_Reading):
    """Numbered Parquet parts under ``root/<fingerprint[:16]>/``."""

    def __init__(self, root: Path, fingerprint: str) -> None:
        self.root = Path(root)
        self.dir = self.root / fingerprint[:16]

    def _part(self, index: int) -> Path:
        return self.dir / f"part-{index:06d}.parquet"

    def begin(self, *, force: bool = False) -> None:
        """Remove parts left by runs with another fingerprint (an interrupted attempt's parts
        under this fingerprint are resumed, forced or not)."""
        self.drop_stale()

    def done(self, index: int) -> bool:
        """Whether part ``index`` was completely written by an earlier attempt."""
        return self._part(index).exists()

    def write(self, index: int, frame: pl.DataFrame | pa.Table) -> None:
        """Write part ``index`` atomically."""
        write_parquet(self._part(index), frame)

    def paths(self) -> list[Path]:
        """The complete parts, in order."""
        return sorted(self.dir.glob("part-*.parquet")) if self.dir.exists() else []

    def drop_stale(self) -> None:
        """Remove parts left by runs with another fingerprint."""
        if self.root.exists():
            for child in self.root.iterdir():
                if child != self.dir:
                    shutil.rmtree(child, ignore_errors=True)

    def complete(self) -> None:
        """Remove every part: the artifact holds their rows."""
        self.clear()

    def clear(self) -> None:
        """Remove every part (after the final artifact is written)."""
        shutil.rmtree(self.root, ignore_errors=True)


#: The keyed store's record of which parts a completed run used (and a forced run redoes).
COMPLETED = ".completed.json"


class KeyedPartStore(_Reading):
    """Parts named by their own keys under ``root``: ``keys[i]`` defines part ``i``.

    The parts of the last completed run stay as a cache (:meth:`complete` prunes the rest and
    records them), so an unforced run reuses every part whose key is unchanged. A forced run
    redoes the completed run's parts but still resumes those of an interrupted attempt.
    """

    def __init__(self, root: Path, keys: Sequence[str]) -> None:
        if len(set(keys)) != len(keys):
            raise ValueError(f"part keys repeat under {root}")
        self.root = Path(root)
        self.keys = list(keys)

    def _part(self, key: str) -> Path:
        return self.root / f"{key}.parquet"

    def _completed(self) -> list[str]:
        try:
            data = json.loads((self.root / COMPLETED).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return []
        return [str(k) for k in data] if isinstance(data, list) else []

    def begin(self, *, force: bool = False) -> None:
        """Forced: drop the parts of the last completed run (their record goes first, so a
        kill in between leaves only unrecorded parts, which are an attempt's)."""
        if not force:
            return
        completed = self._completed()
        remove(self.root / COMPLETED)
        for key in completed:
            remove(self._part(key))

    def done(self, index: int) -> bool:
        """Whether part ``index``'s key has a written part."""
        return self._part(self.keys[index]).exists()

    def write(self, index: int, frame: pl.DataFrame | pa.Table) -> None:
        """Write part ``index`` atomically under its key."""
        write_parquet(self._part(self.keys[index]), frame)

    def paths(self) -> list[Path]:
        """The written parts of this run's keys, in index order."""
        return [p for k in self.keys if (p := self._part(k)).exists()]

    def complete(self) -> None:
        """Keep exactly this run's parts, recorded as the completed run's."""
        keep = {self._part(k).name for k in self.keys}
        if self.root.exists():
            for path in self.root.glob("*.parquet"):
                if path.name not in keep:
                    remove(path)
        write_text(self.root / COMPLETED, json.dumps(self.keys))
