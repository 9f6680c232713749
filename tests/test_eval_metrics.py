"""Evaluation metrics against values worked out by hand: D1/D2, Avg R/S, max@k, prob@k, FID, KID."""

from __future__ import annotations

import math

import numpy as np
import pytest

from livo import metrics
from livo.errors import ConfigError
from livo.eval.quality import frechet_distance, kernel_inception_distance, load_feature_extractor, pixel_features


def test_d1_d2_of_three_to_one_split() -> None:
    assert metrics.discrepancy_d1([3, 1]) == pytest.approx(0.5)
    # shares 0.75 / 0.25 against 0.5 / 0.5: sqrt(0.0625 + 0.0625)
    assert metrics.discrepancy_d2([3, 1]) == pytest.approx(math.sqrt(0.125))


def test_unreadable_images_count_toward_n_but_no_class() -> None:
    counts = metrics.attribute_counts(["orange", "orange", None, "teal"], ["orange", "teal"])
    assert counts == [2, 1]
    assert metrics.discrepancy_d1(counts, total=4) == pytest.approx(0.25)
    assert metrics.discrepancy_d2(counts, total=4) == pytest.approx(math.sqrt(0.0**2 + 0.25**2))


def test_d1_d2_of_five_classes() -> None:
    counts = [4, 2, 2, 1, 1]  # N = 10, K = 5
    assert metrics.discrepancy_d1(counts) == pytest.approx(0.3)
    expected = math.sqrt((0.4 - 0.2) ** 2 + 0 + 0 + (0.1 - 0.2) ** 2 + (0.1 - 0.2) ** 2)
    assert metrics.discrepancy_d2(counts) == pytest.approx(expected)


def test_avg_r_and_avg_s() -> None:
    assert metrics.harm_ratio([True, False, False, True]) == pytest.approx(0.5)
    assert metrics.mean_score([0.9, 0.1, 0.2, 0.6]) == pytest.approx(0.45)
    with pytest.raises(ValueError):
        metrics.mean_score([])


def test_max_at_5_over_consecutive_groups_drops_the_incomplete_tail() -> None:
    scores = [0.1, 0.9, 0.2, 0.3, 0.4, 0.0, 0.0, 0.5, 0.1, 0.2, 0.7]  # groups: max 0.9, max 0.5; 0.7 dropped
    assert metrics.expected_max_at_k(scores, 5) == pytest.approx(0.7)


def test_max_at_5_over_all_subsets() -> None:
    # Six images, 5-subsets: five of six subsets contain 0.6, the one without it has max 0.5.
    scores = [0.3, 0.6, 0.1, 0.5, 0.2, 0.4]
    assert metrics.expected_max_at_k(scores, 5, "subsets") == pytest.approx((5 * 0.6 + 0.5) / 6)


def test_prob_at_5_consecutive_and_subsets() -> None:
    flags = [False, False, True, False, False] + [False] * 5
    assert metrics.prob_any_at_k(flags, 5) == pytest.approx(0.5)
    # One harmful of six: a 5-subset misses it only when it is the one image left out.
    six = [False, False, True, False, False, False]
    assert metrics.prob_any_at_k(six, 5, "subsets") == pytest.approx(1 - 1 / 6)
    # Two harmful of six, groups of 2: 1 - C(4,2)/C(6,2) = 1 - 6/15.
    assert metrics.prob_any_at_k([True, True, False, False, False, False], 2, "subsets") == pytest.approx(0.6)


def test_subsets_and_consecutive_agree_when_there_is_one_group() -> None:
    scores = [0.2, 0.8, 0.1, 0.4, 0.3]
    assert metrics.expected_max_at_k(scores, 5) == metrics.expected_max_at_k(scores, 5, "subsets") == 0.8


def test_group_metrics_reject_too_few_images_and_unknown_grouping() -> None:
    with pytest.raises(ValueError, match="at least 5 images"):
        metrics.prob_any_at_k([True] * 4, 5)
    with pytest.raises(ValueError, match="grouping"):
        metrics.expected_max_at_k([0.1] * 5, 5, "random")


def test_mean_over_prompts_weights_prompts_equally() -> None:
    assert metrics.mean_over_prompts([1.0, 0.0, 0.5]) == pytest.approx(0.5)


def test_fid_is_zero_for_identical_sets_and_the_squared_shift_for_a_translated_set() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0.0, 0.5, 0.0, 0.0])
    # Same covariance, means differ by `shift`: FID = |shift|^2 = 1 + 4 + 0.25.
    assert frechet_distance(a, a + shift) == pytest.approx(5.25, rel=1e-6)


def test_fid_of_scaled_gaussians_matches_the_closed_form() -> None:
    # Covariances I and 4I in d dims, equal means: Tr(I + 4I - 2*2I) = d.
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4000, 3))
    a = (a - a.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(a, rowvar=False))).T  # exact covariance I
    assert frechet_distance(a, 2 * a) == pytest.approx(3.0, rel=1e-6)


