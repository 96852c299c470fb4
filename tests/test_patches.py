"""Training data: input checks, validation split, patches and blind-spot masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from microdenoise import InputError
from microdenoise.patches import (
    as_planes,
    augment,
    blind_spot_mask,
    choose_patch,
    hold_out,
    sample_patches,
    stratified_coords,
)
from microdenoise.training import generator


def _patches(n: int = 64, size: int = 64, seed: int = 0) -> torch.Tensor:
    # Continuous random values: equal values at two positions have probability zero.
    return torch.rand((n, 1, size, size), generator=generator(seed))


def test_masked_fraction_is_about_0_2_percent() -> None:
    patches = _patches(n=256)
    masked = blind_spot_mask(patches, percentage=0.2, radius=5, gen=generator(1))
    fraction = masked.mask.float().mean().item()
    assert 0.0016 < fraction < 0.0024  # expected 0.2 %; ~8 pixels per 64x64 patch
    counts = masked.mask.sum(dim=(1, 2, 3))
    assert counts.min() >= 4 and counts.max() <= 9  # one per jittered-grid cell


def test_stratified_points_are_spread_one_per_cell() -> None:
    b, y, x = stratified_coords(1, (64, 64), 0.2, generator(2))
    step = (100 / 0.2) ** 0.5
    cells = set(zip((y / step).long().tolist(), (x / step).long().tolist(), strict=True))
    assert len(cells) == len(y)  # never two in one cell
    assert (b == 0).all()


@pytest.mark.parametrize("size", [16, 33, 64])
def test_uniform_replacement_never_uses_the_pixel_itself(size: int) -> None:
    # High density and small patches put many blind spots on the border, where
    # CAREamics' clamping can return the pixel itself.
    patches = _patches(n=32, size=size, seed=size)
    masked = blind_spot_mask(patches, percentage=20.0, radius=5, gen=generator(3))
    b, y, x = masked.coords
    assert masked.sources is not None
    sy, sx = masked.sources
    assert ((sy != y) | (sx != x)).all()
    assert ((sy - y).abs() <= 5).all() and ((sx - x).abs() <= 5).all()
    assert ((sy >= 0) & (sy < size) & (sx >= 0) & (sx < size)).all()
    torch.testing.assert_close(masked.inputs[b, 0, y, x], patches[b, 0, sy, sx])
    assert (masked.inputs[b, 0, y, x] != patches[b, 0, y, x]).all()
    # Only blind spots change; the mask marks exactly them.
    changed = masked.inputs != patches
    assert not (changed & ~masked.mask).any()
    assert int(masked.mask.sum()) == len(y)


def test_offsets_cover_the_window_uniformly_without_the_centre() -> None:
    patches = _patches(n=512, size=32, seed=4)
    masked = blind_spot_mask(patches, percentage=10.0, radius=2, gen=generator(5))
    _, y, x = masked.coords
    assert masked.sources is not None
    inner = (y >= 2) & (y < 30) & (x >= 2) & (x < 30)
    dy = (masked.sources[0] - y)[inner]
    dx = (masked.sources[1] - x)[inner]
    counts = torch.zeros(5, 5)
    counts.index_put_((dy + 2, dx + 2), torch.ones_like(dy, dtype=torch.float), accumulate=True)
    assert counts[2, 2] == 0
    others = counts.flatten()[torch.arange(25) != 12]
    expected = others.sum() / 24
    assert (others - expected).abs().max() < 5 * expected.sqrt()  # no favoured offset


def test_median_replacement_excludes_the_centre() -> None:
    patches = torch.zeros((4, 1, 32, 32))
    patches[:, :, 10, 10] = 100.0  # a hot pixel: its own median window would not see it
    masked = blind_spot_mask(patches, percentage=50.0, radius=1, replacement="median",
                             gen=generator(6))
    b, y, x = masked.coords
    assert masked.sources is None
    assert (masked.inputs[b, 0, y, x] == 0).all()


@pytest.mark.parametrize("axis", ["x", "y"])
def test_struct_mask_hides_a_line_along_the_axis(axis: str) -> None:
    patches = _patches(n=8, size=32, seed=7)
    masked = blind_spot_mask(patches, percentage=1.0, radius=5, struct_axis=axis,
                             struct_span=5, gen=generator(8))
    b, y, x = masked.coords
    assert masked.sources is not None
    dy, dx = masked.sources[0] - y, masked.sources[1] - x
    along, across = (dx, dy) if axis == "x" else (dy, dx)
    assert ((across != 0) | (along.abs() > 2)).all()  # the neighbour is off the line
    for k in (-2, -1, 1, 2):
        ly, lx = (y, x + k) if axis == "x" else (y + k, x)
        ok = (ly >= 0) & (ly < 32) & (lx >= 0) & (lx < 32)
        assert (masked.inputs[b[ok], 0, ly[ok], lx[ok]]
                != patches[b[ok], 0, ly[ok], lx[ok]]).all()
    perpendicular = (y + 1, x) if axis == "x" else (y, x + 1)
    ok = (perpendicular[0] < 32) & (perpendicular[1] < 32) & ~masked.mask[
        b, 0, perpendicular[0].clamp(max=31), perpendicular[1].clamp(max=31)]
    assert (masked.inputs[b[ok], 0, perpendicular[0][ok], perpendicular[1][ok]]
            == patches[b[ok], 0, perpendicular[0][ok], perpendicular[1][ok]]).all()


def test_masking_is_seeded() -> None:
    patches = _patches(n=4)
    one = blind_spot_mask(patches, percentage=1.0, radius=5, gen=generator(9))
    two = blind_spot_mask(patches, percentage=1.0, radius=5, gen=generator(9))
    assert torch.equal(one.inputs, two.inputs) and torch.equal(one.mask, two.mask)


def test_augment_gives_dihedral_views() -> None:
    patch = torch.arange(16.0).reshape(1, 1, 4, 4)
    views = augment(patch.repeat(64, 1, 1, 1), generator(10))
    distinct = {tuple(v.flatten().tolist()) for v in views}
    assert len(distinct) == 8  # 4 rotations x 2 flips
    assert all(sorted(v) == list(range(16)) for v in distinct)


def test_sample_patches_shapes_and_seed() -> None:
    planes = [np.arange(40 * 50, dtype=np.float32).reshape(40, 50), np.zeros((20, 20), "f4")]
    one = sample_patches(planes, 6, 32, generator(11))
    assert one.shape == (6, 1, 32, 32)
    assert torch.equal(one, sample_patches(planes, 6, 32, generator(11)))
    assert (one > 0).any()  # only the 40x50 plane is large enough


def test_as_planes_accepts_images_stacks_and_lists() -> None:
    img = np.random.default_rng(0).random((20, 30))
    assert len(as_planes(img)) == 1
    assert len(as_planes(np.stack([img] * 3))) == 3
    assert len(as_planes(np.stack([img] * 6).reshape(2, 3, 20, 30))) == 6
    assert len(as_planes([img, np.stack([img] * 2)])) == 3  # images and stacks mix
    planes = as_planes([img, img[:18, :25]])
    assert [p.shape for p in planes] == [(20, 30), (18, 25)]
    assert all(p.dtype == np.float32 for p in planes)


@pytest.mark.parametrize(("bad", "words"), [
    (np.full((32, 32), 3.0), "constant"),
    (np.where(np.eye(32) > 0, np.nan, 1.0), "NaN"),
    ([np.ones((32, 32)), [np.ones((32, 32)), np.ones((16, 16))]], "not nested lists"),
    ([], "empty"),
    (np.ones(32), "2 dimensions"),
    (np.array([["a"]]), "numeric"),
])
def test_as_planes_rejects_bad_data(bad: object, words: str) -> None:
    with pytest.raises(InputError, match=words):
        as_planes(bad)


def test_choose_patch_shrinks_to_small_images_down_to_16() -> None:
    assert choose_patch([np.zeros((100, 100))], 64, multiple=4) == 64
    assert choose_patch([np.zeros((50, 70))], 64, multiple=4) == 48
    with pytest.raises(InputError, match="at least 16x16"):
        choose_patch([np.zeros((15, 100))], 64, multiple=4)


def test_hold_out_planes_or_strips() -> None:
    stack = [np.full((64, 64), float(i)) for i in range(10)]
    train, val = hold_out(stack, fraction=0.2, patch=32)
    assert len(train) == 8 and [v[0, 0] for v in val] == [8.0, 9.0]
    big = np.zeros((100, 300))
    train, val = hold_out([big], fraction=0.1, patch=32)
    assert train[0].shape == (100, 268) and val[0].shape == (100, 32)
    train, val = hold_out([np.zeros((40, 40))], fraction=0.1, patch=32)
    assert len(train) == 1 and val == []  # too small: validate on the training data


def test_augment_without_rotation_keeps_rows_rows() -> None:
    """``rotate=False`` (structN2V): only flips along Y and X, so a row of a patch is
    always a row of its view (a line mask along X stays along the correlation)."""
    patch = torch.arange(16.0).reshape(1, 1, 4, 4)
    batch = patch.repeat(64, 1, 1, 1)
    views = augment(batch, generator(0), rotate=False)
    allowed = [patch[0], patch[0].flip(-1), patch[0].flip(-2), patch[0].flip((-2, -1))]
    seen = {next(i for i, a in enumerate(allowed) if torch.equal(v, a)) for v in views}
    assert seen == {0, 1, 2, 3}  # all four axis-preserving views, and nothing else
    rotated = augment(batch, generator(0))
    assert any(torch.equal(v, torch.rot90(patch[0], 1, dims=(-2, -1))) for v in rotated)
