"""Exact halo tiling: run a local image-to-image network tile by tile, with the untiled result.

Any size in bounded memory. The paper notes memory "can be reduced by subdividing the
input photo into blocks" but leaves it unexplored (Sec. 5: 2.5 GB for 512^2). Here the
image is cut into tiles whose halo (:data:`HALO` px) covers the receptive field of
VGG-to-relu4_1 (32 px, measured: features are bit-identical beyond it) plus that of
``G`` (2 relu4_1 cells = 16 px for both its upsampling modes, FS-conv and nearest-resize
conv; computed per generator by :meth:`~mgan.generator.Generator.halo_cells`). Each tile
runs through encoder and ``G`` with plain zero padding, and only its halo-free core is
kept, so the tiled result *is* the untiled decode (up to float rounding of different
conv shapes): no blending is needed and no seam can appear. Why: an output pixel depends
only on the input pixels within its receptive-field radius ``r``; if the tile holds all
of them, the tile's output at that pixel is computed from the same values as the whole
image's. Where the image itself ends, the tile ends too (:func:`axis_spans` slides a
border tile inside the image rather than padding it), so the zero padding the network
sees there is the same zero padding the untiled pass sees. The tile side is chosen from
a memory budget by the caller (:meth:`mgan.decode.Decoder.tile_core`).

Tileable textures use the same machinery: the halo is taken with wrap-around
indexing (:func:`take`), which equals circular padding in every conv of encoder and ``G``
(max-pool needs sizes that are multiples of 8, which tileable decodes require), so the
output wraps seamlessly.

:func:`run_tiled` is the loop: for every tile ``(rows[i], cols[j])`` it reads the source
window, runs the network and writes the core into the output. It knows nothing of VGG or
``G``; anything whose receptive-field radius is at most the halo and whose output has the
input's size can be tiled this way.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

ENCODER_HALO = 32  # px: receptive-field radius of VGG-19 relu4_1 (measured, multiple of 8)
G_HALO = 2  # relu4_1 cells: receptive-field radius of the paper's G (Generator.halo_cells(), either upsample)
HALO = ENCODER_HALO + 8 * G_HALO  # px kept around each tile core (Decoder.halo: from its own G)


@dataclass(frozen=True)
class Span:
    """One tile along one axis: read ``src_len`` pixels from ``src_start`` (wrapped modulo
    the axis length when tileable), keep ``core_len`` pixels from ``core_offset`` inside
    the tile and write them at ``out_start`` of the output."""

    src_start: int
    src_len: int
    core_offset: int
    out_start: int
    core_len: int


def axis_spans(n: int, core: int | None, halo: int = HALO, wrap: bool = False) -> list[Span]:
    """Cut an axis of ``n`` pixels into tiles of at most ``core`` pixels plus ``halo`` each side.

    All tiles of an axis have the same source length (compiled kernels and oneDNN
    primitives are reused); cores are evened out and the last one may overlap its
    neighbour (it writes identical values). Without ``wrap``, halos are clipped by
    sliding the tile inside the image, as the untiled decode zero-pads only at the
    image border. ``core=None`` gives one tile.
    """
    if wrap:
        if core is None or core >= n:
            return [Span(-halo, n + 2 * halo, halo, 0, n)]
    elif core is None or core + 2 * halo >= n:
        return [Span(0, n, 0, 0, n)]
    k = math.ceil(n / core)
    core = min(n, math.ceil(n / k / 8) * 8)
    spans = []
    for i in range(k):
        c0 = min(i * core, n - core)
        length = core + 2 * halo
        s = c0 - halo if wrap else min(max(c0 - halo, 0), n - length)
        spans.append(Span(s, length, c0 - s, c0, core))
    return spans


def take(x: Tensor, dim: int, start: int, length: int) -> Tensor:
    """``x`` narrowed to ``[start, start + length)`` along ``dim``, wrapping around its size."""
    n = x.shape[dim]
    if 0 <= start and start + length <= n:
        return x.narrow(dim, start, length)
    idx = torch.arange(start, start + length, device=x.device) % n
    return x.index_select(dim, idx)


def run_tiled(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    rows: list[Span],
    cols: list[Span],
    device: torch.device | str = "cpu",
    memory_format: torch.memory_format = torch.contiguous_format,
    progress: bool = False,
) -> Tensor:
    """``fn`` applied to ``x`` tile by tile: the cores of ``rows x cols``, stitched.

    Args:
        fn: a local network ``[1, C, h, w] -> [1, C', h, w]`` (same spatial size), run on
            ``device``; its receptive-field radius must not exceed the spans' halo for the
            result to equal ``fn(x)``.
        x: ``[N, C, H, W]`` on the CPU; each image of the batch is tiled on its own.
        rows, cols: :func:`axis_spans` of ``H`` and ``W``.
        device, memory_format: where and in which layout each tile runs.
        progress: a tqdm bar over the tiles (when there is more than one).
    Returns:
        ``[N, C', H, W]`` float32 on the CPU.
    """
    n, _, H, W = x.shape
    out: Tensor | None = None
    total = n * len(rows) * len(cols)
    bar = None
    if progress and total > 1:
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=total, desc="tiles", unit="tile", file=sys.stderr, dynamic_ncols=True, leave=False)
    for i in range(n):
        xi = x[i : i + 1]
        for r in rows:
            band = take(xi, 2, r.src_start, r.src_len)
            for c in cols:
                tile = take(band, 3, c.src_start, c.src_len)
                tile = tile.to(device).contiguous(memory_format=memory_format)
                y = fn(tile)
                if out is None:
                    out = torch.empty(n, y.shape[1], H, W)
                core = y[..., r.core_offset : r.core_offset + r.core_len, c.core_offset : c.core_offset + c.core_len]
                out[i : i + 1, :, r.out_start : r.out_start + r.core_len, c.out_start : c.out_start + c.core_len] = (
                    core.to("cpu")
                )
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
    return out if out is not None else torch.empty(0, x.shape[1], H, W)  # an empty batch
