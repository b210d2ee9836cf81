"""Data augmentation shared by MDAN's style pool and MGAN's training crops.

MGAN paper Sec. 3.2 and the original code: each image is augmented by rotations
(-10, 0, +10 degrees) x scales (1/1.1, 1, 1.1) x horizontal flip (18 copies).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mgan import io


def augment(x: Tensor, angle: float = 0.0, scale: float = 1.0, flip: bool = False) -> Tensor:
    """Rotate (degrees, about the centre), rescale and optionally mirror an image.

    Rotation uses reflection padding, so no black corners enter the patch pool.

    Args:
        x: ``[N, C, H, W]``. Returns ``[N, C, round(H*scale), round(W*scale)]``.
    """
    if scale != 1.0:
        size = (max(1, round(x.shape[2] * scale)), max(1, round(x.shape[3] * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
    if angle:
        n, _, h, w = x.shape
        t = math.radians(angle)
        # affine_grid works in normalised coords; correct for the aspect ratio so the
        # rotation is rigid in pixels.
        a = torch.tensor(
            [[math.cos(t), -math.sin(t) * h / w, 0.0], [math.sin(t) * w / h, math.cos(t), 0.0]],
            dtype=x.dtype, device=x.device,
        )
        grid = F.affine_grid(a.expand(n, 2, 3), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if flip:
        x = x.flip(-1)
    return x


def augmentations(
    angles: Sequence[float] = (-10.0, 0.0, 10.0),
    scales: Sequence[float] = (1 / 1.1, 1.0, 1.1),
    flip: bool = True,
) -> list[tuple[float, float, bool]]:
    """All ``(angle, scale, flip)`` combinations (18 with the defaults)."""
    flips = (False, True) if flip else (False,)
    return list(itertools.product(angles, scales, flips))


# ----------------------------------------------------------------------------- MGAN training crops
#
# Paper Sec. 3.2 / 5: "we regularly sample 128-by-128 image croppings" of every photo and
# its MDAN output, under the same augmentation, "around 16k samples" from 100 photos.


class CropSet:
    """Paired training crops of photos and their MDAN outputs, stored as uint8.

    Attributes:
        photo: ``[K, 3, S, S]`` uint8, crops of the (augmented) photos: G's input side.
        target: ``[K, 3, S, S]`` uint8, the same crops of the MDAN outputs: G's targets.
        index: ``[K, 4]`` int32 rows ``(photo, augmentation, y, x)`` saying where each crop came from.
        files: names of the photos, indexed by ``index[:, 0]``.
    """

    def __init__(self, photo: Tensor, target: Tensor, index: Tensor, files: Sequence[str]) -> None:
        if photo.shape != target.shape or photo.dim() != 4 or photo.dtype != torch.uint8 or target.dtype != torch.uint8:
            raise ValueError(f"photo and target crops must be equal uint8 [K, 3, S, S], got {tuple(photo.shape)} "
                             f"{photo.dtype} and {tuple(target.shape)} {target.dtype}")
        if index.shape != (photo.shape[0], 4):
            raise ValueError(f"index must be [K, 4], got {tuple(index.shape)}")
        self.photo, self.target, self.index, self.files = photo, target, index, list(files)

    def __len__(self) -> int:
        return self.photo.shape[0]

    @property
    def size(self) -> int:
        """Crop side in pixels."""
        return self.photo.shape[-1]

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Crops ``idx`` as float ``([B, 3, S, S], [B, 3, S, S])`` in ``[0, 1]`` (photo, target)."""
        return self.photo[idx].float().div_(255.0), self.target[idx].float().div_(255.0)

    def state_dict(self) -> dict:
        """Plain tensors and lists, loadable with ``weights_only=True``."""
        return {"format": "mgan-crops-v1", "photo": self.photo, "target": self.target, "index": self.index,
                "files": self.files}

    @classmethod
    def from_state_dict(cls, state: dict) -> CropSet:
        """Inverse of :meth:`state_dict`; ``ValueError`` on a foreign dict."""
        if state.get("format") != "mgan-crops-v1":
            raise ValueError(f"not an mgan crop set (format {state.get('format')!r})")
        return cls(state["photo"], state["target"], state["index"], state["files"])


