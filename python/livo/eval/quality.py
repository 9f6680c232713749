"""Image-quality metrics: FID and KID against reference images, and CLIP score to the prompt.

FID and KID compare two sets of image *features*; which network makes the features is pluggable
(:func:`load_feature_extractor`), because the usual one (the 2015 Inception network) cannot be
downloaded on machines without network access and must never be fetched behind the user's back:

- ``pixels[:SIZE]``: average-pooled pixels (SIZE×SIZE×3 values, default 4). Only meaningful for tiny
  synthetic images such as the toy world's 16×16 glyphs, where pixels *are* the content;
- ``clip:NAME_OR_PATH``: the image embedding of a local transformers CLIP model (``CLIPModel``);
- ``inception:PATH``: a TorchScript Inception-v3 feature network file that takes uint8 NCHW images
  and ``return_features=True`` (the ``inception-2015-12-05.pt`` file used by StyleGAN's and
  clean-fid's FID code); this gives FID numbers comparable with published ones;
- ``torchscript:PATH``: any TorchScript module mapping float NCHW images in [0, 1] to ``(N, D)``.

In the evaluation, the reference set is the *base model's* images of the same prompts and seeds, so
FID/KID measure how far a method moves away from what the base model makes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from livo.errors import ConfigError, InputError

FeatureExtractor = Callable[[np.ndarray], np.ndarray]

INCEPTION_HINT = (
    "FID/KID comparable with published numbers need the Inception-v3 feature network, which is never "
    "downloaded automatically. On a machine with network access fetch the TorchScript file "
    "'inception-2015-12-05.pt' (the one StyleGAN2-ADA / clean-fid use), copy it here and pass "
    "'inception:/path/to/inception-2015-12-05.pt'; or pass 'clip:/path/to/local/clip-model' "
    "(any transformers CLIPModel folder) or, for tiny synthetic images, 'pixels'."
)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets: ``|μa − μb|² + Tr(Σa + Σb − 2 (Σa Σb)^½)``.

    ``Tr((Σa Σb)^½)`` is computed as the sum of square roots of the eigenvalues of the symmetric
    PSD matrix ``Σa^½ Σb Σa^½``, which has the same spectrum and avoids a complex ``sqrtm``.
    """
    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise InputError(f"FID needs at least 2 images per set, got {len(a)} and {len(b)}")
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    cov_a, cov_b = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum())
    distance = float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root)
    return max(distance, 0.0)


