"""Neural patches: regular sampling grids, extraction, and gradient blending.

MGAN paper Sec. 3.1: D scores "neural patches" regularly sampled from a VGG feature
map (relu3_1, 8x8 at stride 4 by default). Each patch receives its own gradient from
D; "in order to have a coherent transition between adjacent patches, we blend their
output gradient like texture optimization [18] did": overlapping gradients are summed
into the feature map and divided by how many patches cover each position.
"""

from __future__ import annotations

import torch
from torch import Tensor


def grid_positions(length: int, size: int, stride: int) -> list[int]:
    """Top/left offsets of patches along one axis, with the border included.

    ``0, stride, 2*stride, ...`` and, if the last regular patch stops short of the
    border, one more patch flush with it (``length - size``).

    >>> grid_positions(10, 4, 4)
    [0, 4, 6]
    """
    if size < 1 or stride < 1:
        raise ValueError(f"patch size and stride must be >= 1, got {size}, {stride}")
    if length < size:
        raise ValueError(f"feature map side {length} is smaller than the patch size {size}")
    pos = list(range(0, length - size + 1, stride))
    if pos[-1] != length - size:
        pos.append(length - size)
    return pos


def extract_patches(feat: Tensor, size: int, stride: int) -> Tensor:
    """All grid patches of a feature map.

    Args:
        feat: ``[N, C, H, W]``.
    Returns:
        ``[N * P, C, size, size]`` with ``P = len(rows) * len(cols)`` in row-major order
        (image index outermost). Autograd sums the gradients of overlapping patches.
    """
    n, c, h, w = feat.shape
    rows, cols = grid_positions(h, size, stride), grid_positions(w, size, stride)
    # Gather each patch's rows, then its columns (overlapping patches repeat them): [N, C, R*s, Q*s].
    # Two index_selects, whose backward is two index_adds. Advanced indexing into the unfolded
    # view gave the same values, but its backward filled a dense [N, C, H-s+1, W-s+1, s, s]
    # buffer: 4x slower, a fifth of an MDAN iteration at 256 px (docs/calibration.md, "D on
    # extracted patches, and content 4e-3").
    r = torch.tensor([y + i for y in rows for i in range(size)], device=feat.device)
    q = torch.tensor([x + j for x in cols for j in range(size)], device=feat.device)
    grid = feat.index_select(2, r).index_select(3, q)
    grid = grid.view(n, c, len(rows), size, len(cols), size).permute(0, 2, 4, 1, 3, 5)  # [N, R, Q, C, s, s]
    return grid.reshape(n * len(rows) * len(cols), c, size, size)


def coverage(height: int, width: int, size: int, stride: int, device: torch.device | str = "cpu") -> Tensor:
    """How many grid patches cover each position: ``[H, W]`` float, every entry >= 1.

    The grid is a product of row and column offsets, so coverage is the outer product
    of the 1-D coverages.
    """

    def along(length: int) -> Tensor:
        cov = torch.zeros(length, device=device)
        for p in grid_positions(length, size, stride):
            cov[p : p + size] += 1
        return cov

    return along(height)[:, None] * along(width)[None, :]


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by a fixed map on the way back."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        (scale,) = ctx.saved_tensors
        return grad * scale.to(grad.dtype), None


def blend_gradients(feat: Tensor, size: int, stride: int) -> Tensor:
    """Mark ``feat`` so that gradients arriving from overlapping patches are averaged.

    Patches taken from the returned tensor (by :func:`extract_patches`, or a strided
    conv with kernel ``size`` and stride ``stride``) send back their summed
    gradients; this divides that sum by the coverage count, i.e. each feature
    position receives the mean of its patches' gradients (paper Sec. 3.1, after
    Kwatra et al.'s texture optimisation [18]).

    Args:
        feat: ``[N, C, H, W]``. Returns the same values, ``[N, C, H, W]``.
    """
    cov = coverage(feat.shape[2], feat.shape[3], size, stride, device=feat.device)
    return _ScaleGrad.apply(feat, (1.0 / cov).view(1, 1, *cov.shape))


