"""Image optimisation (mgan.optim): the L-BFGS / Adam loop and the coarse-to-fine pyramid vs plain references."""

import pytest
import torch
import torch.nn.functional as F

from mgan.optim import Level, RunStats, coarse_to_fine, optimize_image, pyramid


def _quadratic(target: torch.Tensor):
    return lambda v: (v - target).pow(2).sum()


def test_lbfgs_converges_on_a_quadratic_and_records_every_iteration():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 8, 8, generator=g)
    v = torch.zeros(1, 3, 8, 8, requires_grad=True)
    seen = []
    hist = optimize_image(v, _quadratic(target), "lbfgs", 10, callback=lambda i, x, loss: seen.append((i, loss)))
    assert len(hist) == 10 and [i for i, _ in seen] == list(range(10))
    assert [loss for _, loss in seen] == hist
    torch.testing.assert_close(v.detach(), target, atol=1e-4, rtol=0)


def test_adam_matches_the_plain_update_rule():
    g = torch.Generator().manual_seed(1)
    target = torch.rand(1, 3, 4, 5, generator=g)
    start = torch.rand(1, 3, 4, 5, generator=g)
    v = start.clone().requires_grad_(True)
    lr, steps = 0.05, 6
    optimize_image(v, _quadratic(target), "adam", steps, lr)
    # Kingma & Ba, Algorithm 1, with torch's defaults (beta1 0.9, beta2 0.999, eps 1e-8)
    x, m, s = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
    for t in range(1, steps + 1):
        grad = 2 * (x - target)
        m = 0.9 * m + 0.1 * grad
        s = 0.999 * s + 0.001 * grad**2
        x = x - lr * (m / (1 - 0.9**t)) / ((s / (1 - 0.999**t)).sqrt() + 1e-8)
    torch.testing.assert_close(v.detach(), x, atol=1e-6, rtol=1e-5)


def test_channels_last_gradients_work_with_lbfgs():
    """The encoder runs channels_last; L-BFGS flattens gradients with .view(-1)."""
    target = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    v = torch.zeros(1, 3, 6, 6, requires_grad=True)
    hist = optimize_image(v, lambda x: (x.contiguous(memory_format=torch.channels_last) - target).pow(2).sum(),
                          "lbfgs", 3)
    assert hist[-1] < hist[0]


def test_a_diverging_image_is_a_floating_point_error_naming_the_run():
    v = torch.zeros(1, 3, 4, 4, requires_grad=True)
    with pytest.raises(FloatingPointError, match="tiny run: the image became non-finite at iteration 0"):
        optimize_image(v, lambda x: x.sum() * float("inf"), "adam", 3, desc="tiny run")


def test_pyramid_levels_halve_and_keep_a_minimum_side():
    assert pyramid((48, 64), 3) == [(0.25, (12, 16)), (0.5, (24, 32)), (1.0, (48, 64))]
    assert pyramid((48, 64), 3, min_side=16) == [(0.25, (16, 16)), (0.5, (24, 32)), (1.0, (48, 64))]
    assert pyramid((33, 20), 1) == [(1.0, (33, 20))]


def _reference(full, levels, content, init, noise_std, seed, step):
    """coarse_to_fine written out as a plain loop (the Gatys / CNNMRF code before it was shared)."""
    gen = torch.Generator().manual_seed(seed)
    x, sizes = None, []
    for level in range(levels):
        scale = 1.0 / 2 ** (levels - 1 - level)
        hw = (round(full[0] * scale), round(full[1] * scale))
        c_l = None
        if content is not None:
            c_l = content if hw == full else F.interpolate(content, size=hw, mode="bicubic", align_corners=False,
                                                           antialias=True).clamp(0, 1)
        if x is not None:
            x0 = F.interpolate(x, size=hw, mode="bicubic", align_corners=False)
        elif c_l is not None and init == "content":
            x0 = c_l
        else:
            x0 = 0.5 + noise_std * torch.randn(1, 3, *hw, generator=gen)
        v = x0 * 255.0
        v = step(v, c_l)
        sizes.append(hw)
        x = (v / 255.0).clamp(0, 1)
    return x, sizes


def _step(v: torch.Tensor, content: torch.Tensor | None) -> torch.Tensor:
    """A stand-in for an optimisation: pull the image towards the level's photo (or grey)."""
    goal = content * 255.0 if content is not None else torch.full_like(v, 100.0)
    return v + 0.5 * (goal - v) + 3.0


@pytest.mark.parametrize("with_content,init", [(True, "content"), (True, "noise"), (False, "noise")])
def test_coarse_to_fine_matches_the_plain_loop(with_content, init):
    g = torch.Generator().manual_seed(3)
    content = torch.rand(1, 3, 40, 56, generator=g) if with_content else None
    levels: list[Level] = []

    def optimize(v: torch.Tensor, level: Level) -> list[float]:
        assert v.requires_grad and v.is_leaf and tuple(v.shape[-2:]) == level.size
        levels.append(level)
        with torch.no_grad():
            v.copy_(_step(v, level.content))
        return [float(v.detach().mean())] * 2

    stats = RunStats()
    x = coarse_to_fine(optimize, (40, 56), 3, content, init, 0.2, torch.Generator().manual_seed(7), stats=stats)
    ref, sizes = _reference((40, 56), 3, content, init, 0.2, 7, _step)
    torch.testing.assert_close(x, ref)
    assert [lv.size for lv in levels] == sizes == [(10, 14), (20, 28), (40, 56)]
    assert [lv.scale for lv in levels] == [0.25, 0.5, 1.0]
    assert (levels[-1].content is content) if with_content else all(lv.content is None for lv in levels)
    assert stats.iterations == 6 and len(stats.loss) == 6