def crop_grid(height: int, width: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners ``(y, x)`` of ``size`` crops at ``stride``, plus crops flush with the
    bottom/right border when the grid stops short of it (every pixel is covered).
    Empty if the image is smaller than one crop."""
    from mgan.patches import grid_positions  # noqa: PLC0415

    if height < size or width < size:
        return []
    return [(y, x) for y in grid_positions(height, size, stride) for x in grid_positions(width, size, stride)]


def paired_crops(
    photo: Tensor,
    target: Tensor,
    size: int = 128,
    stride: int = 64,
    augs: Sequence[tuple[float, float, bool]] | None = None,
) -> tuple[Tensor, Tensor, list[tuple[int, int, int]]]:
    """Crops of a photo and its MDAN output under identical augmentations.

    Args:
        photo, target: ``[1, 3, H, W]`` in ``[0, 1]``, the same size.
        size, stride: crop side and grid stride in pixels (128 and 64 in the original).
        augs: ``(angle, scale, flip)`` list, see :func:`augmentations` (default: the 18).
    Returns:
        uint8 crops ``[K, 3, size, size]`` of photo and target, and ``(aug, y, x)`` per crop.
    """
    if photo.shape != target.shape or photo.dim() != 4 or photo.shape[0] != 1:
        raise ValueError(f"photo and target must both be [1, 3, H, W] of one size, got {tuple(photo.shape)} "
                         f"and {tuple(target.shape)}")
    augs = augmentations() if augs is None else augs
    pc: list[Tensor] = []
    tc: list[Tensor] = []
    where: list[tuple[int, int, int]] = []
    pair = torch.cat([photo, target]).float()
    for a, (angle, scale, flip) in enumerate(augs):
        both = io.quantize(augment(pair, angle, scale, flip))
        for y, x in crop_grid(both.shape[2], both.shape[3], size, stride):
            crop = both[:, :, y : y + size, x : x + size]
            pc.append(crop[0])
            tc.append(crop[1])
            where.append((a, y, x))
    if not pc:
        empty = torch.empty(0, 3, size, size, dtype=torch.uint8)
        return empty, empty.clone(), where
    return torch.stack(pc), torch.stack(tc), where


def build_crop_set(
    pairs: Iterable[tuple[str, Tensor, Tensor]],
    size: int = 128,
    stride: int = 64,
    augs: Sequence[tuple[float, float, bool]] | None = None,
) -> CropSet:
    """Paired crops of many ``(name, photo [1,3,H,W], target [1,3,H,W])`` pairs; see :func:`paired_crops`."""
    photos: list[Tensor] = []
    targets: list[Tensor] = []
    rows: list[tuple[int, int, int, int]] = []
    files: list[str] = []
    for i, (name, photo, target) in enumerate(pairs):
        p, t, where = paired_crops(photo, target, size, stride, augs)
        files.append(name)
        photos.append(p)
        targets.append(t)
        rows += [(i, a, y, x) for a, y, x in where]
    if not rows:
        raise ValueError(f"no {size}x{size} crops: every photo is smaller than one crop")
    index = torch.tensor(rows, dtype=torch.int32)
    return CropSet(torch.cat(photos), torch.cat(targets), index, files)


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """The order in which epoch ``epoch`` visits ``n`` samples: ``[n]`` int64, a function of
    ``(seed, epoch)`` only, so a resumed (or differently sharded) run sees the same batches."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=g)


class PhotoCrops:
    """Random square crops (with flips) from a folder of photos held in memory.

    Shared by the feed-forward baselines (Johnson et al.'s perceptual networks, Texture
    Networks' style mode). Each photo is loaded once with its shorter side resized to
    ``max(size, load_size)`` (Johnson et al. resize COCO to 256x256; keeping the aspect
    ratio loses nothing by cropping). A ``load_size`` above ``size`` trains on crops at the
    scale of larger test images for less compute.

    Args:
        files: photo paths.
        size: crop side.
        load_size: shorter side the photos are resized to (0: ``size``).
        generator: the default RNG of :meth:`__call__`.
    """

    def __init__(self, files: Sequence, size: int, load_size: int = 0,
                 generator: torch.Generator | None = None) -> None:
        self.size, self.g = size, generator
        load = max(size, load_size)
        self.images = []
        for f in files:
            img = io.load_image(f, min_side=16)
            s = load / min(img.shape[-2:])
            hw = (max(size, round(img.shape[-2] * s)), max(size, round(img.shape[-1] * s)))
            self.images.append(F.interpolate(img, size=hw, mode="bicubic", align_corners=False,
                                             antialias=s < 1).clamp(0, 1))

    def __call__(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``[n, 3, size, size]`` crops (drawn with ``generator``, default the sampler's own)."""
        g = generator or self.g
        out = []
        for i in torch.randint(len(self.images), (n,), generator=g).tolist():
            img = self.images[i]
            y = int(torch.randint(img.shape[-2] - self.size + 1, (1,), generator=g))
            x = int(torch.randint(img.shape[-1] - self.size + 1, (1,), generator=g))
            crop = img[..., y : y + self.size, x : x + self.size]
            if bool(torch.rand((), generator=g) < 0.5):
                crop = crop.flip(-1)
            out.append(crop)
        return torch.cat(out)
