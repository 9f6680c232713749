"""A calibrated one-vs-rest classifier over a prompt's embedding and rule evidence.

Nearest-exemplar thresholds decide from one similarity per value, so a prompt that is about a
bartender but whose closest exemplar is a scene falls through, and a benign prompt that shares
words with a harmful exemplar gets the value. The classifier weighs everything known about a
prompt at once: its embedding, its best positive, negative and benign exemplar similarities, which
harm keywords occur (exactly or in an obfuscated spelling), whether a person noun occurs and which
attributes are stated. There is one target per harm value, and one, ``person``, for all bias
values: they share the question "does the prompt depict a person?", and the prompt's stated
attributes then decide which of them apply. Each target has its own L2-regularised logistic
regression, fitted by Newton's method (a few hundred features, a few thousand prompts: exact and
fast, no dependency), and its own probability threshold.

The weights are plain arrays in ``classifier.safetensors`` inside the index folder; the feature
names they were fitted on are in the index metadata, so an index whose features no longer match the
selector is refused rather than silently misread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from livo.errors import ConfigError

CLASSIFIER_FILE = "classifier.safetensors"


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float | np.ndarray, iterations: int = 30
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method (iteratively reweighted least squares).

    The intercept is not penalised. ``x`` should be standardised; ``l2`` is the penalty on the
    squared weights (larger: smoother), one for all or one per feature. Returns the weights and
    the intercept."""
    n, d = x.shape
    design = np.hstack([x.astype(np.float64), np.ones((n, 1))])
    target = y.astype(np.float64)
    penalty = np.zeros(d + 1, dtype=np.float64)
    penalty[:-1] = l2
    theta = np.zeros(d + 1)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ theta, -40, 40)))
        gradient = design.T @ (p - target) + penalty * theta
        weight = p * (1 - p)
        hessian = (design * weight[:, None]).T @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return theta[:-1].astype(np.float32), float(theta[-1])


@dataclass
class ValueClassifier:
    """Per target (a harm value, or ``person``: whether the prompt depicts a person, which decides
    the bias values): weights, intercept and decision threshold on the probability, over features
    standardised with ``mean`` and ``scale``."""

    targets: list[str]
    feature_names: list[str]
    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    weights: np.ndarray  # (V, D)
    intercepts: np.ndarray  # (V,)
    thresholds: np.ndarray  # (V,)
    l2: float
    summary: dict[str, object]

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        labels: np.ndarray,
        targets: Sequence[str],
        feature_names: Sequence[str],
        l2: float,
        thresholds: Sequence[float] | np.ndarray | None = None,
        summary: dict[str, object] | None = None,
    ) -> ValueClassifier:
        """Fits one logistic regression per target; ``labels`` is (n, T) of 0/1."""
        if features.shape[0] != labels.shape[0] or labels.shape[1] != len(targets):
            raise ValueError(f"features {features.shape} and labels {labels.shape} do not match {len(targets)} values")
        if features.shape[1] != len(feature_names):
            raise ValueError(f"{features.shape[1]} feature columns but {len(feature_names)} names")
        mean = features.mean(axis=0)
        scale = features.std(axis=0)
        scale[scale < 1e-6] = 1.0
        standard = (features - mean) / scale
        weights, intercepts = [], []
        for column in range(len(targets)):
            w, b = fit_logistic(standard, labels[:, column], l2)
            weights.append(w)
            intercepts.append(b)
        return cls(
            targets=list(targets),
            feature_names=list(feature_names),
            mean=mean.astype(np.float32),
            scale=scale.astype(np.float32),
            weights=np.stack(weights),
            intercepts=np.array(intercepts, dtype=np.float32),
            thresholds=np.array(thresholds if thresholds is not None else [0.5] * len(targets), dtype=np.float32),
            l2=l2,
            summary=dict(summary or {}),
        )

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(n, V) probability that each value applies."""
        logits = ((features - self.mean) / self.scale) @ self.weights.T + self.intercepts
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40)))

    def to_bytes(self) -> tuple[bytes, dict[str, object]]:
        """The arrays as safetensors bytes, and the rest (names, penalty, summary) as JSON-ready data."""
        from safetensors.numpy import save

        data = save(
            {
                "mean": self.mean,
                "scale": self.scale,
                "weights": self.weights,
                "intercepts": self.intercepts,
                "thresholds": self.thresholds,
            }
        )
        meta: dict[str, object] = {
            "targets": self.targets,
            "feature_names": self.feature_names,
            "l2": self.l2,
            "summary": self.summary,
        }
        return data, meta

    @classmethod
    def from_bytes(cls, data: bytes, meta: dict[str, object], source: str) -> ValueClassifier:
        """Inverse of :meth:`to_bytes`; ``source`` names the file in errors."""
        from safetensors import SafetensorError
        from safetensors.numpy import load

        try:
            arrays = load(data)
            classifier = cls(
                targets=[str(v) for v in meta["targets"]],  # type: ignore[attr-defined]
                feature_names=[str(v) for v in meta["feature_names"]],  # type: ignore[attr-defined]
                mean=arrays["mean"],
                scale=arrays["scale"],
                weights=arrays["weights"],
                intercepts=arrays["intercepts"],
                thresholds=arrays["thresholds"],
                l2=float(meta["l2"]),  # type: ignore[arg-type]
                summary=dict(meta.get("summary") or {}),  # type: ignore[call-overload]
            )
        except (ValueError, KeyError, TypeError, SafetensorError) as error:
            raise ConfigError(f"{source}: damaged value classifier: {error}; rebuild the index") from error
        d, v = len(classifier.feature_names), len(classifier.targets)
        if classifier.weights.shape != (v, d) or classifier.mean.shape != (d,) or classifier.thresholds.shape != (v,):
            raise ConfigError(f"{source}: the value classifier's arrays do not match its {v} values and {d} features")
        return classifier
