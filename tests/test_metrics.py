"""Evaluation measures (mgan.metrics): SWD and Gram distance vs plain references, the checkerboard
score, and its column in mgan.evaluate."""

from __future__ import annotations

import pytest
import torch
from conftest import smooth_image

from mgan import io, losses, metrics
from mgan.evaluate import EvalConfig, Scorer, table
from mgan.metrics import checkerboard_score


def _pattern(h: int, w: int, period: int = 8, seed: int = 0) -> torch.Tensor:
    """A random zero-mean tile of ``period`` px repeated over ``[1, 3, h, w]``, peak amplitude 1."""
    g = torch.Generator().manual_seed(seed)
    tile = torch.rand(1, 3, period, period, generator=g) - 0.5
    tile = (tile - tile.mean(dim=(-2, -1), keepdim=True)) / (tile - tile.mean()).abs().max()
    return tile.repeat(1, 1, -(-h // period), -(-w // period))[..., :h, :w]


@pytest.fixture(params=["smooth", "photo"])
def natural(request) -> torch.Tensor:
    """A smooth synthetic 96x128 image, or a photo of ../shared/data at 256 px (skipped when absent)."""
    if request.param == "smooth":
        return smooth_image(5, 96, 128)
    shared = request.getfixturevalue("shared_data")
    return io.load_image(sorted((shared / "photo").glob("*.jpg"))[0], max_side=256)


def test_natural_images_score_near_zero(natural):
    assert abs(checkerboard_score(natural)) < 1.5


def test_faint_8px_pattern_scores_higher_and_monotone_in_amplitude(natural):
    """Amplitudes of 1 .. 16 grey levels: every step up raises the score; 2 grey levels already +3 dB."""
    pat = _pattern(*natural.shape[-2:])
    base = checkerboard_score(natural)
    scores = [checkerboard_score(natural + a / 255 * pat) for a in (1, 2, 4, 8, 16)]
    assert all(b > a for a, b in zip([base, *scores], scores, strict=False)), (base, scores)
    assert scores[1] > base + 3 and scores[-1] > 15


@pytest.mark.parametrize("period", [4, 2])
def test_sub_periods_of_a_x8_decoder_are_seen_too(period):
    """The 4 px and 2 px patterns of the inner FS-convs lie on the same 1/8 cycle-per-pixel grid."""
    img = smooth_image(1, 64, 96)
    assert checkerboard_score(img + 4 / 255 * _pattern(64, 96, period)) > checkerboard_score(img) + 5


def test_invariant_to_brightness_and_contrast_and_flat_is_zero(synthetic_image):
    img = synthetic_image + 2 / 255 * _pattern(64, 64)
    s = checkerboard_score(img)
    assert checkerboard_score(0.5 * img + 0.2) == pytest.approx(s, abs=1e-4)  # float32 rounding of the input
    assert checkerboard_score(torch.full((1, 3, 64, 64), 0.4)) == pytest.approx(0.0, abs=1e-6)
    # [C, H, W] is one image; a batch scores the mean of its images
    assert checkerboard_score(img[0]) == pytest.approx(s)
    other = smooth_image(3, 64, 64)
    assert checkerboard_score(torch.cat([img, other])) == pytest.approx((s + checkerboard_score(other)) / 2)


def test_sides_that_are_not_multiples_of_8_are_cropped_to_the_grid():
    img = smooth_image(4, 99, 131)
    pat = _pattern(99, 131)
    assert checkerboard_score(img + 4 / 255 * pat) > checkerboard_score(img) + 5


def test_too_small_or_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="64 px"):
        checkerboard_score(torch.rand(1, 3, 56, 128))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        checkerboard_score(torch.rand(64, 64))


def test_evaluate_rows_gain_a_checkerboard_column(encoder, synthetic_image):
    """An extra key next to the unchanged metrics; outputs under 64 px a side leave it out."""
    cfg = EvalConfig(size=64, eval_size=64, style_size=64, projections=16)
    scorer = Scorer(synthetic_image, cfg, encoder=encoder)
    row = scorer.score(synthetic_image, synthetic_image)
    assert row["checkerboard"] == pytest.approx(checkerboard_score(synthetic_image))
    assert {"swd_mean", "gram", "coherence", "coherence_ncc", "content"} < set(row)
    small = scorer.score(synthetic_image[..., :48, :], synthetic_image)
    assert "checkerboard" not in small and "swd_mean" in small
    text = table({"mgan": row})
    assert "checker. dB" in text and f"| {row['checkerboard']:.1f} |" in text


# --------------------------------------------------------------------------- distances of feature maps


def test_sliced_wasserstein_reference_and_properties():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(1, 4, 5, 6, generator=g)
    b = torch.randn(1, 4, 5, 6, generator=g) * 2 + 1
    d = metrics.sliced_wasserstein(a, b, projections=8, generator=torch.Generator().manual_seed(9))
    dirs = torch.randn(4, 8, generator=torch.Generator().manual_seed(9))
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa = (a[0].reshape(4, -1).T @ dirs).sort(0).values
    pb = (b[0].reshape(4, -1).T @ dirs).sort(0).values
    torch.testing.assert_close(d, (pa - pb).pow(2).mean().sqrt())
    # the distance ignores positions (a shuffled map is at distance 0) and sizes are resampled
    shuffled = a.reshape(1, 4, -1)[..., torch.randperm(30, generator=g)].reshape(1, 4, 5, 6)
    assert metrics.sliced_wasserstein(a, shuffled, 16).item() < 1e-5
    big = torch.randn(1, 4, 40, 40, generator=g)
    small = torch.randn(1, 4, 20, 20, generator=g)
    assert metrics.sliced_wasserstein(big, small, 32).item() < 0.3
    assert metrics.sliced_wasserstein(big, small * 3 + 2, 32).item() > 1.0


def test_gram_distance_reference():
    g = torch.Generator().manual_seed(6)
    f, t = torch.randn(1, 3, 4, 4, generator=g), torch.randn(1, 3, 5, 5, generator=g)
    a = losses.gram(t)
    ref = (losses.gram(f) - a).pow(2).sum().sqrt() / a.pow(2).sum().sqrt()
    torch.testing.assert_close(metrics.gram_distance(f, a), ref)
    assert metrics.gram_distance(t, a).item() < 1e-6
