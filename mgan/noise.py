"""Perlin and brown noise images, seeded and optionally tileable (MGAN paper Sec. 5, Fig. 13).

Unguided synthesis decodes noise: "Perlin noise images are forwarded through VGG 19
to generate feature maps for the decoder" (Fig. 13 caption: "decoding from Brown
noise"). Both generators here return RGB images ``[1, 3, H, W]`` in ``[0, 1]`` (grey
noise repeats one channel) and are pure functions of their arguments: the same seed
gives the same image, on any machine (a CPU ``torch.Generator`` draws all randomness).

* :func:`perlin`: fractal sum (fBm) of Perlin's "improved" gradient noise (quintic
  fade). Two backends compute the same kind of noise:
  ``"torch"`` (default) is vectorised, ~5x faster than per-pixel calls (512^2 colour,
  6 octaves: 0.4 s vs 2.1 s; 4096^2 in ~10 s instead of ~2 min), seeded permutation tables;
  ``"noise"`` calls the ``noise`` package's ``pnoise2`` for every pixel (its fixed
  table, the seed picks lattice offsets), the implementation the issue names.
* :func:`brown`: Gaussian white noise shaped to a ``1/f^2`` power spectrum in the
  Fourier domain, so it is periodic by construction.

``tileable=True`` makes the image wrap: its left edge continues its right edge and its
top continues its bottom (integer lattice periods for Perlin; brown noise always wraps).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# 2-D gradient directions of improved noise: the 4 diagonals and 4 axes.
_GRADIENTS = ((1.0, 1.0), (-1.0, 1.0), (1.0, -1.0), (-1.0, -1.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))
_ROWS_PER_CHUNK = 256  # bounds the temporaries of the vectorised Perlin noise (a few x rows x W floats)
PERLIN_BACKENDS = ("torch", "noise")


def _check_size(height: int, width: int) -> None:
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"noise size must be at least 1x1, got {width}x{height}")


def _stretch(x: Tensor) -> Tensor:
    """Per-channel min-max to ``[0, 1]`` of ``[C, H, W]`` (a constant channel maps to 0.5)."""
    flat = x.flatten(1)
    lo, hi = flat.min(1).values.view(-1, 1, 1), flat.max(1).values.view(-1, 1, 1)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), torch.full_like(x, 0.5))


def _to_rgb(channels: Tensor) -> Tensor:
    """``[C, H, W]`` with C in {1, 3} -> ``[1, 3, H, W]`` float32."""
    if channels.shape[0] == 1:
        channels = channels.expand(3, -1, -1)
    return channels.unsqueeze(0).float().contiguous()


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic ``6t^5 - 15t^4 + 10t^3``."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_octave(x: np.ndarray, y: np.ndarray, perm: np.ndarray, period: tuple[int, int] | None = None) -> np.ndarray:
    """One octave of 2-D improved Perlin noise on the grid ``x`` (columns) by ``y`` (rows).

    The gradient at lattice point ``(i, j)`` is ``GRADIENTS[perm[(perm[i] + j) % 256] % 8]``;
    a pixel blends the four corner ramps ``g . (p - corner)`` with the quintic fade.
    Because the lattice and the pixel grid are separable, the corner gradients are
    gathered row- then column-wise from a small lattice table instead of hashing per
    pixel. NumPy (single-threaded) rather than torch: these are many small elementwise
    ops, for which OpenMP synchronisation costs more than it gains on a busy CPU.

    Args:
        x: ``[W]`` column coordinates in lattice units (float64 keeps large octaves exact).
        y: ``[H]`` row coordinates in lattice units.
        perm: ``[256]`` integer permutation of ``0..255`` (the hash).
        period: ``(px, py)`` lattice cells after which the noise repeats, or ``None``
            (then it repeats every 256 cells, the hash's period).

    Returns:
        ``[H, W]`` float32 noise in about ``[-1, 1]``; zero on lattice points.
    """
    px, py = period if period is not None else (256, 256)
    perm = np.asarray(perm, dtype=np.int64)
    xi, yi = np.floor(x), np.floor(y)
    xf, yf = (x - xi).astype(np.float32), (y - yi).astype(np.float32)
    i0, j0 = xi.astype(np.int64) % px, yi.astype(np.int64) % py
    i1, j1 = (i0 + 1) % px, (j0 + 1) % py
    # Gradient table over the lattice points of one period: [py, px] (tiny next to the image).
    ii, jj = np.arange(px), np.arange(py)
    h = perm[(perm[ii & 255][None, :] + jj[:, None]) & 255] & 7
    grads = np.asarray(_GRADIENTS, dtype=np.float32)
    gx, gy = grads[h, 0], grads[h, 1]

    def corner(i: np.ndarray, j: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        ax = gx.take(j, axis=0).take(i, axis=1)
        ay = gy.take(j, axis=0).take(i, axis=1)
        ax *= dx[None, :]
        ay *= dy[:, None]
        ax += ay
        return ax

    u, v = _fade(xf)[None, :], _fade(yf)[:, None]
    nx0 = corner(i0, j0, xf, yf)
    nx0 += u * (corner(i1, j0, xf - 1, yf) - nx0)
    nx1 = corner(i0, j1, xf, yf - 1)
    nx1 += u * (corner(i1, j1, xf - 1, yf - 1) - nx1)
    nx0 += v * (nx1 - nx0)
    return nx0


def _cells(extent: int, scale: float, tileable: bool) -> float:
    """Lattice cells spanned by ``extent`` pixels at ``scale`` px/cell (an integer when tileable)."""
    cells = extent / scale
    return float(max(1, round(cells))) if tileable else cells


def perlin(
    height: int,
    width: int,
    seed: int = 0,
    octaves: int = 6,
    persistence: float = 0.5,
    scale: float = 128.0,
    color: bool = True,
    tileable: bool = False,
    backend: str = "torch",
) -> Tensor:
    """Fractal Perlin noise image (paper Sec. 5: Perlin noise -> VGG relu4_1 -> G).

    Args:
        height, width: image size in pixels.
        seed: same seed, same image.
        octaves: number of fBm octaves; octave k has frequency ``2^k`` and amplitude
            ``persistence^k``.
        persistence: amplitude ratio between successive octaves (0.5: ``1/f`` fBm).
        scale: size of the coarsest lattice cell in pixels (the largest blobs).
        color: three independent channels, or one grey channel repeated.
        tileable: integer lattice periods across the image, so it wraps seamlessly
            (the period is rounded, so blobs may be slightly stretched).
        backend: ``"torch"`` (vectorised, seeded permutation) or ``"noise"`` (the
            ``noise`` package's ``pnoise2`` per pixel: slow, ~1 us per pixel and channel).

    Returns:
        ``[1, 3, H, W]`` float32 in ``[0, 1]`` (each channel min-max stretched).
    """
    _check_size(height, width)
    if octaves < 1:
        raise ValueError(f"octaves must be >= 1, got {octaves}")
    if not 0 < persistence <= 1:
        raise ValueError(f"persistence must be in (0, 1], got {persistence}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if backend not in PERLIN_BACKENDS:
        raise ValueError(f"backend must be one of {PERLIN_BACKENDS}, got {backend!r}")
    n_channels = 3 if color else 1
    g = torch.Generator().manual_seed(int(seed))
    cx, cy = _cells(width, scale, tileable), _cells(height, scale, tileable)
    if backend == "noise":
        out = _perlin_noise_package(height, width, g, n_channels, octaves, persistence, cx, cy, tileable)
    else:
        out = torch.empty(n_channels, height, width)
        xs = np.arange(width, dtype=np.float64) * (cx / width)
        for c in range(n_channels):
            perms = [torch.randperm(256, generator=g).numpy() for _ in range(octaves)]
            for r0 in range(0, height, _ROWS_PER_CHUNK):
                rows = np.arange(r0, min(height, r0 + _ROWS_PER_CHUNK), dtype=np.float64) * (cy / height)
                acc = np.zeros((rows.size, width), dtype=np.float32)
                for k in range(octaves):
                    f = 2**k
                    period = (int(cx) * f, int(cy) * f) if tileable else None
                    octave = perlin_octave(xs * f, rows * f, perms[k], period)
                    octave *= persistence**k
                    acc += octave
                out[c, r0 : r0 + rows.size] = torch.from_numpy(acc)
    return _to_rgb(_stretch(out))


def _perlin_noise_package(
    height: int, width: int, g: torch.Generator, n_channels: int, octaves: int, persistence: float,
    cx: float, cy: float, tileable: bool,
) -> Tensor:
    """Per-pixel ``noise.pnoise2``; the seed picks integer lattice offsets (``base`` > 1 reads past its table)."""
    from mgan.extras import require  # noqa: PLC0415

    noise_pkg = require("noise", "the Perlin backend 'noise'")  # C extension of the [noise] extra, this backend only

    # pnoise2 scales the repeat with each octave's frequency, so integer periods stay periodic.
    rx, ry = (cx, cy) if tileable else (1024.0, 1024.0)
    out = torch.empty(n_channels, height, width)
    for c in range(n_channels):
        ox, oy = (int(v) for v in torch.randint(0, 1024, (2,), generator=g))
        if tileable:
            ox, oy = ox % int(cx), oy % int(cy)
        sx, sy = cx / width, cy / height
        for r in range(height):
            y = oy + r * sy
            out[c, r] = torch.tensor(
                [noise_pkg.pnoise2(ox + i * sx, y, octaves=octaves, persistence=persistence, repeatx=rx, repeaty=ry)
                 for i in range(width)]
            )
    return out


def brown(
    height: int,
    width: int,
    seed: int = 0,
    scale: float = 256.0,
    color: bool = True,
    tileable: bool = True,
) -> Tensor:
    """Brown noise image: power spectrum ``1/f^2`` (paper Fig. 13, "decoding from Brown noise").

    White Gaussian noise is filtered in the Fourier domain by amplitude ``1/max(f, 1/scale)``
    (``f`` in cycles per pixel), so wavelengths longer than ``scale`` pixels are not
    amplified further and the look does not depend on the image size. An inverse FFT
    is periodic, so the result always wraps; ``tileable`` is accepted for symmetry.

    Args:
        height, width: image size in pixels.
        seed: same seed, same image.
        scale: longest wavelength (pixels) that keeps its ``1/f`` amplitude.
        color: three independent channels, or one grey channel repeated.
        tileable: ignored (brown noise from an FFT is always periodic).

    Returns:
        ``[1, 3, H, W]`` float32 in ``[0, 1]`` (each channel min-max stretched).
    """
    del tileable
    _check_size(height, width)
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    g = torch.Generator().manual_seed(int(seed))
    fy = torch.fft.fftfreq(height, dtype=torch.float64).view(-1, 1)
    fx = torch.fft.rfftfreq(width, dtype=torch.float64).view(1, -1)
    amplitude = 1.0 / torch.sqrt(fx**2 + fy**2).clamp_min(1.0 / scale)
    amplitude[0, 0] = 0.0  # zero mean; the stretch sets the level anyway
    n_channels = 3 if color else 1
    out = torch.empty(n_channels, height, width)
    for c in range(n_channels):
        white = torch.randn(height, width, generator=g, dtype=torch.float64)
        spec = torch.fft.rfft2(white)
        spec *= amplitude
        out[c] = torch.fft.irfft2(spec, s=(height, width)).float()
        del white, spec
    return _to_rgb(_stretch(out))


# Coarsest feature (px) of the noise that `mgan decode --noise` and the app feed G (paper
# Fig. 13), for a generator not in BUNDLED_PERLIN_SCALE. Which Perlin scale decodes closest
# to the painting depends on the generator (docs/decoding.md, "Perlin scale"): 64 px is the
# one no bundled model loses much with (at most 13% further than its own best, where 16 px,
# the default before, scored up to 2x its best).
DECODE_SCALE = {"perlin": 64.0, "brown": 256.0}
# Perlin scale per bundled generator, chosen by mgan.evaluate's SWD of its decodes to its
# painting (512 px, seeds 0-1, default `match` post-process; scales 16/32/64/128/192 px;
# 2-core AMD EPYC AVX-512-bf16). Picasso: 0.324 / 0.282 / 0.237 / 0.211 / 0.209, against
# 0.185 for unguided MDAN at the same size (issue #10's gate, 1.2x); composition_vii and
# wave paint their fine texture from 32 px noise and blur larger blobs (0.228 and 0.359 at
# 32, 0.291 and 0.439 at 128); the others are closest at 128.
BUNDLED_PERLIN_SCALE = {"picasso": 128.0, "shipwreck": 128.0, "starry_night": 128.0, "the_scream": 128.0,
                        "composition_vii": 32.0, "wave": 32.0}


def decode_scale(kind: str, model: str | os.PathLike | None = None) -> float:
    """The coarsest noise feature (px) to decode ``kind`` noise with through ``model``.

    A bundled generator (a file of :data:`mgan.assets.ASSETS`, ``picasso.safetensors``) has
    its own measured Perlin scale (:data:`BUNDLED_PERLIN_SCALE`); a generator trained with
    noise pairs (``noise.count > 0`` in the experiment its metadata keeps) the scale of the
    noise it was trained on; any other generator, and brown noise, the general default
    (:data:`DECODE_SCALE`).
    """
    if kind not in DECODE_SCALE:
        raise ValueError(f"unknown noise kind {kind!r} (use perlin or brown)")
    if kind == "perlin" and model is not None:
        from mgan.assets import ASSETS  # noqa: PLC0415  (light: a path, no weights)

        path = Path(model)
        if path.parent.resolve() == Path(ASSETS).resolve() and path.stem in BUNDLED_PERLIN_SCALE:
            return BUNDLED_PERLIN_SCALE[path.stem]
        trained = _trained_noise_scale(path)
        if trained is not None:
            return trained
    return DECODE_SCALE[kind]


def _trained_noise_scale(path: Path) -> float | None:
    """``noise.scale`` of the experiment in a release's metadata if it trained on noise pairs (past
    ``noise.start_step``), else None (also for a file that is not a readable release: loading it
    reports that clearly)."""
    import json  # noqa: PLC0415

    from safetensors import SafetensorError, safe_open  # noqa: PLC0415

    try:
        with safe_open(str(path), framework="pt") as f:  # the header only, not the weights
            extra = json.loads((f.metadata() or {}).get("extra", "{}"))
        noise = extra.get("experiment", {}).get("noise", {})
        # a release of a step at or before start_step (a snapshot) never saw the noise
        trained = noise.get("count") and int(extra.get("steps", 0)) > int(noise.get("start_step", 0))
        return float(noise["scale"]) if trained and float(noise["scale"]) > 0 else None
    except (SafetensorError, OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def make_noise(kind: str, height: int, width: int, seed: int = 0, **options: float | int | bool | str) -> Tensor:
    """``perlin`` or ``brown`` noise ``[1, 3, H, W]`` in ``[0, 1]``; ``options`` go to that function."""
    if kind == "perlin":
        return perlin(height, width, seed=seed, **options)  # type: ignore[arg-type]
    if kind == "brown":
        allowed = {"scale", "color", "tileable"}
        return brown(height, width, seed=seed, **{k: v for k, v in options.items() if k in allowed})  # type: ignore[arg-type]
    raise ValueError(f"unknown noise kind {kind!r} (use perlin or brown)")


def edge_continuity(x: Tensor) -> tuple[float, float]:
    """How well ``x`` ``[N, C, H, W]`` wraps: ``(seam ratio x, seam ratio y)``.

    Each ratio is the mean absolute difference across the wrap seam (last column vs
    first column; last row vs first row) divided by the mean absolute difference
    between neighbouring columns (rows) inside the image. About 1 for a seamless
    wrap, much larger for an image whose edges do not match.
    """
    x = x.float()
    inner_x = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    inner_y = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    seam_x = (x[..., :, 0] - x[..., :, -1]).abs().mean()
    seam_y = (x[..., 0, :] - x[..., -1, :]).abs().mean()
    return float(seam_x / inner_x.clamp_min(1e-12)), float(seam_y / inner_y.clamp_min(1e-12))


__all__ = ["BUNDLED_PERLIN_SCALE", "DECODE_SCALE", "PERLIN_BACKENDS", "brown", "decode_scale", "edge_continuity",
           "make_noise", "perlin", "perlin_octave"]
