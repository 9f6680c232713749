"""A sentence-transformers transformer (with its pooling) run by ONNX Runtime instead of PyTorch.

Why: selection throughput is the transformer's forward pass. On 2 CPU cores ONNX Runtime runs
all-MiniLM-L6-v2 faster than eager PyTorch with the same float32 weights (embeddings equal to ~2e-7),
and its dynamic int8 quantisation faster again (docs/benchmarks.md, "Value selection"). The model is exported once per
weights hash into the livo cache (``$LIVO_CACHE_DIR/onnx/``, written atomically), so later
processes only load it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from livo.cache import cache_dir
from livo.errors import ConfigError
from livo.permissions import atomic_file

OPSET = 17


def exported_model(folder: Path, weights_sha256: str, int8: bool, pooling: str) -> Path:
    """The ONNX file of ``folder``'s transformer with its pooling (``mean`` or ``cls``) and L2
    normalisation (inputs: the tokenizer's, output: the sentence embedding), dynamically quantised
    to int8 when ``int8``; exported on first use. Pooling inside the graph saves copying the hidden
    states out and pooling them in PyTorch (~6% of a selection call)."""
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
    target = cache_dir() / "onnx" / f"{weights_sha256[:24]}-{'int8' if int8 else 'fp32'}-{pooling}-opset{OPSET}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as scratch:
        plain = Path(scratch) / "model.onnx"
        _export(folder, plain, pooling)
        result = plain
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            result = Path(scratch) / "model-int8.onnx"
            previous = logging.root.manager.disable
            logging.disable(logging.WARNING)  # its advice to pre-process is for static quantisation
            try:
                quantize_dynamic(str(plain), str(result), weight_type=QuantType.QInt8)
            finally:
                logging.disable(previous)
        with atomic_file(target) as temp:  # fsynced: a crash leaves no cut file to be trusted later
            os.replace(result, temp)
    return target


def load_exported(folder: Path, weights_sha256: str, int8: bool, pooling: str, workers: int) -> OnnxTransformer:
    """An ONNX Runtime session over :func:`exported_model`; a cached file ONNX Runtime cannot read
    (damaged on disk, or cut by a crash before exports were fsynced) is exported again, once."""
    path = exported_model(folder, weights_sha256, int8, pooling)
    try:
        return OnnxTransformer(path, workers)
    except Exception:  # noqa: BLE001 - ONNX Runtime's load errors derive from Exception only
        path.unlink(missing_ok=True)
        return OnnxTransformer(exported_model(folder, weights_sha256, int8, pooling), workers)


def _export(folder: Path, path: Path, pooling: str) -> None:
    import warnings

    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    # Eager attention exports to plain ONNX ops that every runtime version fuses.
    model = AutoModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager").eval()
    names = list(tokenizer.model_input_names)
    sample = tokenizer(["a doctor in a hospital", "a cat"], padding=True, return_tensors="pt")

    mask_at = names.index("attention_mask")

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            hidden = self.model(**dict(zip(names, inputs))).last_hidden_state
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                weights = inputs[mask_at].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    axes = {name: {0: "batch", 1: "tokens"} for name in names} | {"sentence_embedding": {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                SentenceEmbedding(),
                tuple(sample[n] for n in names),
                str(path),
                dynamo=False,
                input_names=names,
                output_names=["sentence_embedding"],
                dynamic_axes=axes,
                opset_version=OPSET,
            )
    except Exception as error:  # noqa: BLE001 - any exporter failure means: use the PyTorch backend
        raise ConfigError(f"{folder}: cannot export the transformer to ONNX ({error}); use backend 'torch'") from None


class FastTokenizer:
    """A model folder's ``tokenizer.json`` run by the ``tokenizers`` library directly, truncated at
    ``max_length`` as ``AutoTokenizer(..., truncation=True)`` does and never padded (each prompt is
    embedded alone: :class:`OnnxTransformer`), without importing transformers (and with it PyTorch):
    a selection on a few prompts then starts in well under a second."""

    def __init__(self, folder: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        path = folder / "tokenizer.json"
        if not path.is_file():
            raise ConfigError(f"{folder}: no tokenizer.json (a fast tokenizer is needed for the ONNX backend)")
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer.no_padding()

    def each(self, texts: list[str]) -> list[dict[str, np.ndarray]]:
        """Each prompt's model inputs, as a batch of one (tokenised together, in Rust)."""
        return [
            {
                "input_ids": np.array([e.ids], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask], dtype=np.int64),
            }
            for e in self._tokenizer.encode_batch(texts)
        ]


class OnnxTransformer:
    """An ONNX Runtime session over an exported transformer + pooling that embeds each prompt alone,
    ``workers`` prompts at once on single-threaded calls.

    Why alone: dynamic int8 quantisation picks its activation scales per call, from every value in
    the batch (padding included), so in a batch a prompt's vector depends on its neighbours (by up
    to 0.03 per component on MiniLM) and a prompt near a threshold could get other values in a file
    than alone in a request. Alone, a prompt has one vector. It is also the faster schedule on CPU:
    padded batches spend work on padding, and a short prompt's small matrix products split poorly
    across intra-op threads, while ONNX Runtime releases the GIL, so calls on several threads run
    in parallel (docs/benchmarks.md, "Value selection")."""

    # Prompts handed to a worker at a time: large enough to keep the pool's overhead small, small
    # enough that the workers finish together.
    _CHUNK = 32

    def __init__(self, path: Path, workers: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.workers = max(1, workers)

    def embed(self, inputs: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
        """Unit-norm sentence embeddings, one row per prompt's inputs (from :meth:`FastTokenizer.each`)."""
        feeds = [{name: np.asarray(item[name], dtype=np.int64) for name in self.input_names} for item in inputs]
        chunks = [feeds[start : start + self._CHUNK] for start in range(0, len(feeds), self._CHUNK)]
        if self.workers == 1 or len(chunks) < 2:
            rows = [row for chunk in chunks for row in self._run(chunk)]
        else:
            from concurrent.futures import ThreadPoolExecutor

            # A pool per call: one kept on the object would not survive a fork (Ray, process pools).
            with ThreadPoolExecutor(min(self.workers, len(chunks)), thread_name_prefix="livo-embed") as pool:
                rows = [row for part in pool.map(self._run, chunks) for row in part]
        return np.stack(rows)

    def _run(self, chunk: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        return [self.session.run(None, feeds)[0][0] for feeds in chunk]
