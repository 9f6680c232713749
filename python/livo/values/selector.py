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

from livo.errors import InvalidParameterError
from livo.value_types import ValueChoice
from livo.values.embedders import Embedder, load_embedder
from livo.values.emoji_words import spell_out_emoji
from livo.values.fuzzy_keywords import FuzzyKeywords
from livo.values.index import ValueIndex, load_index
from livo.values.matching import (
    ExplicitAttributes,
    HarmKeywords,
    PersonNouns,
    embedding_text,
    exception_blanker,
    normalize_text,
)
from livo.values.registry import Registry, ValuePrinciple

Stage = Literal["keyword", "retrieval", "classifier", "explicit-attribute", "judge", "none"]
STAGES: tuple[Stage, ...] = ("keyword", "retrieval", "classifier", "explicit-attribute", "judge", "none")


@dataclass(frozen=True)
class ValueDecision:
    """One value that applies to a prompt: its id, a score (1.0 for a rule, otherwise a cosine
    similarity or a probability), the stage that decided it, and a human-readable reason (the
    keyword, exemplar, person noun or stated attribute that made the decision)."""

    value_id: str
    score: float
    stage: Stage
    reason: str = ""


@dataclass(frozen=True)
class Selection:
    """The decision for one prompt. ``values`` lists every value that applies, harm values first,
    then bias values in registry order; ``value_id``, ``score`` and ``stage`` describe the first of
    them (``value_id`` None: no value applies, and ``score``/``stage`` say why not). A pipeline that
    applies one value per prompt applies ``value_id``."""

    value_id: str | None
    score: float
    stage: Stage
    values: tuple[ValueDecision, ...] = ()

    @property
    def value_ids(self) -> list[str]:
        """Every value that applies, in order (empty: none)."""
        if self.values:
            return [v.value_id for v in self.values]
        return [self.value_id] if self.value_id is not None else []

    @property
    def reasons(self) -> list[str]:
        return [v.reason for v in self.values]

    @classmethod
    def of(cls, decisions: Sequence[ValueDecision], score: float, stage: Stage) -> Selection:
        """The selection of ``decisions`` (in order); ``score``/``stage`` are used when it is empty."""
        if not decisions:
            return cls(None, score, stage)
        first = decisions[0]
        return cls(first.value_id, first.score, first.stage, tuple(decisions))


class ValueJudge(Protocol):
    """A pluggable second opinion for borderline prompts (e.g. a local instruction-tuned LLM)."""

    def decide(self, prompt: str, candidates: Sequence[ValuePrinciple]) -> str | None:
        """The id of the candidate value that applies to ``prompt``, or None."""
        ...


@dataclass(frozen=True)
class RetrievalScores:
    """Per prompt: best positive and best negative exemplar similarity per value, and best benign
    exemplar similarity (−1 where none is in the top k). Kept apart from decisions so calibration
    can re-decide without re-embedding. ``best_positive`` holds the exemplar row behind each
    positive score (−1: none), so a decision can name the exemplar that made it."""

    positive: np.ndarray  # (n, V)
    negative: np.ndarray  # (n, V), the value's own negative exemplars
    benign: np.ndarray  # (n,)
    best_positive: np.ndarray | None = None  # (n, V) exemplar rows


@dataclass
class Evidence:
    """Everything known about a batch of prompts before deciding: normalised text, embeddings,
    retrieval scores, keyword hits, stated attributes and person nouns. The threshold rules and
    the classifier decide from it, and training computes it once."""

    normalized: list[str]
    vectors: np.ndarray  # (n, d)
    scores: RetrievalScores
    keywords: list[list[ValueDecision]]
    spelled: list[dict[str, str]]  # harm value id -> its keyword found through an obfuscated or misspelt word
    stated: list[dict[str, str]]
    person_noun: np.ndarray  # (n,) a non-possessive person noun
    first_person_noun: list[str | None]  # the first person noun, possessive included

    @property
    def person_noun_any(self) -> np.ndarray:
        """(n,) any person noun, possessive included."""
        return np.array([noun is not None for noun in self.first_person_noun], dtype=bool)


