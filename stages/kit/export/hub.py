"""``paretohqd export hub``: a run's adapters, models and shards as Hugging Face Hub repos.

A run keeps what local loading needs: PEFT writes the base model's absolute path into each
adapter's ``adapter_config.json`` and the training loop records it in ``train_state.json``.
Neither means anything on another machine, so the export writes clean copies instead of
touching the run:

- ``OUT/models/<name>/`` per adapter: the weights (and any other file the method wrote),
  ``adapter_config.json`` whose ``base_model_name_or_path`` is a Hub id, ``train_state.json``
  with every path of the run replaced by the repo it was exported as, and a model card with the
  Hub's keys (``base_model``, ``library_name: peft``, ``license``, ``tags``, ``datasets``: the
  shards it trained on) and the project's record under ``paretohqd:``;
- ``OUT/models/<name>/`` per full model of the run (the converted base policy, the shared SFT
  start), when an adapter starts from it: the base of an adapter is then that repo;
- ``OUT/datasets/<name>/`` per shards directory, already a ``datasets`` repo (one config per
  preference);
- ``OUT/export.json``: every repo with its id and where in the run it came from.

A base model is named by its Hub id when the config names one (``policy.model``), by the
exported repo when the run built it, or by ``--base-model`` when it is a local directory; an
absolute local path never leaves the run, and the export checks every file it wrote for one.
Repo ids are ``NAMESPACE/NAME`` with ``--namespace`` (what ``hf upload`` takes), else ``NAME``,
which also resolves locally: from ``OUT/models``, ``AutoPeftModelForCausalLM`` finds the base.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from paretohqd.config import Config
from paretohqd.errors import ConfigError, DataError, UsageError
from paretohqd.stage import Artifact
from paretohqd.stages.kit.hub import front_matter, licenses

#: The export's index: every repo, its id and its source in the run.
INDEX = "export.json"
#: Files of an adapter or model directory written anew rather than copied.
_REWRITTEN = frozenset({"README.md", "adapter_config.json", "train_state.json"})
#: Files whose text is scanned and cleaned of the run's absolute paths.
_TEXT = (".json", ".md", ".txt", ".yaml", ".yml", ".toml")


@dataclass(frozen=True)
class HubRepo:
    """One exported repo: ``kind`` model or dataset, its folder ``OUT/<kind>s/<name>``, its
    ``repo_id``, the directory of the run it came from and the artifact's directory (``group``:
    one per method's adapters), both relative to the run."""

    kind: str
    name: str
    repo_id: str
    source: str
    group: str

    @property
    def folder(self) -> str:
        """Where it lies under the export directory."""
        return f"{self.kind}s/{self.name}"


@dataclass(frozen=True)
class HubExport:
    """What :func:`export_hub` wrote."""

    out: Path
    repos: list[HubRepo]


def slug(text: str) -> str:
    """``text`` as a Hub repo name part: letters, digits, ``-`` and ``.`` only."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.").lower() or "x"


def export_hub(
    *,
    run_dir: Path,
    config: Config,
    artifacts: Sequence[Artifact],
    out: Path,
    namespace: str | None = None,
    base_model: str | None = None,
    license: str | None = None,
    force: bool = False,
) -> HubExport:
    """Write the run's adapters, full models and shards (``artifacts``: those of roles
    ``adapters``, ``model``, ``policy`` and ``shards``) as Hub repos under ``out``.

    ``base_model`` is the Hub id of the policy when the run knows it only as a local directory
    (converted from llama2.c, or ``policy.model`` a path); ``license`` is the models' license
    (default: the sources' one license, else ``other``). ``force`` replaces an earlier export.
    """
    from paretohqd.atomic import atomic_path

    if namespace is not None and not re.fullmatch(r"[A-Za-z0-9][\w.-]*", namespace):
        raise UsageError(
            f"--namespace {namespace!r}: give a Hub user or organisation name, e.g. my-org"
        )
    _check_out(out, force)
    plan = _plan(run_dir, config, artifacts, namespace, base_model, license)
    with atomic_path(out) as tmp:
        for repo, write in plan.writers:
            write(tmp / repo.folder)
        index = {
            "run": config.run.name,
            "namespace": namespace,
            "repos": [asdict(r) | {"folder": r.folder} for r, _ in plan.writers],
        }
        (tmp / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        _check_clean(tmp, plan.private)
    return HubExport(out, [r for r, _ in plan.writers])


def _check_out(out: Path, force: bool) -> None:
    """Refuse to write into a non-empty directory, unless ``force`` and it is an export."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out}: a file is there; give a directory to write the repos to")
    if not any(out.iterdir()):
        return
    if not (out / INDEX).exists():
        raise ConfigError(
            f"--out {out}: the directory holds other files; give a new or empty directory"
        )
    if not force:
        raise ConfigError(f"--out {out}: an earlier export is there; add --force to replace it")


