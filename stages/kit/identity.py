"""What a model or dataset *is*, for fingerprints: a content hash, or a hub id and revision.

Every stage that loads something from outside the run asks here, so they agree: a local path
is identified by the content hash of its files; anything else is a Hugging Face hub id,
identified as ``hub:<id>@<commit>`` with the commit of the snapshot the local cache holds
(what an offline load uses). A hub id that is not cached is ``hub:<id>@<revision>`` as
configured, or ``@unresolved``: such a fingerprint cannot see the hub move, and says so.
"""

from __future__ import annotations

from pathlib import Path

from paretohqd.config import Config
from paretohqd.hashing import FileHasher


def hub_revision(repo_id: str, revision: str | None = None, *, kind: str = "model") -> str:
    """The commit of ``repo_id`` in the local hub cache, else ``revision`` or ``unresolved``."""
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo_id, revision=revision, repo_type=kind, local_files_only=True)
    except Exception:  # not cached, not a valid id, no huggingface_hub: nothing to resolve
        return revision or "unresolved"
    return Path(path).name


def source_identity(
    config: Config,
    ref: str,
    hasher: FileHasher,
    *,
    revision: str | None = None,
    kind: str = "model",
) -> str:
    """The identity of ``ref``: a path relative to the config (content hash) or a hub id."""
    path = config.resolve(ref)
    if path.exists():
        return hasher.path(path)
    return f"hub:{ref}@{hub_revision(ref, revision, kind=kind)}"


def model_identity(ref: str, hasher: FileHasher) -> str:
    """The identity of a model a stage loads by path or hub id (a start model, the policy):
    the content hash of a local directory, else ``hub:<id>@<commit>``."""
    path = Path(ref)
    if path.exists():
        return hasher.path(path)
    return f"hub:{ref}@{hub_revision(ref)}"


#: The files of a peft adapter directory that define the model (cards, logs and plots do not).
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def adapter_identity(adapter: Path, hasher: FileHasher) -> str:
    """The identity of a LoRA adapter: the hashes of its weights and its config, so a part
    generated with it is reused exactly as long as those bytes stay the same."""
    from paretohqd.hashing import sha256_json

    return sha256_json({name: hasher.file(adapter / name) for name in ADAPTER_FILES})