def kernel_inception_distance(
    features_a: np.ndarray,
    features_b: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    paired: bool = False,
) -> float:
    """KID: unbiased MMD² with the cubic polynomial kernel ``(x·y/d + 1)³``, averaged over random
    subsets of ``min(subset_size, |a|, |b|)`` images each (seeded, so the number is reproducible).

    ``paired``: row ``i`` of ``a`` and of ``b`` were made from the same seed (and prompt), so they
    are not independent, and the cross term of the independent-sample estimator, which includes
    each such pair, makes KID negative (a method that leaves most images as the base's scored
    below 0). Paired sets draw one subset of rows for both and leave the pairs' own cross terms
    out: the U-statistic over pairs ``i ≠ j``, exactly 0 for identical sets."""
    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if paired and len(a) != len(b):
        raise ValueError(f"paired KID needs as many rows in both sets, got {len(a)} and {len(b)}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise InputError(f"KID needs at least 2 images per set, got {len(a)} and {len(b)}")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        rows = rng.choice(len(a), m, replace=False)
        x = a[rows]
        y = b[rows if paired else rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1.0) ** 3
        kyy = (y @ y.T / d + 1.0) ** 3
        kxy = (x @ y.T / d + 1.0) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        cross = (kxy.sum() - np.trace(kxy)) / (m * (m - 1)) if paired else kxy.mean()
        total += within - 2.0 * cross
    return float(total / subsets)


def _as_features(features: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or not len(array):
        raise ValueError(f"{name}: expected a non-empty (N, D) array, got shape {array.shape}")
    return array


def pixel_features(images: np.ndarray, size: int = 4) -> np.ndarray:
    """Average-pool ``(N, H, W, 3)`` uint8 images to ``size``×``size`` and flatten, scaled to [0, 1]."""
    array = np.asarray(images, dtype=np.float64) / 255.0
    n, h, w, c = array.shape
    if h % size or w % size:
        raise ConfigError(f"pixels:{size}: image size {h}x{w} is not a multiple of {size}")
    pooled = array.reshape(n, size, h // size, size, w // size, c).mean(axis=(2, 4))
    return pooled.reshape(n, -1)


def load_feature_extractor(spec: str, device: str = "cpu", batch_size: int = 64) -> FeatureExtractor:
    """A function ``(N, H, W, 3) uint8 -> (N, D)`` features from a spec (see the module docstring)."""
    kind, _, arg = spec.partition(":")
    if kind == "pixels":
        size = int(arg) if arg else 4
        return lambda images: pixel_features(images, size)
    if kind in ("inception", "torchscript"):
        return _torchscript_extractor(kind, arg, device, batch_size)
    if kind == "clip":
        if not arg:
            raise ConfigError(
                "clip: give a local CLIP model folder or a cached hub id, e.g. clip:/models/clip-vit-large-patch14"
            )
        clip = ClipModel(arg, device)
        return lambda images: clip.image_features(images, batch_size)
    raise ConfigError(
        f"feature extractor {spec!r}: unknown kind {kind!r}; use pixels[:SIZE], clip:PATH, "
        f"inception:PATH or torchscript:PATH. {INCEPTION_HINT}"
    )


def _torchscript_extractor(kind: str, path: str, device: str, batch_size: int) -> FeatureExtractor:
    import warnings

    import torch

    if not path or not Path(path).is_file():
        raise ConfigError(f"{kind}:{path}: no such file. {INCEPTION_HINT}")
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.15, but it is the format FID files use
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(path, map_location=device).eval()

    def extract(images: np.ndarray) -> np.ndarray:
        chunks = []
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).permute(0, 3, 1, 2)
            with torch.no_grad():
                if kind == "inception":
                    out = module(batch.to(device), return_features=True)
                else:
                    out = module(batch.to(device, torch.float32) / 255.0)
            chunks.append(out.detach().float().cpu().numpy().reshape(len(batch), -1))
        return np.concatenate(chunks)

    return extract


class ClipModel:
    """A local transformers CLIP model for image features and CLIP score (no downloads)."""

    def __init__(self, name_or_path: str, device: str = "cpu") -> None:
        import torch
        from transformers import CLIPModel, CLIPProcessor

        try:
            # float32 whatever the folder holds: the pixels and features it compares are float32.
            model = CLIPModel.from_pretrained(name_or_path, local_files_only=True, dtype=torch.float32)
            self.model = model.to(device).eval()  # type: ignore[arg-type]
            self.processor = CLIPProcessor.from_pretrained(name_or_path, local_files_only=True)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"CLIP model {name_or_path!r}: cannot load it from local files ({type(error).__name__}). Download "
                f"it on a networked machine (e.g. `hf download openai/clip-vit-large-patch14 --local-dir DIR`) "
                f"and pass the folder."
            ) from None
        self.device = device

    def _image_embeds(self, images: np.ndarray, batch_size: int) -> Any:
        import torch

        chunks = []
        for start in range(0, len(images), batch_size):
            batch = list(np.asarray(images[start : start + batch_size], dtype=np.uint8))
            inputs = self.processor(images=batch, return_tensors="pt").to(self.device)
            with torch.no_grad():
                chunks.append(_embedding(self.model.get_image_features(**inputs)))
        return torch.cat(chunks)

    def image_features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        return self._image_embeds(images, batch_size).float().cpu().numpy()

    def text_features(self, texts: Sequence[str]) -> Any:
        import torch

        inputs = self.processor(text=list(texts), return_tensors="pt", padding=True, truncation=True).to(self.device)
        with torch.no_grad():
            return _embedding(self.model.get_text_features(**inputs))

    def score(self, images: np.ndarray, prompts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """CLIP score per image: ``max(100 · cos(image, prompt), 0)`` (the usual definition)."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        image = self._image_embeds(images, batch_size)
        unique = sorted(set(prompts))
        text = self.text_features(unique)
        rows = text[[unique.index(p) for p in prompts]]
        cosine = (image / image.norm(dim=-1, keepdim=True) * (rows / rows.norm(dim=-1, keepdim=True))).sum(-1)
        return (100.0 * cosine).clamp(min=0).float().cpu().numpy()


def _embedding(output: Any) -> Any:
    """transformers 5 may return a model output instead of a tensor from ``get_*_features``."""
    if hasattr(output, "pooler_output") and not hasattr(output, "shape"):
        return output.pooler_output
    return output


def fid_kid(
    features: FeatureExtractor, images: np.ndarray, reference: np.ndarray, seed: int = 0, paired: bool = False
) -> dict[str, float]:
    """FID and KID of ``images`` against ``reference`` (same number of images is not required;
    ``paired``: image ``i`` of both was made from the same prompt and seed, see
    :func:`kernel_inception_distance`)."""
    a, b = features(images), features(reference)
    subset = min(1000, len(a), len(b))
    kid = kernel_inception_distance(a, b, subset_size=subset, seed=seed, paired=paired)
    return {"fid": frechet_distance(a, b), "kid": kid}