@dataclass
class _Plan:
    """The repos to write (each with its writer), and the local paths that must not leak."""

    writers: list[tuple[HubRepo, Any]]
    private: list[str]


def _plan(
    run_dir: Path,
    config: Config,
    artifacts: Sequence[Artifact],
    namespace: str | None,
    base_model: str | None,
    license: str | None,
) -> _Plan:
    """Decide every repo's name and id first, so cards can link the repos they depend on."""

    def repo(kind: str, name: str, source: Path, art: Artifact) -> HubRepo:
        full = slug(f"{config.run.name}-{name}")
        repo_id = f"{namespace}/{full}" if namespace else full
        return HubRepo(kind, full, repo_id, source.relative_to(run_dir).as_posix(), art.path)

    def present(role: str) -> list[Artifact]:
        return [a for a in artifacts if a.role == role and (run_dir / a.path).is_dir()]

    datasets = {
        a.name: repo("dataset", a.path, run_dir / a.path, a)
        for a in sorted(present("shards"), key=lambda a: (a.tags.get("round", 0), a.path))
        if (run_dir / a.path / "README.md").exists()
    }
    models: list[tuple[HubRepo, Path]] = []
    if base_model is None:
        models += [
            (repo("model", "base", run_dir / a.path, a), run_dir / a.path)
            for a in present("policy")
        ]
    models += [
        (repo("model", a.tags.get("method", a.name), run_dir / a.path, a), run_dir / a.path)
        for a in present("model")
    ]
    adapters: list[tuple[HubRepo, Path, Artifact]] = [
        (repo("model", f"{a.tags['method']}-{d.name}", d, a), d, a)
        for a in sorted(present("adapters"), key=lambda a: a.tags.get("order", 0))
        for d in sorted((run_dir / a.path).iterdir())
        if (d / "adapter_config.json").exists()
    ]
    # Every local directory an exported file may name (as written, and resolved), and the
    # repo it becomes.
    named = [(p, r.repo_id) for r, p in models] + [(d, r.repo_id) for r, d, _ in adapters]
    if base_model is not None and config.policy is not None:
        from paretohqd.stages.kit.policy.identity import policy_model

        policy = Path(policy_model(config))
        if policy.is_absolute() or policy.exists():
            named.append((policy, base_model))
    run_dirs = {str(run_dir), str(run_dir.resolve())} | _moved_from(run_dir, named, adapters)
    local = {
        str(Path(base) / p.relative_to(run_dir)) if p.is_relative_to(run_dir) else str(p): rid
        for p, rid in named
        for base in sorted(run_dirs)
    } | {str(p.resolve()): rid for p, rid in named}
    private = [*sorted(run_dirs), str(config.resolve(".").resolve())]
    scrub = _Scrubber(local, sorted(run_dirs))
    model_license = license or _one_license(config)

    writers: list[tuple[HubRepo, Any]] = []
    for r in datasets.values():
        writers.append((r, _dataset_writer(run_dir / r.source, scrub)))
    for r, path in models:
        writers.append((r, _model_writer(r, path, scrub, model_license)))
    for r, path, art in adapters:
        data = datasets.get(art.tags.get("data", ""))
        writers.append((r, _adapter_writer(r, path, art, data, scrub, model_license)))
    return _Plan(writers, private)


