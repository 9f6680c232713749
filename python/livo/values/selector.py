"""Adaptive value selection: which value principle (if any) applies to each prompt.

Stages, in order, for a batch of prompts:

1. **keyword**: a harm keyword with word boundaries (exceptions such as "blood orange" blanked);
2. **retrieval**: the prompt's embedding against the registry's exemplars in the FAISS index. A
   value passes when its best positive exemplar scores at least the value's calibrated threshold
   and beats its best negative (and benign) exemplar. Harm values win over bias values;
   A bias value's threshold is lower when the prompt names a person ("a pharmacist counting
   pills"), because MiniLM-sized embedders rank professions weakly against scenes;
3. **explicit-attribute**: a stated attribute ("a female doctor") marks a person and suppresses
   the bias value for that attribute; the next bias value in registry order is used instead, or
   none when every attribute is stated;
4. an optional **judge** (e.g. a local LLM) decides prompts whose best score lies within a small
   band around its threshold; off by default.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from livo.value_types import ValueChoice
from livo.values.embedders import Embedder, load_embedder
from livo.values.index import ValueIndex, load_index
from livo.values.matching import ExplicitAttributes, HarmKeywords, PersonNouns, exception_blanker, normalize_text
from livo.values.registry import Registry, ValuePrinciple

Stage = Literal["keyword", "retrieval", "explicit-attribute", "judge", "none"]
STAGES: tuple[Stage, ...] = ("keyword", "retrieval", "explicit-attribute", "judge", "none")


@dataclass(frozen=True)
class Selection:
    """The decision for one prompt: ``value_id`` (None: no value applies), a score (1.0 for a
    keyword, otherwise the cosine similarity of the best exemplar), and the stage that decided."""

    value_id: str | None
    score: float
    stage: Stage


class ValueJudge(Protocol):
    """A pluggable second opinion for borderline prompts (e.g. a local instruction-tuned LLM)."""

    def decide(self, prompt: str, candidates: Sequence[ValuePrinciple]) -> str | None:
        """The id of the candidate value that applies to ``prompt``, or None."""
        ...


@dataclass(frozen=True)
class RetrievalScores:
    """Per prompt: best positive and best negative exemplar similarity per value, and best benign
    exemplar similarity (−1 where none is in the top k). Kept apart from decisions so calibration
    can re-decide without re-embedding."""

    positive: np.ndarray  # (n, V)
    negative: np.ndarray  # (n, V), the value's own negative exemplars
    benign: np.ndarray  # (n,)


class ValueSelector:
    """Selects value principles for prompts with a loaded :class:`ValueIndex` and its embedder."""

    def __init__(
        self,
        index: ValueIndex,
        embedder: Embedder,
        judge: ValueJudge | None = None,
        k: int = 32,
        margin: float = 0.0,
        judge_band: float = 0.05,
    ) -> None:
        problem = index.embedder_identity.mismatch(embedder.identity)
        if problem:
            from livo.errors import ConfigError

            raise ConfigError(
                f"{index.source or 'index'}: built with embedder {index.embedder_identity.name!r}, "
                f"given {embedder.identity.name!r}: {problem}; rebuild the index for this embedder"
            )
        self.index = index
        self.embedder = embedder
        self.registry: Registry = index.registry
        self.judge = judge
        self.k = k
        self.margin = margin
        self.judge_band = judge_band
        self.keywords = HarmKeywords(self.registry)
        self.attributes = ExplicitAttributes(self.registry)
        self.person_nouns = PersonNouns(self.registry)
        self._blank = exception_blanker(self.registry)
        self._value_ids = self.registry.ids
        self._column = {v: i for i, v in enumerate(self._value_ids)}
        self._exemplar_value = np.array([self._column[e.value_id] if e.value_id else -1 for e in index.exemplars])
        self._exemplar_positive = np.array([e.positive for e in index.exemplars])
        self._harm = [i for i, v in enumerate(self.registry.values) if v.kind == "harm"]
        self._bias = [i for i, v in enumerate(self.registry.values) if v.kind == "bias"]

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        embedder: Embedder | None = None,
        registry: Registry | None = None,
        judge: ValueJudge | None = None,
        check_registry_source: bool = True,
    ) -> ValueSelector:
        """Loads an index folder and the embedder it was built with (or checks the given one).

        The registry is checked against ``registry`` when given, otherwise against the registry
        file the index was built from if that file still exists: an edited registry needs a rebuild.
        """
        index = load_index(directory, registry=registry)
        if registry is None and check_registry_source and index.registry_source:
            source = Path(index.registry_source)
            if source.is_file():
                from livo.values.registry import load_registry

                load_index(directory, registry=load_registry(source))
        if embedder is None:
            embedder = load_embedder(index.embedder_identity.spec)
        return cls(index, embedder, judge=judge)

    @property
    def thresholds(self) -> np.ndarray:
        """Per value, in registry order: the retrieval threshold without a person noun."""
        return np.array([self.index.thresholds.get(v, 1.0) for v in self._value_ids], dtype=np.float32)

    @property
    def noun_thresholds(self) -> np.ndarray:
        """Per value: the threshold when the prompt names a person (bias values; others unchanged)."""
        return np.array(
            [self.index.noun_thresholds.get(v, self.index.thresholds.get(v, 1.0)) for v in self._value_ids],
            dtype=np.float32,
        )

    def retrieval_text(self, prompt: str, normalized: str) -> str:
        """The text to embed: the prompt, minus known-benign exception phrases if it has any."""
        if self._blank is None:
            return prompt
        blanked = self._blank.sub(" ", normalized)
        return prompt if blanked == normalized else " ".join(blanked.split())

    def retrieval_scores(self, prompts: Sequence[str]) -> RetrievalScores:
        n, columns = len(prompts), len(self._value_ids)
        positive = np.full((n, columns), -1.0, dtype=np.float32)
        negative = np.full((n, columns), -1.0, dtype=np.float32)
        benign = np.full(n, -1.0, dtype=np.float32)
        if n == 0:
            return RetrievalScores(positive, negative, benign)
        sims, ids = self.index.search(self.embedder.embed(prompts), self.k)
        valid = ids >= 0
        rows = np.broadcast_to(np.arange(n)[:, None], ids.shape)[valid]
        sims, ids = sims[valid], ids[valid]
        value_col = self._exemplar_value[ids]
        is_pos = self._exemplar_positive[ids]
        valued = value_col >= 0
        np.maximum.at(positive, (rows[is_pos], value_col[is_pos]), sims[is_pos])
        neg = valued & ~is_pos
        np.maximum.at(negative, (rows[neg], value_col[neg]), sims[neg])
        np.maximum.at(benign, rows[~valued], sims[~valued])
        return RetrievalScores(positive, negative, benign)

    def decide(
        self,
        normalized: str,
        positive: np.ndarray,
        negative: np.ndarray,
        benign: float,
        thresholds: np.ndarray,
        noun_thresholds: np.ndarray,
        noun_margin: float,
        stated: dict[str, str] | None = None,
        has_person_noun: bool | None = None,
    ) -> Selection:
        """The stages after the keyword stage, for one prompt with precomputed retrieval scores
        (``stated`` and ``has_person_noun`` may be precomputed, e.g. during calibration).

        A value passes when its best positive exemplar reaches its threshold and beats its own
        negative exemplars and the benign ones. When the prompt names a person, bias values use
        their (lower) person-noun threshold and are vetoed only by their own negatives (look-alikes
        such as "a nurse shark") that are closer by more than ``noun_margin``: a look-alike shares
        the noun, so it is always somewhat close, and a generic benign scene ("a hospital
        corridor") must not veto "a doctor in a hospital corridor"."""
        if has_person_noun is None:
            has_person_noun = bool(self._bias) and self.person_nouns.present(normalized)
        passing = (positive >= thresholds) & (positive > np.maximum(negative, benign) + self.margin)
        if has_person_noun:
            for i in self._bias:
                passing[i] = positive[i] >= noun_thresholds[i] and negative[i] <= positive[i] + noun_margin
        harm = [i for i in self._harm if passing[i]]
        if harm:
            best = max(harm, key=lambda i: positive[i])
            return Selection(self._value_ids[best], float(positive[best]), "retrieval")
        if stated is None:
            stated = self.attributes.stated(normalized) if self._bias else {}
        if self._bias and (stated or any(passing[i] for i in self._bias)):
            suppressed = False
            for i in self._bias:
                if self.registry.values[i].attribute in stated:
                    suppressed = True
                    continue
                return Selection(
                    self._value_ids[i], float(positive[i]), "explicit-attribute" if suppressed else "retrieval"
                )
            return Selection(None, float(max(positive[i] for i in self._bias)), "explicit-attribute")
        return Selection(None, float(positive.max()) if len(positive) else 0.0, "none")

    def select(self, prompts: Sequence[str], batch_size: int = 1024) -> list[Selection]:
        """One :class:`Selection` per prompt, in order. Prompts decided by a keyword are not embedded."""
        results: list[Selection | None] = [None] * len(prompts)
        normalized = [normalize_text(str(p)) for p in prompts]
        pending: list[int] = []
        for i, text in enumerate(normalized):
            hit = self.keywords.match(text)
            if hit is not None:
                results[i] = Selection(hit.value_id, 1.0, "keyword")
            else:
                pending.append(i)
        thresholds, noun_thresholds = self.thresholds, self.noun_thresholds
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            scores = self.retrieval_scores([self.retrieval_text(str(prompts[i]), normalized[i]) for i in chunk])
            for row, i in enumerate(chunk):
                selection = self.decide(
                    normalized[i],
                    scores.positive[row],
                    scores.negative[row],
                    float(scores.benign[row]),
                    thresholds,
                    noun_thresholds,
                    self.index.noun_margin,
                )
                if self.judge is not None:
                    selection = self._ask_judge(str(prompts[i]), selection, scores.positive[row], thresholds)
                results[i] = selection
        return [r for r in results if r is not None]

    def _ask_judge(self, prompt: str, selection: Selection, positive: np.ndarray, thresholds: np.ndarray) -> Selection:
        if selection.stage not in ("retrieval", "none"):
            return selection
        near = np.abs(positive - thresholds) <= self.judge_band
        if not near.any():
            return selection
        candidates = [self.registry.values[i] for i in np.flatnonzero(positive >= thresholds - self.judge_band)]
        assert self.judge is not None
        verdict = self.judge.decide(prompt, candidates)
        if verdict is not None and verdict not in {c.id for c in candidates}:
            verdict = None
        score = float(positive[self._column[verdict]]) if verdict else selection.score
        return Selection(verdict, score, "judge")

    def choice(self, selection: Selection) -> ValueChoice | None:
        if selection.value_id is None:
            return None
        value = self.registry.value(selection.value_id)
        return ValueChoice(value.id, value.text, value.kind)

    def __call__(self, prompt: str) -> ValueChoice | None:
        """Adapter for generation pipelines: prompt → value text and kind, or None."""
        return self.choice(self.select([prompt])[0])

    def choose_many(self, prompts: Sequence[str]) -> list[ValueChoice | None]:
        """Batched form of ``__call__``."""
        return [self.choice(s) for s in self.select(prompts)]


def load_selector(directory: str | os.PathLike[str] | Path, **kwargs: object) -> ValueSelector:
    """Shorthand for :meth:`ValueSelector.load`."""
    return ValueSelector.load(directory, **kwargs)  # type: ignore[arg-type]
