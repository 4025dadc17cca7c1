"""The run manifest: what each stage produced, from what, and how long it took.

``manifest.json`` in the run directory holds one entry per completed stage: its fingerprint and
the components it was computed from (so ``status`` can say *why* a stage is stale), row counts
and schemas of its outputs, wall and CPU time, and the stage's own metadata. An entry is removed
before a stage starts and written only after it succeeds: a killed stage is never "complete".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from paretohqd.atomic import write_text
from paretohqd.errors import StageError

MANIFEST_NAME = "manifest.json"


class Manifest:
    """Read-modify-write access to ``RUN_DIR/manifest.json`` (atomic on every save)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / MANIFEST_NAME
        self.data: dict[str, Any] = {"format": 1, "stages": {}}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise StageError(
                    f"{self.path} is unreadable ({exc}); it is written atomically, so something "
                    "else changed it: move it away and run again (every stage will run anew)"
                ) from None
            if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
                raise StageError(
                    f"{self.path} is not a paretohqd manifest; move it away and run again "
                    "(every stage will run anew)"
                )
            self.data = data
            self.data.setdefault("stages", {})

    @property
    def stages(self) -> dict[str, Any]:
        """Entries of the completed stages, by name."""
        stages: dict[str, Any] = self.data["stages"]
        return stages

    def get(self, stage: str) -> dict[str, Any] | None:
        """The entry of one stage, or ``None`` if it has not completed."""
        return self.stages.get(stage)

    def set(self, stage: str, entry: dict[str, Any]) -> None:
        """Record a completed stage and save."""
        self.stages[stage] = entry
        self.save()

    def invalidate(self, stage: str) -> None:
        """Forget a stage (called before it runs) and save."""
        if self.stages.pop(stage, None) is not None:
            self.save()

    def save(self) -> None:
        """Write the manifest atomically."""
        write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True, default=str))