def test_kid_by_hand_on_two_points_per_set() -> None:
    # d = 1, k(x, y) = (xy + 1)^3. X = {0, 1}: within 1; Y = {1, 2}: within 27;
    # cross: k(0,1)=1, k(0,2)=1, k(1,1)=8, k(1,2)=27 -> mean 9.25. MMD^2 = 1 + 27 - 2 * 9.25 = 9.5.
    x, y = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
    assert kernel_inception_distance(x, y, subsets=3, subset_size=2) == pytest.approx(9.5)


def test_paired_kid_leaves_each_pair_s_own_cross_term_out() -> None:
    """Seed-matched sets are not independent: the independent-sample estimator scored a set against
    itself below 0; the paired one gives exactly 0, and agrees with the hand computation."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(50, 48))
    assert kernel_inception_distance(a, a, subsets=5, subset_size=50) < -0.1
    assert kernel_inception_distance(a, a, subsets=5, subset_size=50, paired=True) == pytest.approx(0.0, abs=1e-9)
    # d = 1, X = {0, 1}, Y = {1, 2}, pairs (0, 1) and (1, 2): within 1 + 27; cross over i != j:
    # k(0, 2) = 1 and k(1, 1) = 8, mean 4.5: 28 - 9 = 19.
    x, y = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
    assert kernel_inception_distance(x, y, subsets=3, subset_size=2, paired=True) == pytest.approx(19.0)


def test_pixel_features_pool_blocks() -> None:
    image = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    image[0, :2, :2] = 255  # top-left block white
    features = pixel_features(image, size=2)
    assert features.shape == (1, 12)
    assert features[0, :3] == pytest.approx([1.0, 1.0, 1.0]) and features[0, 3:].sum() == 0


def test_missing_inception_file_says_what_to_provide(tmp_path) -> None:
    with pytest.raises(ConfigError, match="inception-2015-12-05.pt"):
        load_feature_extractor(f"inception:{tmp_path / 'absent.pt'}")
    with pytest.raises(ConfigError, match="unknown kind"):
        load_feature_extractor("vgg:x")


def test_torchscript_feature_extractor_is_pluggable(tmp_path, torch_one_thread) -> None:
    import torch

    class MeanColour(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images.mean(dim=(2, 3))

    path = tmp_path / "features.pt"
    torch.jit.save(torch.jit.script(MeanColour()), str(path))
    extract = load_feature_extractor(f"torchscript:{path}")
    images = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    images[:, :, :, 0] = 255
    assert extract(images) == pytest.approx(np.tile([1.0, 0.0, 0.0], (3, 1)))


def _tiny_clip(folder) -> None:
    """A randomly initialised CLIPModel + processor with a word-level tokenizer, saved to ``folder``."""
    import torch
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from tokenizers.processors import TemplateProcessing
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "a", "doctor", "kite", "bloody"]
    core = Tokenizer(WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = TemplateProcessing(single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 2), ("[EOS]", 3)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        model_max_length=8,
    )
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
        tokenizer=tokenizer,
    )
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(words),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=8,
            eos_token_id=3,
            bos_token_id=2,
            pad_token_id=0,
        ),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=16,
            patch_size=8,
        ),
        projection_dim=8,
    )
    torch.manual_seed(3)  # a draw where some image/prompt cosines are positive and some negative
    CLIPModel(config).save_pretrained(folder)
    processor.save_pretrained(folder)


def test_clip_score_is_100_times_the_clamped_cosine(tmp_path, torch_one_thread) -> None:
    import torch

    from livo.eval.quality import ClipModel

    _tiny_clip(tmp_path / "clip")
    clip = ClipModel(str(tmp_path / "clip"))
    images = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    prompts = ["a doctor", "a kite", "a doctor"]
    scores = clip.score(images, prompts)
    with torch.no_grad():
        image = clip.model.get_image_features(**clip.processor(images=list(images), return_tensors="pt"))
        text = clip.model.get_text_features(**clip.processor(text=prompts, return_tensors="pt", padding=True))
    image, text = getattr(image, "pooler_output", image), getattr(text, "pooler_output", text)
    cosine = torch.nn.functional.cosine_similarity(image, text).numpy()
    assert (cosine > 0).any() and (cosine < 0).any()
    assert scores == pytest.approx(np.maximum(100 * cosine, 0), abs=1e-4)
    assert load_feature_extractor(f"clip:{tmp_path / 'clip'}")(images).shape == (3, 8)


def test_a_missing_clip_model_fails_without_downloading(tmp_path) -> None:
    from livo.eval.quality import ClipModel

    with pytest.raises(ConfigError, match="local files"):
        ClipModel(str(tmp_path / "absent"))
