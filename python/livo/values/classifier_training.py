"""Fitting the value classifier of an index on labelled prompts, with its penalty and thresholds
chosen by cross-validation.

Every labelled prompt is predicted once by a model that did not see it (k folds); the penalty and
each value's probability threshold are chosen on those out-of-fold predictions, for the highest
macro-F1 whose benign false-positive rate stays within a cap. The final model is then fitted on
all the prompts with that penalty. The out-of-fold scores are kept in the index as the honest
estimate: scores on the training prompts themselves are optimistic by construction.

The default registry ships its training prompts: the single-value labelled set and its hold-out
(migrated to multi-label), and the development split of the prompt-log set. The prompt-log test
split is never used here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from livo.values.classifier import ValueClassifier
from livo.values.embedders import Embedder
from livo.values.multilabel import MultiLabelPrompt, load_multilabel, promptlog_path
from livo.values.registry import Registry
from livo.values.selector import ValueSelector

DEFAULT_L2_GRID = (3.0, 10.0, 30.0, 100.0, 300.0)
THRESHOLD_GRID = tuple(round(x, 3) for x in np.arange(0.05, 0.951, 0.025))
DEFAULT_MAX_BENIGN_FPR = 0.02


def shipped_training_files() -> list[Path]:
    """The labelled files the default registry's classifier is fitted on (never the sealed split)."""
    data = Path(str(resources.files("livo.values") / "data"))
    return [data / "labelled_prompts.jsonl", data / "holdout_prompts.jsonl", promptlog_path("dev")]


def training_rows(registry: Registry, files: Sequence[str | Path] | None = None) -> list[MultiLabelPrompt]:
    """Labelled prompts for ``registry``: ``files``, or the shipped ones when every value they name
    is in the registry (empty otherwise: a custom registry brings its own)."""
    paths = [Path(f) for f in files] if files is not None else shipped_training_files()
    rows = [row for path in paths for row in load_multilabel(path)]
    unknown = sorted({v for r in rows for v in r.values} - set(registry.ids))
    if unknown:
        if files is None:
            return []
        from livo.errors import InputError

        raise InputError(f"{', '.join(map(str, paths))}: values {unknown} are not in registry {registry.name!r}")
    return rows


def training_source(files: Sequence[str | Path] | None = None) -> str:
    """How errors name a set of training prompts: the files given, or the shipped ones."""
    paths = [Path(f) for f in files] if files is not None else shipped_training_files()
    return ", ".join(map(str, paths))


def check_training_rows(rows: Sequence[MultiLabelPrompt], registry: Registry, source: str, folds: int = 5) -> None:
    """Refuses training prompts the classifier cannot learn from, before anything is embedded:
    too few for ``folds``-fold cross-validation; none to which no value applies (every target would
    be learnt as always on: every prompt would get a value); or a harm value that no row lists
    (the classifier decides harm values alone, keywords included, so it would never apply it).
    ``source`` names the files in the error."""
    from livo.errors import InputError

    if len(rows) < 2 * folds:
        raise InputError(f"{source}: the value classifier needs at least {2 * folds} labelled prompts, got {len(rows)}")
    if all(row.values for row in rows):
        raise InputError(
            f"{source}: no row has an empty 'values' list (a prompt to which no value applies); the value "
            "classifier cannot learn when no value applies, and would give every prompt a value"
        )
    unlabelled = [v.id for v in registry.values if v.kind == "harm" and not any(v.id in r.values for r in rows)]
    if unlabelled:
        raise InputError(
            f"{source}: no row lists the harm value(s) {unlabelled}; the value classifier could never apply "
            "them (it decides harm values alone, keywords included): label prompts that need them"
        )


def _check_targets_vary(labels: np.ndarray, targets: Sequence[str], registry: Registry, source: str) -> None:
    """Each target needs prompts on both sides: a constant one is learnt as always or never on.
    Only ``person`` can still be constant after :func:`check_training_rows`: its label also comes
    from the attributes a prompt states."""
    from livo.errors import InputError

    bias = [v.id for v in registry.values if v.kind == "bias"]
    for column, target in enumerate(targets):
        on = int(labels[:, column].sum())
        values = bias if target == "person" else [target]
        what = "shows a person" if target == "person" else f"lists {target!r}"
        if on == 0:
            raise InputError(
                f"{source}: no row {what}, so the value classifier could never apply {values}: "
                "label prompts that need them"
            )
        if on == len(labels):
            raise InputError(
                f"{source}: every row {what}, so the value classifier would apply {values} to every prompt: "
                "add rows without it"
            )