def _prompt_texts(prompts: Sequence[str | None]) -> list[str]:
    if isinstance(prompts, (str, bytes)):
        raise TypeError("prompts must be a list of strings, not one string: select([prompt]) for one prompt")
    texts: list[str] = []
    for position, prompt in enumerate(prompts):
        if prompt is None:
            texts.append("")
        elif isinstance(prompt, str):
            texts.append(prompt)
        else:
            raise TypeError(f"prompts[{position}] is {type(prompt).__name__} ({prompt!r:.40}), not a string")
    return texts


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
        classifier_judge_band: float = 0.2,
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
        self.classifier_judge_band = classifier_judge_band
        self.keywords = HarmKeywords(self.registry)
        self.attributes = ExplicitAttributes(self.registry)
        self.person_nouns = PersonNouns(self.registry)
        self.fuzzy = FuzzyKeywords(self.registry)
        self._blank = exception_blanker(self.registry)
        self._value_ids = self.registry.ids
        self._column = {v: i for i, v in enumerate(self._value_ids)}
        self._exemplar_value = np.array([self._column[e.value_id] if e.value_id else -1 for e in index.exemplars])
        self._exemplar_positive = np.array([e.positive for e in index.exemplars])
        self._harm = [i for i, v in enumerate(self.registry.values) if v.kind == "harm"]
        self._bias = [i for i, v in enumerate(self.registry.values) if v.kind == "bias"]
        self.classifier = index.classifier
        if self.classifier is not None:
            expected = (self.classifier_targets(), self.feature_names())
            if (self.classifier.targets, self.classifier.feature_names) != expected:
                from livo.errors import ConfigError

                raise ConfigError(
                    f"{index.source or 'index'}: its value classifier was fitted on other values or features "
                    "than this version of the selector computes; rebuild the index"
                )

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
        """The text to embed (:func:`embedding_text`: emoji written out as words, compatibility
        forms folded), minus known-benign exception phrases if it has any."""
        if self._blank is not None:
            blanked = self._blank.sub(" ", normalized)
            if blanked != normalized:
                return " ".join(blanked.split())
        return embedding_text(prompt)

    def retrieval_scores(self, prompts: Sequence[str]) -> RetrievalScores:
        return self.scores_of(self.embedder.embed(prompts) if len(prompts) else np.zeros((0, 1), np.float32))

    def scores_of(self, vectors: np.ndarray) -> RetrievalScores:
        """Retrieval scores of already embedded prompts."""
        n, columns = len(vectors), len(self._value_ids)
        positive = np.full((n, columns), -1.0, dtype=np.float32)
        negative = np.full((n, columns), -1.0, dtype=np.float32)
        benign = np.full(n, -1.0, dtype=np.float32)
        best_positive = np.full((n, columns), -1, dtype=np.int64)
        if n == 0:
            return RetrievalScores(positive, negative, benign, best_positive)
        sims, ids = self.index.search(vectors, self.k)
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
        # FAISS returns each row's hits best first, so a (row, value)'s first positive hit is its best.
        keys = rows[is_pos] * columns + value_col[is_pos]
        _, first = np.unique(keys, return_index=True)
        best_positive.reshape(-1)[keys[first]] = ids[is_pos][first]
        return RetrievalScores(positive, negative, benign, best_positive)

    def evidence(self, prompts: Sequence[str]) -> Evidence:
        """Computes the :class:`Evidence` for ``prompts`` (one embedding pass)."""
        # Emoji written out once; the calls below find none left and pass the text through.
        spelled = [spell_out_emoji(str(p)) for p in prompts]
        normalized = [normalize_text(p) for p in spelled]
        texts = [self.retrieval_text(p, t) for p, t in zip(spelled, normalized)]
        vectors = self.embedder.embed(texts) if texts else np.zeros((0, self.embedder.identity.dimension), np.float32)
        has_bias = bool(self._bias)
        found = [self.person_nouns.first(t) if has_bias else None for t in normalized]
        first_nouns = [None if match is None else match.group(0) for match in found]
        return Evidence(
            normalized=normalized,
            vectors=vectors,
            scores=self.scores_of(vectors),
            keywords=[self.keyword_decisions(t) for t in normalized],
            spelled=[
                {
                    v: f"keyword {hit.term.rstrip('*')!r} "
                    + (f"misspelt as {hit.matched!r}" if hit.distance else "in an obfuscated spelling")
                    for v, hit in found.items()
                }
                for found in self.fuzzy.match(spelled)
            ],
            stated=[self.attributes.stated(t) if has_bias else {} for t in normalized],
            person_noun=np.array([has_bias and self.person_nouns.present(t) for t in normalized], dtype=bool),
            first_person_noun=first_nouns,
        )

    def classifier_targets(self) -> list[str]:
        """What the classifier predicts: each harm value, and ``person`` when there are bias values."""
        return [self._value_ids[i] for i in self._harm] + (["person"] if self._bias else [])

    def feature_names(self) -> list[str]:
        """Names of the classifier's feature columns, in order (see :meth:`features`)."""
        harm = [self._value_ids[i] for i in self._harm]
        attributes = [str(self.registry.values[i].attribute) for i in self._bias]
        return (
            [f"embedding:{i}" for i in range(self.embedder.identity.dimension)]
            + [f"positive:{v}" for v in self._value_ids]
            + [f"negative:{v}" for v in self._value_ids]
            + ["benign"]
            + [f"keyword:{v}" for v in harm]
            + [f"spelled:{v}" for v in harm]
            + ["person-noun", "person-noun-any"]
            + [f"stated:{a}" for a in attributes]
        )

    def features(self, evidence: Evidence) -> np.ndarray:
        """The classifier's input: embedding, retrieval scores and rule evidence, one row a prompt."""
        n = len(evidence.normalized)
        harm_ids = [self._value_ids[i] for i in self._harm]
        keyword = np.array(
            [[any(d.value_id == v for d in hits) for v in harm_ids] for hits in evidence.keywords], dtype=np.float32
        ).reshape(n, len(harm_ids))
        spelled = np.array([[v in found for v in harm_ids] for found in evidence.spelled], dtype=np.float32).reshape(
            n, len(harm_ids)
        )
        attributes = [self.registry.values[i].attribute for i in self._bias]
        stated = np.array([[a in s for a in attributes] for s in evidence.stated], dtype=np.float32).reshape(
            n, len(attributes)
        )
        scores = evidence.scores
        return np.hstack(
            [
                evidence.vectors,
                scores.positive,
                scores.negative,
                scores.benign[:, None],
                keyword,
                spelled,
                evidence.person_noun[:, None].astype(np.float32),
                evidence.person_noun_any[:, None].astype(np.float32),
                stated,
            ]
        ).astype(np.float32)

    def classify(self, evidence: Evidence, row: int, probabilities: np.ndarray) -> Selection:
        """The classifier's decision for one prompt (``probabilities`` per target): every harm value
        whose probability reaches its threshold (most probable first); then, when the prompt
        depicts a person, the bias values whose attribute it does not state."""
        assert self.classifier is not None
        thresholds = self.classifier.thresholds
        stated = evidence.stated[row]
        keywords = {d.value_id: d.reason for d in evidence.keywords[row]}
        best = evidence.scores.best_positive[row] if evidence.scores.best_positive is not None else None
        positive = evidence.scores.positive[row]
        harm_columns = {self._value_ids[i]: i for i in self._harm}

        # What shows a person, shared by every bias value's reason.
        person_parts = ["stated " + ", ".join(f"{a} {c!r}" for a, c in stated.items())] if stated else []
        noun = evidence.first_person_noun[row] if evidence.person_noun[row] else None
        if noun is not None:
            person_parts.append(f"person noun {noun!r}")

        def reason(target: int, value_column: int) -> str:
            parts = [f"p={probabilities[target]:.2f}"]
            value_id = self._value_ids[value_column]
            if value_id in keywords:
                parts.append(keywords[value_id])
            elif value_id in evidence.spelled[row]:
                parts.append(evidence.spelled[row][value_id])
            if value_column in self._bias:
                parts += person_parts
            parts.append(self._exemplar_reason(value_column, positive, best))
            return "; ".join(parts)

        targets = self.classifier.targets
        harm = sorted(
            (t for t, name in enumerate(targets) if name in harm_columns and probabilities[t] >= thresholds[t]),
            key=lambda t: -probabilities[t],
        )
        decisions = [
            ValueDecision(targets[t], float(probabilities[t]), "classifier", reason(t, harm_columns[targets[t]]))
            for t in harm
        ]
        if self._bias:
            person = targets.index("person")
            if probabilities[person] >= thresholds[person]:
                for i in self._bias:
                    if self.registry.values[i].attribute not in stated:
                        decisions.append(
                            ValueDecision(
                                self._value_ids[i], float(probabilities[person]), "classifier", reason(person, i)
                            )
                        )
                if not decisions:
                    return Selection(None, float(probabilities[person]), "explicit-attribute")
        return Selection.of(decisions, float(probabilities.max()) if len(probabilities) else 0.0, "none")

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
        keyword_values: Sequence[ValueDecision] = (),
        best_positive: np.ndarray | None = None,
    ) -> Selection:
        """The decision for one prompt with precomputed retrieval scores (``stated`` and
        ``has_person_noun`` may be precomputed, e.g. during calibration; ``keyword_values`` are the
        keyword stage's harm decisions).

        A value passes when its best positive exemplar reaches its threshold and beats its own
        negative exemplars and the benign ones. When the prompt names a person, bias values use
        their (lower) person-noun threshold and are vetoed only by their own negatives (look-alikes
        such as "a nurse shark") that are closer by more than ``noun_margin``: a look-alike shares
        the noun, so it is always somewhat close, and a generic benign scene ("a hospital
        corridor") must not veto "a doctor in a hospital corridor".

        Every harm value that a keyword or retrieval finds applies. The bias values apply together
        when the prompt depicts a person (a bias value passes retrieval, or an attribute is stated),
        except those whose attribute the prompt states: steering it would contradict the user."""
        if has_person_noun is None:
            has_person_noun = bool(self._bias) and self.person_nouns.present(normalized)
        passing = (positive >= thresholds) & (positive > np.maximum(negative, benign) + self.margin)
        if has_person_noun:
            for i in self._bias:
                passing[i] = positive[i] >= noun_thresholds[i] and negative[i] <= positive[i] + noun_margin
        decisions = list(keyword_values)
        found = {d.value_id for d in decisions}
        harm = sorted(
            (i for i in self._harm if passing[i] and self._value_ids[i] not in found), key=lambda i: -positive[i]
        )
        decisions += [self._retrieved(i, positive, best_positive) for i in harm]
        if stated is None:
            stated = self.attributes.stated(normalized) if self._bias else {}
        passing_bias = [i for i in self._bias if passing[i]]
        if self._bias and (stated or passing_bias):
            evidence = self._person_reason(normalized, stated, passing_bias, positive, best_positive)
            for i in self._bias:
                if self.registry.values[i].attribute in stated:
                    continue
                stage: Stage = "explicit-attribute" if stated else "retrieval"
                decisions.append(ValueDecision(self._value_ids[i], float(positive[i]), stage, evidence))
            if not decisions:
                return Selection(None, float(max(positive[i] for i in self._bias)), "explicit-attribute")
        return Selection.of(decisions, float(positive.max()) if len(positive) else 0.0, "none")

    def _retrieved(self, column: int, positive: np.ndarray, best_positive: np.ndarray | None) -> ValueDecision:
        value_id = self._value_ids[column]
        return ValueDecision(
            value_id, float(positive[column]), "retrieval", self._exemplar_reason(column, positive, best_positive)
        )

    def _exemplar_reason(self, column: int, positive: np.ndarray, best_positive: np.ndarray | None) -> str:
        row = -1 if best_positive is None else int(best_positive[column])
        if row < 0:
            return f"retrieval {positive[column]:.2f}"
        return f"exemplar {self.index.exemplars[row].text!r} ({positive[column]:.2f})"

    def _person_reason(
        self,
        normalized: str,
        stated: dict[str, str],
        passing_bias: list[int],
        positive: np.ndarray,
        best_positive: np.ndarray | None,
    ) -> str:
        said = "stated " + ", ".join(f"{attribute} {cls!r}" for attribute, cls in stated.items()) if stated else ""
        if passing_bias:
            column = max(passing_bias, key=lambda i: positive[i])
            noun = self.person_nouns.first(normalized)
            found = (
                f"person noun {noun.group(0)!r}, " if noun is not None and self.person_nouns.present(normalized) else ""
            )
            retrieved = found + self._exemplar_reason(column, positive, best_positive)
            return f"{said}; {retrieved}" if said else retrieved
        return said

    def keyword_decisions(self, normalized: str) -> list[ValueDecision]:
        """The keyword stage: every harm value with a keyword in the prompt, in registry order."""
        return [
            ValueDecision(hit.value_id, 1.0, "keyword", f"keyword {hit.keyword!r}")
            for hit in self.keywords.match_all(normalized)
        ]

    def select(self, prompts: Sequence[str], batch_size: int = 1024) -> list[Selection]:
        """One :class:`Selection` per prompt, in order, listing every value that applies. An empty
        (or blank) prompt gets none without being embedded: its vector says nothing about a value,
        and a classifier still gave it a score. A missing prompt (None) is an empty one, as in a file.

        Anything else than strings is refused rather than converted: ``str()`` made one prompt a
        selection per letter, ``b"..."`` the text "b'...'" and None the word "none"."""
        texts = _prompt_texts(prompts)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidParameterError(f"invalid parameter batch_size={batch_size!r}: must be a positive integer")
        filled = [i for i, text in enumerate(texts) if text.strip()]
        results: list[Selection] = [Selection.of([], 0.0, "none")] * len(texts)
        for start in range(0, len(filled), batch_size):
            rows = filled[start : start + batch_size]
            chunk = [texts[i] for i in rows]
            for row, selection in zip(rows, self.decide_all(chunk, self.evidence(chunk))):
                results[row] = selection
        return results

    def _per_value(self, target_scores: np.ndarray) -> np.ndarray:
        """Classifier scores per target → per value (every bias value takes the ``person`` score)."""
        assert self.classifier is not None
        columns = [
            self.classifier.targets.index("person" if i in self._bias else self._value_ids[i])
            for i in range(len(self._value_ids))
        ]
        return target_scores[:, columns]

    def decide_all(self, prompts: Sequence[str], evidence: Evidence) -> list[Selection]:
        """Decisions for ``prompts`` from their precomputed ``evidence``: the classifier's when the
        index has one, otherwise the threshold rules'; then the judge's, if any."""
        scores = evidence.scores
        assert scores.best_positive is not None
        if self.classifier is not None:
            probabilities = self.classifier.probabilities(self.features(evidence))
            decided = [self.classify(evidence, row, probabilities[row]) for row in range(len(prompts))]
            if self.judge is not None:
                per_value = self._per_value(probabilities)
                per_value_thresholds = self._per_value(self.classifier.thresholds[None, :])[0]
                decided = [
                    self._ask_judge(
                        p, s, per_value[row], per_value_thresholds, self.classifier_judge_band, evidence, row
                    )
                    for row, (p, s) in enumerate(zip(prompts, decided))
                ]
            return decided
        thresholds, noun_thresholds = self.thresholds, self.noun_thresholds
        decided = []
        for row, prompt in enumerate(prompts):
            selection = self.decide(
                evidence.normalized[row],
                scores.positive[row],
                scores.negative[row],
                float(scores.benign[row]),
                thresholds,
                noun_thresholds,
                self.index.noun_margin,
                stated=evidence.stated[row],
                has_person_noun=bool(evidence.person_noun[row]),
                keyword_values=evidence.keywords[row],
                best_positive=scores.best_positive[row],
            )
            if self.judge is not None:
                # A prompt with a person noun is held to the bias values' person-noun thresholds.
                row_thresholds = thresholds.copy()
                if evidence.person_noun[row]:
                    row_thresholds[self._bias] = noun_thresholds[self._bias]
                selection = self._ask_judge(
                    prompt, selection, scores.positive[row], row_thresholds, self.judge_band, evidence, row
                )
            decided.append(selection)
        return decided

    def _ask_judge(
        self,
        prompt: str,
        selection: Selection,
        scores: np.ndarray,
        thresholds: np.ndarray,
        band: float,
        evidence: Evidence,
        row: int,
    ) -> Selection:
        """Lets the judge re-decide the values whose retrieval or classifier score lies within
        ``band`` of its threshold; every other decision stands. Harm values a keyword found and
        bias values of a prompt that states an attribute (it depicts a person) are rules, never
        asked. The bias values are one decision, whether the prompt depicts a person, so they are
        asked and applied together: a judge naming any of them applies all that the prompt does not
        state, as the rules do."""
        near = np.abs(scores - thresholds) <= band
        if not near.any():
            return selection
        keyword_ids = {d.value_id for d in evidence.keywords[row]}
        stated = evidence.stated[row]
        harm = [i for i in self._harm if near[i] and self._value_ids[i] not in keyword_ids]
        unstated = [i for i in self._bias if self.registry.values[i].attribute not in stated]
        person_open = (
            not stated
            and any(near[i] for i in unstated)
            and not any(scores[i] > thresholds[i] + band for i in unstated)
        )
        asked = harm + (unstated if person_open else [])
        if not asked:
            return selection
        candidates = [self.registry.values[i] for i in asked]
        ids = {c.id for c in candidates}
        assert self.judge is not None
        applicable = getattr(self.judge, "applicable", None)
        if applicable is not None:
            verdicts = {v for v in applicable(prompt, candidates) if v in ids}
        else:
            verdict = self.judge.decide(prompt, candidates)
            verdicts = {verdict} if verdict in ids else set()

        def judged(column: int) -> ValueDecision:
            return ValueDecision(self._value_ids[column], float(scores[column]), "judge", "judge")

        kept = [d for d in selection.values if d.value_id not in ids]
        kept_harm = [d for d in kept if self.registry.value(d.value_id).kind == "harm"]
        new_harm = sorted((i for i in harm if self._value_ids[i] in verdicts), key=lambda i: -scores[i])
        person = person_open and any(self._value_ids[i] in verdicts for i in unstated)
        bias = [judged(i) for i in unstated] if person else [d for d in kept if d not in kept_harm]
        decisions = kept_harm + [judged(i) for i in new_harm] + bias
        return Selection.of(decisions, selection.score, "judge")

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

    def choose_all(self, prompts: Sequence[str]) -> list[list[ValueChoice]]:
        """Every value that applies to each prompt, in order (harm values first)."""
        out = []
        for selection in self.select(prompts):
            values = [self.registry.value(v) for v in selection.value_ids]
            out.append([ValueChoice(v.id, v.text, v.kind) for v in values])
        return out


def load_selector(directory: str | os.PathLike[str] | Path, **kwargs: object) -> ValueSelector:
    """Shorthand for :meth:`ValueSelector.load`."""
    return ValueSelector.load(directory, **kwargs)  # type: ignore[arg-type]