def _moved_from(
    run_dir: Path,
    named: Sequence[tuple[Path, str]],
    adapters: Sequence[tuple[HubRepo, Path, Artifact]],
) -> set[str]:
    """Where a run that was moved or copied lived when it trained: the absolute paths its
    adapters recorded (base model, adapter continued) that end in a directory of this run."""
    inside = [p.relative_to(run_dir).as_posix() for p, _ in named if p.is_relative_to(run_dir)]
    states = [d / "train_state.json" for _, d, _ in adapters]
    states += [p / "adapter" / "train_state.json" for p, _ in named]
    found: set[str] = set()
    for path in states:
        if not path.exists():
            continue
        state = json.loads(path.read_text())
        for value in (state.get("base_model"), state.get("init_adapter")):
            if not isinstance(value, str) or not Path(value).is_absolute():
                continue
            for rel in inside:
                if value.endswith("/" + rel) and Path(value[: -len(rel) - 1]).name == run_dir.name:
                    found.add(value[: -len(rel) - 1])
    return found


def _one_license(config: Config) -> str:
    """The sources' license when they agree on one, else ``other``."""
    found = licenses(config)
    return found if isinstance(found, str) and found != "unknown" else "other"


class _Scrubber:
    """Replaces the run's local paths in text: an exported directory by its repo id, any
    other path under the run by its path relative to the run."""

    def __init__(self, local: Mapping[str, str], run_dirs: Sequence[str]) -> None:
        self.local = sorted(local.items(), key=lambda kv: len(kv[0]), reverse=True)
        self.run_dirs = sorted(run_dirs, key=len, reverse=True)

    def text(self, value: str) -> str:
        for path, repo_id in self.local:
            value = value.replace(path, repo_id)
        for run_dir in self.run_dirs:
            value = value.replace(run_dir + os.sep, "").replace(run_dir, ".")
        return value

    def base(self, value: str, where: str) -> str:
        """The Hub id an adapter or model names as its base (``value``: as it was trained)."""
        mapped = dict(self.local).get(value)
        if mapped is not None:
            return mapped
        if Path(value).is_absolute():
            raise ConfigError(
                f"{where} starts from the local model {self.text(value)}, which has no Hub id; "
                "pass --base-model OWNER/NAME naming that model on the Hub"
            )
        return value  # the config named a hub id

    def json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        return value


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link when the filesystem allows (weights can be large; the run replaces files
    by renaming, never in place, so a link cannot change under the export), else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _copy_files(src: Path, dst: Path, scrub: _Scrubber, *, skip: frozenset[str]) -> None:
    """Every visible file of ``src`` (not its subdirectories), text cleaned of local paths."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.name not in skip:
            if f.suffix in _TEXT:
                (dst / f.name).write_text(scrub.text(f.read_text()))
            else:
                _link_or_copy(f, dst / f.name)


def _body(card: Path) -> str:
    """A card's text after its front matter ('' when there is no card)."""
    if not card.exists():
        return ""
    text = card.read_text()
    if text.startswith("---\n") and (end := text.find("\n---\n", 4)) >= 0:
        return text[end + 5 :]
    return text


def _dataset_writer(src: Path, scrub: _Scrubber) -> Any:
    def write(dst: Path) -> None:
        _copy_files(src, dst, scrub, skip=frozenset())
        for sub in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
            _copy_files(sub, dst / sub.name, scrub, skip=frozenset())

    return write


def _model_writer(repo: HubRepo, src: Path, scrub: _Scrubber, license: str) -> Any:
    """A full model of the run (the converted base, the merged SFT start) as a model repo."""

    def write(dst: Path) -> None:
        _copy_files(src, dst, scrub, skip=_REWRITTEN)
        state_file = src / "adapter" / "train_state.json"  # a merged model's own training
        standard: dict[str, Any] = {}
        if state_file.exists():
            state = json.loads(state_file.read_text())
            standard["base_model"] = scrub.base(state["base_model"], repo.source)
            standard["base_model_relation"] = "finetune"
        standard |= {
            "library_name": "transformers",
            "license": license,
            "pipeline_tag": "text-generation",
            "tags": ["paretohqd"],
        }
        adapter = src / "adapter"  # a merged model keeps the adapter it merged
        if "base_model" in standard and (adapter / "adapter_config.json").exists():
            _copy_files(adapter, dst / "adapter", scrub, skip=_REWRITTEN - {"README.md"})
            _write_adapter_files(adapter, dst / "adapter", standard["base_model"], scrub)
        body = scrub.text(_body(src / "README.md")) or (
            f"\n# {repo.name}\n\nThe policy of paretohqd run's `{repo.source}`.\n"
        )
        (dst / "README.md").write_text(
            front_matter(standard, {"source": repo.source}) + body + _load_model(repo)
        )

    return write