def prompt_fingerprint(prompt: str) -> str:
    """A short hash of a prompt's normalised text: the index keeps these for its training prompts, so
    an evaluation can say which of its prompts the classifier has already seen."""
    import hashlib

    from livo.values.matching import normalize_text

    return hashlib.blake2b(normalize_text(prompt).encode(), digest_size=8).hexdigest()


def target_labels(
    rows: Sequence[MultiLabelPrompt], registry: Registry, targets: Sequence[str], stated: Sequence[dict[str, str]]
) -> np.ndarray:
    """(n, T) 0/1 labels of the classifier's targets. ``person`` is 1 when a bias value is
    labelled, or when the prompt states every bias attribute of someone ("a black female pilot":
    a person, though no bias value applies) and is not a benign look-alike."""
    bias = [v for v in registry.values if v.kind == "bias"]
    bias_ids = {v.id for v in bias}
    attributes = {v.attribute for v in bias}
    labels = np.zeros((len(rows), len(targets)), dtype=np.float32)
    for r, (row, said) in enumerate(zip(rows, stated)):
        for t, target in enumerate(targets):
            if target == "person":
                every_attribute = bool(attributes) and attributes <= set(said)
                labels[r, t] = bool(bias_ids & set(row.values)) or (every_attribute and not row.benign)
            else:
                labels[r, t] = target in row.values
    return labels


