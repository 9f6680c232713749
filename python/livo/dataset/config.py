"""The typed configuration of a dataset build: one pydantic model per stage, composed in
:class:`BuildConfig` and read from YAML by :func:`load_build_config`.

Every field is checked when the file is read, and errors name the file and the field
(``build.yaml: field generation.steps: Input should be greater than or equal to 1``), so a typo
fails in a second instead of after an hour of generation.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from livo.config import StrictModel, apply_overrides, parse_model, read_yaml, resolve_paths
from livo.errors import ConfigError
from livo.judges.spec import JudgesConfig
from livo.plugins import PROMPT_GENERATORS, has_plugin, plugin_names

MIB = 1 << 20


class FileSource(StrictModel):
    """A prompt file (.txt, .jsonl, .csv, .parquet; the text formats also .gz, .bz2 or .zst) and its
    prompt column (default ``prompt``, or the only column)."""

    path: str
    column: str | None = None


class GeneratedSource(StrictModel):
    """``count`` prompts drawn with ``seed`` from a prompt generator."""

    count: int = Field(default=5000, ge=1)
    seed: int = 0


class SourcesConfig(StrictModel):
    """Prompt files, and prompt generators by name (``livo.prompt_generators`` plug-ins, e.g.
    ``generators: {toyworld: {count: 5000, seed: 0}}``: the toy world's training mix)."""

    files: list[FileSource] = Field(default_factory=list)
    generators: dict[str, GeneratedSource] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _some_source(self) -> SourcesConfig:
        if not self.files and not self.generators:
            raise ValueError("give at least one prompt source: 'files' or 'generators'")
        unknown = [name for name in self.generators if not has_plugin(PROMPT_GENERATORS, name)]
        if unknown:
            raise ValueError(
                f"generators: unknown prompt generator(s) {unknown} "
                f"(known: {', '.join(plugin_names(PROMPT_GENERATORS))})"
            )
        return self


class DedupStageConfig(StrictModel):
    """Near-duplicate threshold of the Rust dedup (see ``livo.data.dedup.DedupConfig``)."""

    threshold: float = Field(default=0.8, gt=0.0, le=1.0)
    num_perm: int = Field(default=128, ge=16)
    seed: int = 1


class SelectionConfig(StrictModel):
    """The value registry (a file or a built-in name) and either a prebuilt value index folder or
    the embedder to build one in memory. ``values`` restricts the build to some value ids.
    ``max_values_per_prompt``: how many of the values the selector finds a pair is built for (1: the
    first, harm values first; 2: e.g. a harm value and a bias value together, one record with both)."""

    registry: str = "default"
    index: str | None = None
    embedder: str = "minilm"
    values: list[str] | None = None
    max_values_per_prompt: int = Field(default=1, ge=1)


class RewriteConfig(StrictModel):
    """``rewriter``: ``rules`` (the registry's insert/replace rules) or ``module:factory`` of a
    pluggable rewriter (e.g. an LLM) returning an object with ``rewrite(prompt, value, class_name)``.
    ``bias_class``: how a bias value's attribute class is chosen (see docs/dataset-construction.md)."""

    rewriter: str = "rules"
    bias_class: Literal["not_shown"] = "not_shown"


class GenerationConfig(StrictModel):
    """How pairs are generated. ``model``: a diffusers pipeline folder, a hub id, or ``builtin:NAME``
    (``builtin:toyworld``: the shipped toy model). ``samples_per_prompt`` seeds per unique prompt (per value:
    ``value_samples``, whose key is a value id or, for records applying several, their ids joined
    with ``+``; such a record without its own key takes its first value's count)."""

    model: str = "builtin:toyworld"
    steps: int = Field(default=25, ge=1, le=1000)
    guidance_scale: float = Field(default=7.5, ge=0.0)
    height: int | None = Field(default=None, ge=8)
    width: int | None = Field(default=None, ge=8)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    samples_per_prompt: int = Field(default=1, ge=1)
    value_samples: dict[str, int] = Field(default_factory=dict)
    batch_size: int = Field(default=16, ge=1)
    actors: int = Field(default=1, ge=1)
    cpus_per_actor: float = Field(default=1.0, gt=0.0)
    gpus_per_actor: float | Literal["auto"] = "auto"
    torch_threads: int = Field(default=1, ge=1)
    max_restarts: int = Field(default=3, ge=-1)
    max_task_retries: int = Field(default=3, ge=-1)
    batch_retries: int = Field(default=2, ge=0)

    def samples_for(self, value_ids: Sequence[str]) -> int:
        """Seeds for a record applying ``value_ids``: their joined key, else the first value's, else
        ``samples_per_prompt``."""
        joined = "+".join(value_ids)
        return self.value_samples.get(joined, self.value_samples.get(value_ids[0], self.samples_per_prompt))

    @model_validator(mode="after")
    def _positive_samples(self) -> GenerationConfig:
        for value_id, count in self.value_samples.items():
            if count < 0:
                raise ValueError(f"value_samples.{value_id}: must be >= 0, got {count}")
        return self


class OutputConfig(StrictModel):
    """Where the shards go and how they are cut. ``checkpoint_seconds``: the open shards are
    committed at least this often, bounding what a killed job has to redo."""

    directory: str
    splits: dict[str, float] = Field(default_factory=lambda: {"train": 0.98, "val": 0.02})
    target_shard_bytes: int = Field(default=64 * MIB, ge=1024)
    row_group_bytes: int = Field(default=8 * MIB, ge=1024)
    checkpoint_seconds: float = Field(default=300.0, gt=0.0)


class RayConfig(StrictModel):
    """``address``: null starts a local Ray bound to loopback, ``auto`` joins the running cluster
    (``ray job submit`` sets RAY_ADDRESS, which null also honours). ``token_file``: the cluster's
    auth token (mode 0600), needed to join a cluster off loopback unless ``RAY_AUTH_TOKEN_PATH`` is
    set (``livo.runtime``)."""

    address: str | None = None
    num_cpus: int | None = Field(default=None, ge=1)
    token_file: str | None = None


class BuildConfig(StrictModel):
    """A whole dataset build: sources → dedup → value selection → rewrite → generate → judge → shards."""

    sources: SourcesConfig
    output: OutputConfig
    dedup: DedupStageConfig = Field(default_factory=DedupStageConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    rewrite: RewriteConfig = Field(default_factory=RewriteConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    judges: JudgesConfig = Field(default_factory=JudgesConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    run_id: str | None = None
    progress: bool = True

    def generation_fingerprint(self) -> str:
        """Hash of everything that changes the images of a record: a resumed build must match it.
        The registry's file counts whole: its rewrite rules make the aligned prompts, its texts the
        value texts, and its classes and words the judges' questions."""
        from livo.values.registry import resolve_registry_path

        g = self.generation
        registry = resolve_registry_path(self.selection.registry)
        fields = {
            "registry_sha256": hashlib.sha256(registry.read_bytes()).hexdigest() if registry.is_file() else None,
            "model": g.model,
            "steps": g.steps,
            "guidance_scale": g.guidance_scale,
            "height": g.height,
            "width": g.width,
            "dtype": g.dtype,
            "rewriter": self.rewrite.rewriter,
            "bias_class": self.rewrite.bias_class,
            "judges": self.judges.model_dump(mode="json"),
        }
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    def effective_run_id(self) -> str:
        return self.run_id or f"build-{self.generation_fingerprint()}"


def parse_build_config(
    data: Any, source: str = "<config>", *, overridden: Collection[str] | Mapping[str, str] = ()
) -> BuildConfig:
    """Validates parsed YAML/JSON (or a dict built in Python); errors in the fields that ``--set``
    wrote (``overridden``: the dotted keys, or each key with what set it) name the override."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a build config is a mapping with 'sources' and 'output'")
    return parse_model(BuildConfig, data, source, FLAGS, overridden=overridden)


# Fields that `livo build-dataset` also takes as flags: their errors name the flag.
FLAGS = {"output.directory": "-o/--output", "ray.address": "--address", "ray.token_file": "--ray-token-file"}

# Fields that hold paths: relative ones are relative to the YAML file's folder (``livo.config``).
PATH_KEYS = ("path", "directory", "index", "token_file")
PATH_KEYS_IF_PRESENT = ("model", "registry")  # also a hub id, builtin:NAME or a built-in registry name


def load_build_config(
    path: str | os.PathLike[str],
    overrides: dict[str, Any] | None = None,
    *,
    origins: Mapping[str, str] | None = None,
) -> BuildConfig:
    """Reads a YAML build config. Relative paths in it are relative to the file's folder; paths in
    ``overrides`` (dotted field names, ``{"output.directory": "out"}``, as ``-o`` and ``--set`` give
    them) are relative to the working directory. An error in an overridden field names it as
    ``--set KEY``, or as ``origins[KEY]`` says when another command set it for the user."""
    data = resolve_paths(read_yaml(path, "build config"), Path(path).parent, PATH_KEYS, PATH_KEYS_IF_PRESENT)
    data = apply_overrides(data, overrides, str(path))
    if origins is None:
        return parse_build_config(data, str(path), overridden=list(overrides or {}))
    named = {key: origins.get(key, f"--set {key}") for key in overrides or {}}
    return parse_build_config(data, str(path), overridden=named)


def builtin_config_path(name: str = "toyworld") -> Path:
    """A build config shipped with the package (``toyworld``)."""
    root = Path(str(resources.files("livo.dataset") / "configs"))
    path = root / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in root.glob("*.yaml"))
        raise ConfigError(f"no built-in build config {name!r} (built-in: {known})")
    return path
