"""FM2S: architecture, noise injection statistics, schedules, and denoising real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from microdenoise import InputError, create, metrics, training
from microdenoise.methods import fm2s, fm2s_noise
from microdenoise.methods.fm2s_noise import inject_noise, noise_maps


@pytest.mark.parametrize("n_chan", [1, 2, 6])
def test_parameter_count_matches_paper(n_chan: int) -> None:
    assert fm2s.n_parameters(n_chan) == 901 * n_chan + 2628


def test_presets_follow_official_configs() -> None:
    p = fm2s.FM2S.PRESETS
    assert (p["confocal"]["n_chan"], p["confocal"]["stride"], p["confocal"]["w_size"]) == (2, 75, 3)
    assert (p["widefield"]["n_chan"], p["widefield"]["w_size"], p["widefield"]["lam_p"]) == (
        1, 11, 2000.0)
    srd = p["srdtrans"]
    assert (srd["n_chan"], srd["stride"], srd["g_map"]) == (6, 5, 60.0)
    assert (p["twophoton_avg16"]["g_map"], p["twophoton_avg16"]["p_map"],
            p["twophoton_avg16"]["lam_p"]) == (15.0, 850.0, 3800.0)
    assert fm2s.paper_steps(fm2s.FM2SConfig()) == 2255


def test_noise_maps_use_zero_padded_region_means() -> None:
    clean = torch.full((1, 2, 10, 10), 0.12)
    sigma, scale = noise_maps(clean, stride=8, g_map=200.0, p_map=30.0)
    # Region (0, 0) is full: n = 0.12. Region (0, 1) holds 8x2 real pixels of 64.
    n_edge = 0.12 * 16 / 64
    assert sigma[0, 0, 0, 0].item() == pytest.approx(200 * 0.12 / 255)
    assert sigma[0, 0, 0, 9].item() == pytest.approx(200 * n_edge / 255)
    assert scale[0, 0, 9, 9].item() == pytest.approx(30 / (0.12 * 4 / 64))


def test_noise_level_is_clamped_to_paper_range() -> None:
    dark = torch.zeros((1, 1, 16, 16))
    bright = torch.ones((1, 1, 16, 16))
    _, scale_dark = noise_maps(dark, stride=8, g_map=1.0, p_map=30.0)
    sigma_bright, _ = noise_maps(bright, stride=8, g_map=200.0, p_map=30.0)
    assert scale_dark.max().item() == pytest.approx(30 / 1e-5, rel=1e-4)
    assert sigma_bright.max().item() == pytest.approx(200 * 0.15 / 255)


def test_region_injection_statistics_follow_equations() -> None:
    """Per region: mean preserved, variance c/a + sigma^2 (clipping negligible here)."""
    h = w = 256
    clean = torch.full((1, 2, h, w), 0.3)
    clean[..., :, w // 2:] = 0.08
    sigma, scale = noise_maps(clean, stride=128, g_map=50.0, p_map=30.0)
    gen = torch.Generator().manual_seed(0)
    y = inject_noise(clean, sigma, scale, lam_p=70.0, gen=gen, overall=False)
    halves = ((slice(None), slice(None, w // 2)), (slice(None), slice(w // 2, None)))
    for sl, c in zip(halves, (0.3, 0.08), strict=True):
        n = min(c, 0.15)
        expected_var = c / (30.0 / n) + (50.0 * n / 255) ** 2
        region = y[0][(slice(None), *sl)]
        assert region.mean().item() == pytest.approx(c, abs=3e-3)
        assert region.var().item() == pytest.approx(expected_var, rel=0.05)


def test_overall_poisson_statistics() -> None:
    y = torch.full((1, 1, 256, 256), 0.4)
    gen = torch.Generator().manual_seed(1)
    z = inject_noise(y, y, y, lam_p=70.0, gen=gen, region=False, overall=True)
    assert z.mean().item() == pytest.approx(0.4, abs=3e-3)
    assert z.var().item() == pytest.approx(0.4 / 70.0, rel=0.05)


def test_channels_get_independent_noise() -> None:
    clean = torch.full((1, 2, 64, 64), 0.2)
    sigma, scale = noise_maps(clean, stride=32, g_map=200.0, p_map=30.0)
    y = inject_noise(clean, sigma, scale, lam_p=70.0, gen=torch.Generator().manual_seed(2))
    assert not torch.equal(y[0, 0], y[0, 1])
    assert 0.0 <= y.min().item() and y.max().item() <= 1.0


def test_paper_schedule_runs_the_official_step_count(clean_noisy) -> None:
    _, noisy = clean_noisy
    m = create("fm2s", schedule="paper", samples=3, steps_per_sample=5).fit(noisy.clip(0, 1))
    assert len(m.losses) == 5 + 3 * 5


@pytest.mark.parametrize("switch", [{"stage1": False}, {"stage2": False},
                                    {"region_noise": False}, {"overall_noise": False},
                                    {"predenoise": "gaussian"}, {"n_chan": 1}])
def test_ablation_switches_run(clean_noisy, switch) -> None:
    _, noisy = clean_noisy
    m = create("fm2s", fast_steps=20, fast_crop=32, **switch).fit(noisy.clip(0, 1))
    out = m.denoise(noisy.clip(0, 1))
    assert out.shape == noisy.shape and np.isfinite(out).all()
    expected = (5 if switch.get("stage1", True) else 0) + (20 if switch.get("stage2", True) else 0)
    assert len(m.losses) == expected


def test_fast_schedule_denoises_bundled_fmd_sample() -> None:
    from importlib import resources

    import imageio.v3 as iio

    data = resources.files("microdenoise") / "data"
    raw = iio.imread(data / "confocal_fish_raw.png").astype(np.float32) / 255
    gt = iio.imread(data / "confocal_fish_gt.png").astype(np.float64)
    m = create("fm2s", preset="confocal", fast_steps=150).fit(raw)
    out = np.rint(m.denoise(raw) * 255)
    before = metrics.psnr(raw * 255, gt, data_range=255)
    after = metrics.psnr(out, gt, data_range=255)
    assert after > before + 4.0


def test_denoise_before_fit_is_a_clear_error() -> None:
    from microdenoise import InputError

    with pytest.raises(InputError, match="fitted"):
        create("fm2s").denoise(np.zeros((32, 32), np.float32))


def test_d8_averaging_makes_the_prediction_flip_and_rotation_equivariant(clean_noisy) -> None:
    _, noisy = clean_noisy
    plane = noisy.clip(0, 1)[:40, :56].astype(np.float32)
    m = create("fm2s", fast_steps=10, fast_crop=32).fit(plane)
    assert m.config.tta == "auto"
    out = m.denoise(plane)
    np.testing.assert_allclose(m.denoise(np.ascontiguousarray(plane[:, ::-1])), out[:, ::-1],
                               atol=1e-6)
    np.testing.assert_allclose(m.denoise(np.ascontiguousarray(np.rot90(plane))), np.rot90(out),
                               atol=1e-6)
    single = create("fm2s", fast_steps=10, fast_crop=32, tta="off").fit(plane).denoise(plane)
    assert not np.allclose(single, out, atol=1e-6)


def test_paper_schedule_predicts_once_like_the_official_code(clean_noisy) -> None:
    _, noisy = clean_noisy
    plane = noisy.clip(0, 1).astype(np.float32)
    m = create("fm2s", schedule="paper", samples=1, steps_per_sample=1).fit(plane)
    assert m.net is not None
    with torch.no_grad():
        x = torch.from_numpy(plane)[None, None].repeat(1, m.config.n_chan, 1, 1)
        once = m.net(x).clamp(0, 1).mean(dim=1)[0].numpy()
    np.testing.assert_array_equal(m.denoise(plane), once)


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("false", False), ("on", True)])
def test_fast_bf16_takes_auto_or_a_boolean(value: str, expected: object) -> None:
    from microdenoise.config import parse_params

    assert create("fm2s", **parse_params([f"fast_bf16={value}"])).config.fast_bf16 == expected


def test_fast_bf16_auto_is_bf16_only_on_a_cpu_with_native_bf16() -> None:
    cpu = torch.device("cpu")
    assert training.use_bf16("auto", cpu) is training.native_cpu_bf16()
    assert training.use_bf16("auto", torch.device("cuda")) is False
    assert training.use_bf16(True, torch.device("cuda")) is True
    assert training.use_bf16(False, cpu) is False


def _dark_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A mostly dark 8-bit scene (background 6/255, sparse bright blobs) and its noisy copy."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:128, :128]
    clean = np.full((128, 128), 6 / 255)
    for cy, cx in rng.uniform(10, 118, size=(6, 2)):
        clean += 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 40.0)
    noisy = rng.poisson(clean * 255 / 4.0) * 4.0 + rng.normal(0, 2.0, clean.shape)
    return clean, (np.clip(np.rint(noisy), 0, 255) / 255).astype(np.float32)


def test_injected_noise_without_clamp_keeps_the_mean_in_the_dark() -> None:
    clean = torch.full((1, 1, 256, 256), 0.02)
    sigma, scale = noise_maps(clean, stride=64, g_map=200.0, p_map=30.0)
    gen = torch.Generator().manual_seed(3)
    clamped = inject_noise(clean, sigma, scale, lam_p=70.0, gen=gen)
    free = inject_noise(clean, sigma, scale, lam_p=70.0, gen=gen, clamp=False)
    # The official clamp at 0 biases dark regions up (~7.6e-4 here; s.e. ~9e-5).
    assert clamped.mean().item() > 0.02 + 4e-4
    assert free.mean().item() == pytest.approx(0.02, abs=3e-4)


def test_mean_correction_removes_the_mean_bias_on_a_dark_scene() -> None:
    clean, noisy = _dark_scene()
    kw = {"preset": "confocal", "fast_steps": 120, "fast_crop": 64}
    before = create("fm2s", **kw).fit(noisy).denoise(noisy)
    fixed = create("fm2s", mean_correction="plane", **kw).fit(noisy)
    after = fixed.denoise(noisy)
    bound = 0.5 / 255  # half an 8-bit count
    assert abs(before.mean() - clean.mean()) > bound  # fails without the correction
    assert abs(after.mean() - clean.mean()) < bound
    assert after.mean() == pytest.approx(noisy.mean(), abs=1e-5)
    assert "mean correction" in fixed.describe_fit()


def test_mean_correction_survives_save_and_load(tmp_path) -> None:
    from microdenoise import load, save

    _, noisy = _dark_scene(1)
    m = create("fm2s", mean_correction="plane", fast_steps=5, fast_crop=32).fit(noisy)
    save(m, tmp_path / "m.pt")
    np.testing.assert_array_equal(load(tmp_path / "m.pt").denoise(noisy), m.denoise(noisy))


def test_uint16_planes_get_noise_constants_from_their_own_fit() -> None:
    from microdenoise import noise

    clean, _ = _dark_scene(2)
    counts = noise.add_poisson_gaussian(100 + 3000 * clean, photons=1 / 20.0, sigma=5.0, seed=0)
    raw = np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
    plane = ((raw - raw.min()) / float(raw.max() - raw.min())).astype(np.float32)
    assert not fm2s_noise.is_8bit_plane(plane)
    g, p, lam, said = fm2s_noise.fit_constants(plane, fm2s.FM2SConfig(), fm2s.FM2S.PRESETS)
    m = create("fm2s", preset="confocal", fast_steps=2, fast_crop=32).fit(plane)
    assert m.describe_fit() == said
    assert said.startswith("preset confocal; noise constants from the image's Poisson-Gaussian")
    assert f"g_map={g:.4g}" in said and (g, p, lam) != (200.0, 30.0, 70.0)
    # Injected variance scales by one factor s: g^2 * p and p * lam stay the preset's.
    assert g * g * p == pytest.approx(200.0**2 * 30.0, rel=1e-6)
    assert p / lam == pytest.approx(30.0 / 70.0, rel=1e-6)
    eight = np.rint(plane * 255).astype(np.float32) / 255
    assert fm2s_noise.is_8bit_plane(eight)
    m8 = create("fm2s", preset="widefield", fast_steps=2, fast_crop=32).fit(eight)
    assert m8.describe_fit() == ("preset widefield; noise constants as given (8-bit scale): "
                                 "g_map=220, p_map=45, lam_p=2000")
    forced = create("fm2s", noise_constants="preset", fast_steps=2, fast_crop=32).fit(plane)
    assert "as given" in forced.describe_fit()


def test_noise_of_an_input_below_zero_is_drawn_from_its_positive_part() -> None:
    """compare's SURE runs FM2S on a perturbed copy scaled like the original, which can
    dip below 0 in dark regions: the Poisson rate is the positive part (it raised
    'invalid Poisson rate' before), and inputs in [0, 1] get exactly the same noise."""
    clean = torch.full((1, 1, 16, 16), 0.02)
    clean[..., :4, :] = -0.01
    sigma, scale = noise_maps(clean, g_map=200.0, p_map=30.0, stride=8)
    for clamp in (True, False):
        y = inject_noise(clean, sigma, scale, lam_p=70.0,
                         gen=torch.Generator().manual_seed(0), clamp=clamp)
        assert torch.isfinite(y).all()
    inside = clean.clamp(min=0.0)  # in [0, 1]: the official formula, draw for draw
    got = inject_noise(inside, sigma, scale, lam_p=70.0, gen=torch.Generator().manual_seed(1),
                       overall=False)
    gen = torch.Generator().manual_seed(1)
    want = torch.poisson(scale * inside, generator=gen) / scale
    want = (want + torch.randn(inside.shape, generator=gen) * sigma).clamp(0.0, 1.0)
    assert torch.equal(got, want)


@pytest.mark.parametrize("shape", [(70, 90), (300, 517), (256 + 16, 40)])
def test_tiled_prediction_equals_one_pass_over_the_plane(shape: tuple[int, int]) -> None:
    """Prediction runs on 256 x 256 tiles with a halo (faster on large planes); it must
    give what one pass over the whole plane gives, borders included."""
    torch.manual_seed(0)
    net = fm2s.FM2SNet(2).eval()
    x = torch.rand(1, 2, *shape)
    with torch.no_grad():
        whole, tiled = net(x), fm2s.tiled_forward(net, x, tile=64)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-6)
    with torch.no_grad():  # a halo smaller than the receptive field would show at seams
        short = fm2s.tiled_forward(net, x, tile=64, halo=2)
    assert not torch.allclose(short, whole, atol=1e-6) or max(shape) <= 64 + 4


def test_prefetched_draws_in_order_and_passes_errors_on() -> None:
    calls = iter(range(5))
    assert list(fm2s.prefetched(lambda: next(calls), 5)) == [0, 1, 2, 3, 4]
    assert list(fm2s.prefetched(lambda: 1, 0)) == []

    def broken() -> int:
        raise RuntimeError("draw failed")

    with pytest.raises(RuntimeError, match="draw failed"):
        list(fm2s.prefetched(broken, 3))


def test_fit_refuses_a_plane_that_is_not_scaled_to_unit_range() -> None:
    raw = np.random.default_rng(0).integers(0, 4096, (64, 64)).astype(np.float32)
    with pytest.raises(InputError, match=r"scaled to \[0, 1\].*from 0 to 40\d\d"):
        create("fm2s", fast_steps=2, fast_crop=32).fit(raw)
