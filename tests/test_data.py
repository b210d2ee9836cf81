"""Paired crops (MGAN paper Sec. 3.2): grid, identical augmentation of photo and target, storage, data order."""

import pytest
import torch

from mgan import io
from mgan.data import (
    CropSet,
    augment,
    augmentations,
    build_crop_set,
    crop_grid,
    epoch_order,
    paired_crops,
)


def _image(h=64, w=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([torch.sin(7 * xx + 3 * yy), torch.cos(5 * yy - 4 * xx), xx * yy])
    return (0.5 + 0.4 * base + 0.05 * torch.rand(3, h, w, generator=g)).clamp(0, 1).unsqueeze(0)


def test_crop_grid_covers_the_border():
    assert crop_grid(128, 128, 128, 64) == [(0, 0)]
    assert crop_grid(256, 192, 128, 64) == [(y, x) for y in (0, 64, 128) for x in (0, 64)]
    # 200 = 0, 64 + a crop flush with the border at 72
    assert [x for _, x in crop_grid(128, 200, 128, 64)] == [0, 64, 72]
    assert crop_grid(100, 300, 128, 64) == []


def test_identity_augmentation_crops_are_plain_slices():
    photo, target = _image(), _image(seed=1)
    p, t, where = paired_crops(photo, target, 32, 16, [(0.0, 1.0, False)])
    assert p.dtype == torch.uint8 and p.shape == (len(crop_grid(64, 80, 32, 16)), 3, 32, 32)
    for k, (a, y, x) in enumerate(where):
        assert a == 0
        torch.testing.assert_close(p[k], io.quantize(photo[0, :, y : y + 32, x : x + 32]))
        torch.testing.assert_close(t[k], io.quantize(target[0, :, y : y + 32, x : x + 32]))


def test_photo_and_target_share_each_augmentation():
    """Target = 1 - photo pixelwise; every augmentation is linear, so the crops must stay complementary."""
    photo = _image()
    p, t, where = paired_crops(photo, 1 - photo, 32, 16)
    assert len({a for a, _, _ in where}) == 18  # 3 rotations x 3 scales x flip
    diff = (p.int() + t.int() - 255).abs()
    assert diff.max() <= 1  # uint8 rounding only


def test_augmented_crops_match_augment():
    photo = _image()
    augs = [(10.0, 1.1, True)]
    p, _, where = paired_crops(photo, photo, 32, 16, augs)
    ref = io.quantize(augment(photo, *augs[0]))
    for k, (_, y, x) in enumerate(where):
        torch.testing.assert_close(p[k], ref[0, :, y : y + 32, x : x + 32])


def test_build_crop_set_index_and_roundtrip(tmp_path):
    pairs = [(f"p{i}.png", _image(seed=i), _image(seed=10 + i)) for i in range(2)]
    augs = augmentations((0.0,), (1.0,), True)
    crops = build_crop_set(pairs, 32, 32, augs)
    per_photo = 2 * len(crop_grid(64, 80, 32, 32))
    assert len(crops) == 2 * per_photo and crops.size == 32
    assert crops.index[:, 0].tolist() == [0] * per_photo + [1] * per_photo
    photo, target = crops.batch(torch.tensor([0, per_photo]))
    assert photo.shape == (2, 3, 32, 32) and photo.dtype == torch.float32 and 0 <= photo.min() and photo.max() <= 1
    io.save_checkpoint(crops.state_dict(), tmp_path / "crops.pt")
    back = CropSet.from_state_dict(io.load_checkpoint(tmp_path / "crops.pt"))  # weights_only=True
    assert torch.equal(back.photo, crops.photo) and torch.equal(back.target, crops.target)
    assert back.files == ["p0.png", "p1.png"]
    with pytest.raises(ValueError, match="no 128x128 crops"):
        build_crop_set(pairs, 128, 64, augs)
    with pytest.raises(ValueError, match="not an mgan crop set"):
        CropSet.from_state_dict({"photo": crops.photo})


def test_mismatched_pair_rejected():
    with pytest.raises(ValueError, match="one size"):
        paired_crops(_image(64, 80), _image(64, 72), 32, 16)


def test_epoch_order_is_a_function_of_seed_and_epoch():
    a = epoch_order(100, 0, 3)
    assert sorted(a.tolist()) == list(range(100))
    assert torch.equal(a, epoch_order(100, 0, 3))
    assert not torch.equal(a, epoch_order(100, 0, 4))
    assert not torch.equal(a, epoch_order(100, 1, 3))