def sample_patches(feats: list[Tensor], count: int, size: int, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``count`` patches uniformly at random from a pool of feature maps.

    The pool (the style image's augmented copies, paper Sec. 3.1) may hold maps of
    different sizes; each draw picks a map with probability proportional to its
    number of patch positions, then a position.

    Args:
        feats: list of ``[1, C, H_i, W_i]`` maps.
    Returns:
        ``[count, C, size, size]``.
    """
    npos = torch.tensor([(f.shape[2] - size + 1) * (f.shape[3] - size + 1) for f in feats], dtype=torch.float64)
    if (npos <= 0).any():
        raise ValueError(f"a style feature map is smaller than the patch size {size}")
    which = torch.multinomial(npos, count, replacement=True, generator=generator)
    out = []
    for i, f in enumerate(feats):
        k = int((which == i).sum())
        if k == 0:
            continue
        ys = torch.randint(0, f.shape[2] - size + 1, (k,), generator=generator)
        xs = torch.randint(0, f.shape[3] - size + 1, (k,), generator=generator)
        windows = f[0].unfold(1, size, 1).unfold(2, size, 1)  # [C, H', W', s, s]
        out.append(windows[:, ys.to(f.device), xs.to(f.device)].permute(1, 0, 2, 3))
    return torch.cat(out)


# ---------------------------------------------------------------------------
# Nearest-neighbour patch matching (CNNMRF, Li & Wand CVPR 2016 [21]; patch coherence)


def flatten_patches(patches: Tensor) -> Tensor:
    """``[P, C, s, s]`` -> ``[P, C * s * s]`` (contiguous)."""
    return patches.reshape(patches.shape[0], -1)


def normalize_patches(patches: Tensor, eps: float = 1e-8) -> Tensor:
    """Flatten and scale each patch to unit L2 norm: ``[P, C, s, s]`` -> ``[P, C * s * s]``.

    Normalised style patches are the filters of CNNMRF's normalised cross-correlation:
    ``argmax_j <p, t_j> / (|p| |t_j|) = argmax_j <p, t_j / |t_j|>``, so the synthesised
    patch ``p`` needs no normalising for the match.
    """
    flat = flatten_patches(patches).float()
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(eps)


def match_ncc(queries: Tensor, filters: Tensor, chunk: int = 4096) -> Tensor:
    """Index of the style patch with the highest normalised cross-correlation, per query.

    This is CNNMRF's "patch matching as a convolution": the synthesised feature map
    convolved with the normalised style patches as filters gives, at every grid
    position, the correlation with every style patch; here the grid positions are
    gathered first (``extract_patches``) so the convolution is one GEMM per chunk of
    filters, and only a running maximum is kept (memory ``P x chunk``).

    Args:
        queries: ``[P, D]`` or ``[P, C, s, s]`` synthesised patches (any float dtype).
        filters: ``[S, D]`` unit-norm style patches from :func:`normalize_patches`.
        chunk: style patches per GEMM.
    Returns:
        ``[P]`` long indices into ``filters``.
    """
    q = flatten_patches(queries) if queries.dim() == 4 else queries
    if q.shape[1] != filters.shape[1]:
        raise ValueError(f"patch dimension mismatch: queries {q.shape[1]}, filters {filters.shape[1]}")
    q = q.to(filters.dtype)
    best = torch.full((q.shape[0],), -float("inf"), device=q.device)
    idx = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    for start in range(0, filters.shape[0], chunk):
        resp = (q @ filters[start : start + chunk].T).float()  # [P, k]
        val, arg = resp.max(dim=1)
        better = val > best
        best = torch.where(better, val, best)
        idx = torch.where(better, arg + start, idx)
    return idx


def nearest_distance(queries: Tensor, keys: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Euclidean nearest neighbour of each query among the keys (exact, chunked).

    ``|q - k|^2 = |q|^2 - 2 q.k + |k|^2`` evaluated as GEMMs in fp32.

    Args:
        queries: ``[P, D]``; keys: ``[S, D]``.
    Returns:
        ``(dist [P], index [P])``: the L2 distance to, and index of, the nearest key.
    """
    q, k = queries.float(), keys.float()
    qq = q.pow(2).sum(1)
    best = torch.full((q.shape[0],), float("inf"), device=q.device)
    idx = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    for start in range(0, k.shape[0], chunk):
        kc = k[start : start + chunk]
        d2 = qq[:, None] - 2 * (q @ kc.T) + kc.pow(2).sum(1)[None, :]
        val, arg = d2.min(dim=1)
        better = val < best
        best = torch.where(better, val, best)
        idx = torch.where(better, arg + start, idx)
    return best.clamp_min(0).sqrt(), idx
