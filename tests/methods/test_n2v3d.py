"""Noise2Void in 3D (``dims=3``): 3D blind spots, a 3D U-Net on ZYX patches, whole-volume
prediction (tiled in YX when large), the pipeline and the CLI on ZYX stacks, bad input.

Tiny trainings (8-filter U-Nets, 8x32x32 patches, 2 % blind spots) on a smooth
synthetic volume: behaviour and a clear gain, not quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage

from microdenoise import InputError, create, denoise_array, load, save
from microdenoise.cli import main
from microdenoise.methods.n2v import N2V
from microdenoise.metrics import psnr
from microdenoise.networks import UNet
from microdenoise.patches import blind_spot_mask, stratified_coords
from microdenoise.tiling import denoise_tiled

from .conftest import apply_model

TINY3D = {"dims": 3, "epochs": 3, "steps_per_epoch": 10, "batch_size": 4, "patch_size": 32,
          "patch_size_z": 8, "masked_percentage": 2.0, "filters": 8}


def _volume(shape: tuple[int, int, int] = (16, 48, 48), *, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
    """A smooth clean ZYX volume in [0.1, 0.9] and its Poisson-Gaussian noisy copy."""
    rng = np.random.default_rng(seed)
    clean = ndimage.gaussian_filter(rng.random(shape), sigma=3.0)
    clean = (0.1 + 0.8 * (clean - clean.min()) / (clean.max() - clean.min()))
    noisy = rng.poisson(clean * 30.0) / 30.0 + rng.normal(0, 0.05, shape)
    return clean.astype(np.float32), noisy.astype(np.float32)


@pytest.fixture(scope="module")
def trained3d() -> N2V:
    return create("n2v", **TINY3D).fit(_volume()[1])  # type: ignore[return-value]


def test_3d_unet_keeps_the_shape_and_refuses_n2v2() -> None:
    net = UNet(dims=3, filters=4)
    assert net(torch.zeros(1, 1, 8, 16, 24)).shape == (1, 1, 8, 16, 24)
    assert any(isinstance(m, torch.nn.Conv3d) for m in net.modules())
    with pytest.raises(ValueError, match="2D only"):
        UNet(dims=3, n2v2=True)


def test_3d_blind_spots_copy_a_neighbour_in_the_cube_never_the_centre() -> None:
    patches = torch.randn(3, 1, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    masked = blind_spot_mask(patches, percentage=1.0, radius=2, gen=gen)
    b, z, y, x = masked.coords
    assert masked.sources is not None
    sz, sy, sx = masked.sources
    frac = 100 * int(masked.mask.sum()) / patches.numel()
    assert 0.7 < frac < 1.3  # about the asked-for percentage
    offsets = torch.stack([sz - z, sy - y, sx - x])
    assert int(offsets.abs().max()) <= 2
    assert bool((offsets.abs().sum(0) > 0).all())  # never the pixel itself
    assert torch.equal(masked.inputs[b, 0, z, y, x], patches[b, 0, sz, sy, sx])
    assert torch.equal(masked.inputs[~masked.mask], patches[~masked.mask])
    # One point per cell of a grid of spacing (100/p)^(1/3): spread over Z too.
    _, zz, _, _ = stratified_coords(1, (16, 32, 32), 1.0, torch.Generator().manual_seed(2))
    assert len(set(zz.tolist())) > 8


def test_3d_training_denoises_a_volume(trained3d: N2V) -> None:
    clean, noisy = _volume()
    out = apply_model(trained3d, noisy)
    assert out.shape == noisy.shape and out.dtype == np.float32
    gain = psnr(out, clean, data_range=1.0) - psnr(noisy, clean, data_range=1.0)
    assert gain > 3.0  # dB after 30 steps
    assert trained3d.supports_3d and not create("n2v").supports_3d
    assert trained3d.receptive_field == 29


def test_3d_yx_tiles_equal_the_whole_volume(trained3d: N2V) -> None:
    """``denoise`` predicts a volume whole; the core tiles large ones in YX (tiles on
    the pooling grid, the receptive field as overlap) and gets the same result."""
    _, noisy = _volume((3, 100, 90), seed=3)  # Z not a multiple of the pooling
    x = trained3d.normalizers[0](noisy)
    whole = trained3d.denoise(x)
    rf = trained3d.receptive_field
    tiled = denoise_tiled(trained3d.denoise, x, tile=80, overlap=rf,
                          multiple=trained3d.tile_multiple)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_3d_save_load_pipeline_and_stacks(trained3d: N2V, tmp_path: Path) -> None:
    _, noisy = _volume((8, 40, 40), seed=4)
    loaded = load(save(trained3d, tmp_path / "n2v3d.pt"))
    np.testing.assert_array_equal(apply_model(loaded, noisy), apply_model(trained3d, noisy))
    # CZYX through the pipeline: each channel's volume whole; T as the volume axis too.
    stack = np.stack([noisy, noisy])
    out = denoise_array(stack, loaded, axes="CZYX")
    assert out.shape == stack.shape
    np.testing.assert_allclose(out[0], out[1])
    assert denoise_array(noisy, loaded, axes="TYX").shape == noisy.shape


def test_3d_bad_input_and_parameters(trained3d: N2V) -> None:
    with pytest.raises(InputError, match="dims=3.*ZYX"):
        apply_model(trained3d, _volume()[1][0])  # one plane
    with pytest.raises(InputError, match=r"Z \(or T\) axis"):
        denoise_array(_volume()[1], trained3d, axes="SYX")  # planes, not a volume
    with pytest.raises(InputError, match="ZYX stacks"):
        create("n2v", **TINY3D).fit(np.ones((32, 32), np.float32) + np.eye(32))
    with pytest.raises(InputError, match="slice"):
        create("n2v", **{**TINY3D, "depth": 3}).fit(_volume((4, 48, 48))[1])
    for bad in ({"n2v2": True}, {"struct_axis": "x"}, {"replacement": "median"},
                {"shift_average": True}, {"dims": 4}):
        with pytest.raises(InputError):
            create("n2v", **{**TINY3D, **bad})
    with pytest.raises(InputError, match="2D PSF"):
        create("deconoising", dims=3)
    with pytest.raises(InputError, match="precision=bf16"):  # oneDNN's bf16 3D convs
        create("n2v", **{**TINY3D, "precision": "bf16"}).fit(_volume()[1])


def test_cli_trains_and_denoises_a_zyx_stack(tmp_path: Path, capsys) -> None:
    _, noisy = _volume((12, 40, 40), seed=5)
    stack = (noisy * 1000).clip(0, 65535).astype(np.uint16)
    src = tmp_path / "data"
    src.mkdir()
    tifffile.imwrite(src / "stack.tif", stack, metadata={"axes": "ZYX"})
    tifffile.imwrite(src / "plane.tif", stack[0])
    model = tmp_path / "m.pt"
    params = ["--param", "dims=3", "--param", "epochs=1", "--param", "steps_per_epoch=2",
              "--param", "patch_size=32", "--param", "patch_size_z=8",
              "--param", "batch_size=2", "--param", "filters=4"]
    # A YX file cannot train a 3D network: a clear error, no model written.
    assert main(["train", "--method", "n2v", "--input", str(src / "plane.tif"),
                 "--out", str(model), *params]) != 0
    assert "no Z" in capsys.readouterr().err and not model.exists()
    assert main(["train", "--method", "n2v", "--input", str(src / "stack.tif"),
                 "--out", str(model), *params]) == 0
    out = tmp_path / "out"
    assert main(["denoise", str(src / "stack.tif"), "-o", str(out), "--model",
                 str(model)]) == 0
    with tifffile.TiffFile(out / "stack.tif") as tif:
        assert tif.series[0].axes == "ZYX" and tif.asarray().shape == stack.shape