def _adapter_writer(
    repo: HubRepo,
    src: Path,
    art: Artifact,
    data: HubRepo | None,
    scrub: _Scrubber,
    license: str,
) -> Any:
    """One adapter as a PEFT model repo whose base is a Hub id."""

    def write(dst: Path) -> None:
        _copy_files(src, dst, scrub, skip=_REWRITTEN)
        state = json.loads((src / "train_state.json").read_text())
        base = scrub.base(state["base_model"], f"{art.path}/{src.name}")
        _write_adapter_files(src, dst, base, scrub)
        method = str(art.tags["method"])
        standard: dict[str, Any] = {
            "base_model": base,
            "library_name": "peft",
            "license": license,
            "pipeline_tag": "text-generation",
            "tags": list(dict.fromkeys(["paretohqd", "lora", slug(method), src.name])),
        }
        if data is not None:
            standard["datasets"] = [data.repo_id]
        project = {
            "method": method,
            "pref_id": src.name,
            "preference": state.get("shard_card") or _weights(state),
            "source": repo.source,
            "training_data": (
                {"dataset": data.repo_id, "config": src.name} if data is not None else None
            ),
        }
        body = scrub.text(_body(src / "README.md"))
        (dst / "README.md").write_text(
            front_matter(standard, project) + body + _load_adapter(repo, data, src.name)
        )

    return write


def _write_adapter_files(src: Path, dst: Path, base: str, scrub: _Scrubber) -> None:
    """``adapter_config.json`` naming ``base`` and ``train_state.json`` without local paths."""
    adapter_config = json.loads((src / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = base
    (dst / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
    state = scrub.json(json.loads((src / "train_state.json").read_text()))
    (dst / "train_state.json").write_text(json.dumps(state, indent=2) + "\n")


def _weights(state: Mapping[str, Any]) -> dict[str, float] | None:
    names, weights = state.get("objectives"), state.get("weights")
    if not names or not weights:
        return None
    return {str(n): float(w) for n, w in zip(names, weights, strict=True)}


def _load_adapter(repo: HubRepo, data: HubRepo | None, pref_id: str) -> str:
    trained = (
        f"\nTraining data: config `{pref_id}` of the dataset `{data.repo_id}`\n"
        f'(`load_dataset("{data.repo_id}", "{pref_id}")`).\n'
        if data is not None
        else ""
    )
    return f"""{trained}
## Load it

```python
from peft import AutoPeftModelForCausalLM
model = AutoPeftModelForCausalLM.from_pretrained("{repo.repo_id}")  # fetches base_model too
```
"""


def _load_model(repo: HubRepo) -> str:
    return f"""
## Load it

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("{repo.repo_id}")
tokenizer = AutoTokenizer.from_pretrained("{repo.repo_id}")
```
"""


def _check_clean(root: Path, private: Sequence[str]) -> None:
    """Fail if any written file still names a local directory of this machine (a bug here).

    Text files are read whole; of a safetensors file its JSON header (the only place a path
    could sit). Other binary files (weights, Parquet, PNG) are not scanned: a short directory
    name would match random bytes in them.
    """
    needles = [p.encode() for p in private]
    for f in sorted(root.rglob("*")):
        if f.suffix in _TEXT:
            data = f.read_bytes()
        elif f.suffix == ".safetensors":
            with f.open("rb") as fh:
                data = fh.read(int.from_bytes(fh.read(8), "little"))
        else:
            continue
        for needle in needles:
            if needle in data:
                raise DataError(
                    f"export: {f.relative_to(root)} still names the local path "
                    f"{needle.decode()}; nothing was written (please report this)"
                )
