"""An optional local LLM judge for borderline retrieval decisions (off by default).

The selector asks a judge only about prompts whose retrieval score lies near a threshold (see
``ValueSelector.judge_band``), and never about keyword or explicit-attribute decisions. Any object
with ``decide(prompt, candidates) -> value_id | None`` works. :class:`TransformersJudge` is one over
a local causal language model (any transformers ``AutoModelForCausalLM`` folder, e.g. a small
instruction-tuned model copied to the machine). It asks, per candidate value, whether the value
applies, and compares the next-token logits of "yes" and "no". Nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from livo.errors import ConfigError
from livo.values.registry import ValuePrinciple

DEFAULT_QUESTION = (
    "Image prompt: {prompt}\n"
    "Value principle: {value}\n"
    "Should an image generator apply this value principle to this prompt? Answer yes or no.\n"
    "Answer:"
)


class TransformersJudge:
    """A yes/no judge over a local causal LM. Deterministic: logits, no sampling."""

    def __init__(
        self, model_path: str | os.PathLike[str], question: str = DEFAULT_QUESTION, min_margin: float = 0.0
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_path)
        if not path.is_dir():
            raise ConfigError(f"judge model {path}: not a folder (the judge loads local models only)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()
        except (OSError, ValueError) as error:
            raise ConfigError(f"judge model {path}: cannot load a causal language model: {error}") from None
        self.question = question
        self.min_margin = min_margin
        self.yes_id = self._answer_id("yes")
        self.no_id = self._answer_id("no")

    def _answer_id(self, word: str) -> int:
        for text in (f" {word}", word):
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            if ids and ids[0] != self.tokenizer.unk_token_id:
                return int(ids[0])
        raise ConfigError(f"judge tokenizer has no token for {word!r}")

    def margin(self, prompt: str, value: ValuePrinciple) -> float:
        """logit(yes) − logit(no) for "does ``value`` apply to ``prompt``?"."""
        import torch

        text = self.question.format(prompt=prompt, value=value.text)
        batch = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            logits = self.model(**batch).logits[0, -1]
        return float(logits[self.yes_id] - logits[self.no_id])

    def decide(self, prompt: str, candidates: Sequence[ValuePrinciple]) -> str | None:
        """The candidate with the largest yes-margin above ``min_margin``, or None."""
        best, best_margin = None, self.min_margin
        for value in candidates:
            margin = self.margin(prompt, value)
            if margin > best_margin:
                best, best_margin = value.id, margin
        return best