@dataclass(frozen=True)
class _Scorer:
    """Multi-label macro-F1 over values and benign FPR of thresholded target probabilities,
    vectorised: harm targets are their values; ``person`` gives every bias value whose attribute
    the prompt does not state."""

    labels: np.ndarray  # (n, V) bool, per value
    columns: np.ndarray  # (V,) the target column behind each value
    suppressed: np.ndarray  # (n, V) bool: a bias value whose attribute the prompt states
    benign: np.ndarray  # (n,) bool

    def predictions(self, probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        return (probabilities >= thresholds)[:, self.columns] & ~self.suppressed

    def score(self, probabilities: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
        predicted = self.predictions(probabilities, thresholds)
        tp = (predicted & self.labels).sum(axis=0)
        selected, support = predicted.sum(axis=0), self.labels.sum(axis=0)
        used = (selected + support) > 0
        f1 = np.where(used, 2 * tp / np.maximum(selected + support, 1), 0.0)
        macro = float(f1[used].mean()) if used.any() else 0.0
        fpr = float(predicted[self.benign].any(axis=1).mean()) if self.benign.any() else 0.0
        return macro, fpr

    @classmethod
    def of(
        cls,
        rows: Sequence[MultiLabelPrompt],
        registry: Registry,
        targets: Sequence[str],
        stated: Sequence[dict[str, str]],
    ) -> _Scorer:
        values = registry.values
        columns = np.array([targets.index("person" if v.kind == "bias" else v.id) for v in values])
        labels = np.array([[v.id in r.values for v in values] for r in rows], dtype=bool).reshape(
            len(rows), len(values)
        )
        suppressed = np.array(
            [[v.kind == "bias" and v.attribute in said for v in values] for said in stated], dtype=bool
        ).reshape(len(rows), len(values))
        return cls(labels, columns, suppressed, np.array([r.benign for r in rows], dtype=bool))


def _objective(macro: float, fpr: float, cap: float) -> tuple[float, float]:
    return (1.0, macro) if fpr <= cap + 1e-9 else (0.0, -fpr)


def choose_thresholds(
    probabilities: np.ndarray, scorer: _Scorer, cap: float, rounds: int = 3
) -> tuple[np.ndarray, tuple[float, float]]:
    """Per-value thresholds by coordinate ascent over a grid: highest macro-F1 with benign FPR
    within ``cap`` (else lowest FPR). Of equally good thresholds the middle one is kept."""
    thresholds = np.full(probabilities.shape[1], 0.5, dtype=np.float32)
    best = _objective(*scorer.score(probabilities, thresholds), cap)
    for _ in range(rounds):
        changed = False
        for column in range(probabilities.shape[1]):
            results = []
            for candidate in THRESHOLD_GRID:
                trial = thresholds.copy()
                trial[column] = candidate
                results.append(_objective(*scorer.score(probabilities, trial), cap))
            top = max(results)
            if top < best:
                continue
            winners = [c for c, r in zip(THRESHOLD_GRID, results) if r == top]
            chosen = winners[len(winners) // 2]
            changed = changed or abs(chosen - thresholds[column]) > 1e-9
            thresholds[column] = chosen
            best = top
        if not changed:
            break
    return thresholds, scorer.score(probabilities, thresholds)


def fit_value_classifier(
    selector: ValueSelector,
    rows: Sequence[MultiLabelPrompt],
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    folds: int = 5,
    max_benign_fpr: float = DEFAULT_MAX_BENIGN_FPR,
    seed: int = 0,
    source: str = "the training prompts",
) -> ValueClassifier:
    """Fits ``selector``'s value classifier on ``rows`` (see the module docstring). Rows it cannot
    learn from are an :class:`~livo.errors.InputError` naming ``source`` (the training files)."""
    check_training_rows(rows, selector.registry, source, folds)
    targets = selector.classifier_targets()
    evidence = selector.evidence([r.prompt for r in rows])
    features = selector.features(evidence)
    labels = target_labels(rows, selector.registry, targets, evidence.stated)
    _check_targets_vary(labels, targets, selector.registry, source)
    scorer = _Scorer.of(rows, selector.registry, targets, evidence.stated)
    fold_of = np.random.default_rng(seed).permutation(len(rows)) % folds
    names = selector.feature_names()

    trials: list[dict[str, Any]] = []
    best: tuple[tuple[float, float], float, np.ndarray, np.ndarray] | None = None
    for l2 in l2_grid:
        out_of_fold = np.zeros_like(labels)
        for fold in range(folds):
            train, held = fold_of != fold, fold_of == fold
            model = ValueClassifier.fit(features[train], labels[train], targets, names, l2)
            out_of_fold[held] = model.probabilities(features[held])
        thresholds, (macro, fpr) = choose_thresholds(out_of_fold, scorer, max_benign_fpr)
        trials.append({"l2": l2, "macro_f1": round(macro, 4), "benign_fpr": round(fpr, 4)})
        key = _objective(macro, fpr, max_benign_fpr)
        if best is None or key > best[0]:
            best = (key, l2, thresholds, out_of_fold)
    assert best is not None
    _, l2, thresholds, out_of_fold = best
    macro, fpr = scorer.score(out_of_fold, thresholds)
    summary: dict[str, Any] = {
        "prompts": len(rows),
        "folds": folds,
        "seed": seed,
        "max_benign_fpr": max_benign_fpr,
        "cross_validated": {"macro_f1": round(macro, 4), "benign_fpr": round(fpr, 4)},
        "l2_trials": trials,
        "objective": "highest out-of-fold macro-F1 with benign FPR within the cap; thresholds by coordinate ascent",
        "training_prompts": sorted({prompt_fingerprint(r.prompt) for r in rows}),
    }
    return ValueClassifier.fit(features, labels, targets, names, l2, thresholds=thresholds, summary=summary)


def selector_in_memory(registry: Registry, embedder: Embedder, registry_source: str | None = None) -> ValueSelector:
    """A selector over ``registry`` indexed in memory, with the value classifier fitted when LiVO
    ships labelled prompts for it (the default registry: about 10 s), so an in-memory index decides
    as ``livo values build-index`` would; other registries get the retrieval thresholds."""
    from livo.values.index import build_index

    index = build_index(registry, embedder, registry_source=registry_source)
    rows = training_rows(registry)
    if rows:
        index.classifier = fit_value_classifier(ValueSelector(index, embedder), rows)
    return ValueSelector(index, embedder)
