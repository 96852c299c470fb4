"""The napari plugin, for real: a viewer under xvfb (``xvfb-run -a pytest``), driven as
a user would (choose a layer, a method, a parameter, press Run, wait for the worker).

Skipped, with the reason, where napari or pytest-qt is not installed or there is no
display. Budgets are tiny (fm2s 20 steps on 32 px crops, n2v 8 filters).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    pytest.skip("the napari widgets need a display: run the tests under `xvfb-run -a` "
                "(Debian: apt-get install xvfb and Qt's xcb libraries, see .ci/run)",
                allow_module_level=True)
napari = pytest.importorskip("napari", reason="napari is not installed: "
                             "pip install 'microdenoise[napari]'")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed (microdenoise[dev])")
npe2 = pytest.importorskip("npe2")

import microdenoise as md  # noqa: E402
from microdenoise import InputError, create, denoise_array, load  # noqa: E402
from microdenoise.napari.forms import trainable_methods  # noqa: E402

MANIFEST = Path(md.__file__).parent / "napari" / "napari.yaml"
DOCS_SHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "napari_denoise.png"
FM2S = {"fast_steps": 20, "fast_crop": 32}
N2V = {"steps_per_epoch": 4, "patch_size": 32, "filters": 8}


@pytest.fixture(autouse=True)
def plugin() -> None:
    """The manifest registered with npe2 (where the package's entry point is not
    installed, e.g. PYTHONPATH=src), and the plugin enabled."""
    pm = npe2.PluginManager.instance()
    if "microdenoise" not in pm:
        pm.register(npe2.PluginManifest.from_file(MANIFEST))
    pm.enable("microdenoise")


@pytest.fixture
def viewer(make_napari_viewer):
    """A shown viewer with the FMD sample (File > Open Sample > microdenoise)."""
    v = make_napari_viewer(show=True)
    v.open_sample("microdenoise", "fmd_confocal_fish")
    return v


def dock(viewer, name: str):
    _, widget = viewer.window.add_plugin_dock_widget("microdenoise", name)
    return widget


def messages(start: int, severity: str | None = None) -> list[str]:
    """Notifications dispatched since ``start`` (an index into the records)."""
    from napari.utils.notifications import notification_manager

    return [n.message for n in notification_manager.records[start:]
            if severity is None or str(n.severity) == severity]


def record_count() -> int:
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


def not_blank(path: Path) -> None:
    import imageio.v3 as iio

    pixels = iio.imread(path)
    assert pixels.ndim == 3 and float(pixels[..., :3].std()) > 0


def test_the_widgets_open_from_the_plugin_and_list_the_registry(viewer) -> None:
    denoise, train, compare = (dock(viewer, n) for n in ("Denoise", "Train", "Compare"))
    boxes = [denoise.picker.method_box, train.picker.method_box, compare.picker.method_box]
    items = [[box.itemText(i) for i in range(box.count())] for box in boxes]
    assert items == [md.list_methods(), trainable_methods(), md.list_methods()]
    assert set(trainable_methods()) == {"n2v", "deconoising", "care", "clidim"}
    assert denoise.picker.method == "auto" and train.picker.method == "n2v"  # the default
    assert set(denoise.picker.form.editors) == set(md.registry.describe("auto")["params"])
    # Every field of the chosen method's config has an editor; presets come along.
    denoise.picker.set_method("fm2s")
    assert set(denoise.picker.form.editors) == set(md.registry.describe("fm2s")["params"])
    denoise.picker.set_method("fm2s", "confocal")
    assert denoise.picker.params() == {}  # the preset's values are shown, not passed
    train.picker.set_method("care")
    assert train.clean_box.isEnabled()


def test_denoise_gives_denoise_array_with_the_layers_scale_and_translate(
        viewer, qtbot, tmp_path) -> None:
    noisy = viewer.layers["FMD noisy"]
    noisy.scale, noisy.translate = (0.5, 0.25), (10.0, -3.0)
    widget = dock(viewer, "Denoise")
    widget.layer_box.setCurrentText("FMD noisy")
    assert widget.axes_edit.text() == "YX"
    widget.picker.set_method("fm2s")
    for key, value in FM2S.items():
        widget.picker.form.set_text(key, value)
    start = record_count()
    from qtpy.QtCore import Qt

    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    assert widget.busy and not widget.run_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert messages(start, "error") == []
    result = viewer.layers["FMD noisy (fm2s)"]
    assert widget.result.name == result.name  # (the widget sees the viewer through a proxy)
    expected = denoise_array(np.asarray(noisy.data), "fm2s", **FM2S)
    np.testing.assert_allclose(result.data, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(result.scale, noisy.scale)
    np.testing.assert_array_equal(result.translate, noisy.translate)
    assert result.metadata == noisy.metadata and result.metadata["source"].startswith("FMD")
    assert widget.progress.value() == widget.progress.maximum() == 1
    shot = tmp_path / "viewer.png"
    viewer.screenshot(str(shot), canvas_only=False)
    not_blank(shot)


@pytest.mark.skipif(not os.environ.get("MICRODENOISE_DOCS_SCREENSHOT"),
                    reason="refreshes docs/images/napari_denoise.png: set "
                    "MICRODENOISE_DOCS_SCREENSHOT=1")
def test_docs_screenshot_of_the_denoise_widget_on_the_sample(viewer, qtbot, tmp_path) -> None:
    from PIL import Image

    widget = dock(viewer, "Denoise")  # the default method, as a user first sees it
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    viewer.layers["FMD ground truth"].visible = False
    shot = tmp_path / "window.png"
    viewer.screenshot(str(shot), canvas_only=False)
    not_blank(shot)
    DOCS_SHOT.parent.mkdir(parents=True, exist_ok=True)
    Image.open(shot).convert("RGB").quantize(128).save(DOCS_SHOT, optimize=True)


def test_a_stack_runs_plane_by_plane_and_cancel_stops_between_planes(viewer, qtbot) -> None:
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((3, 48, 48), dtype=np.float32), name="stack")
    widget = dock(viewer, "Denoise")
    widget.layer_box.setCurrentText("stack")
    assert widget.axes_edit.text() == "ZYX"
    widget.picker.set_method("gaussian")
    widget.picker.form.set_text("sigma", 1.5)
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    expected = denoise_array(viewer.layers["stack"].data, "gaussian", axes="ZYX", sigma=1.5)
    np.testing.assert_allclose(viewer.layers["stack (gaussian)"].data, expected, atol=1e-6)
    assert widget.progress.maximum() == 3 == widget.progress.value()
    # Cancel: FM2S on 12 planes stops after the plane it is on; no layer is added.
    viewer.add_image(rng.random((12, 64, 64), dtype=np.float32), name="long")
    widget.layer_box.setCurrentText("long")
    widget.picker.set_method("fm2s")
    for key, value in FM2S.items():
        widget.picker.form.set_text(key, value)
    start = record_count()
    widget.run_button.click()
    widget.cancel_button.click()
    began = time.monotonic()
    qtbot.waitUntil(lambda: not widget.busy, timeout=20_000)
    assert time.monotonic() - began < 15
    assert "long (fm2s)" not in viewer.layers
    assert messages(start) == ["denoising cancelled"]
    assert widget.progress.value() < 12 and widget.run_button.isEnabled()


def test_bad_input_shows_the_clis_message_as_a_notification(viewer, qtbot, tmp_path) -> None:
    widget = dock(viewer, "Denoise")
    widget.picker.set_method("fm2s")
    widget.picker.form.set_text("fast_steps", "lots")
    with pytest.raises(InputError) as cli:
        create("fm2s", fast_steps="lots")  # what `--param fast_steps=lots` prints
    start = record_count()
    widget.run_button.click()
    assert not widget.busy and messages(start, "error") == [str(cli.value)]
    assert "must be a number" in str(cli.value)
    widget.picker.form.set_text("fast_steps", 20)
    widget.axes_edit.setText("QYX")
    start = record_count()
    widget.run_button.click()
    assert messages(start, "error")[0].startswith("invalid axes 'QYX'")
    # An error in the worker thread (a missing model file): the same one line.
    widget.axes_edit.setText("YX")
    widget.model_edit.setText(str(tmp_path / "missing.pt"))
    assert not widget.picker.isEnabled()
    start = record_count()
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=10_000)
    assert messages(start, "error") == [f"model file {str(tmp_path / 'missing.pt')!r} "
                                        "does not exist"]
    from napari.utils.notifications import ErrorNotification, notification_manager

    assert not any(isinstance(n, ErrorNotification) for n in notification_manager.records)


def test_train_n2v_then_denoise_with_the_saved_model(viewer, qtbot, tmp_path) -> None:
    widget = dock(viewer, "Train")
    widget.noisy_box.setCurrentText("FMD noisy")
    for key, value in {**N2V, "epochs": 3}.items():
        widget.picker.form.set_text(key, value)
    assert not widget.save_button.isEnabled()
    widget.train_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    model = widget.model
    assert model is not None and model.key == "n2v" and model.epoch == 3
    assert len(widget.history) == 3 and widget.progress.value() == 3
    assert widget.status.text().startswith("n2v trained after 3 epoch(s)")
    assert len(widget.plot.axes.lines) >= 1
    assert widget.export_button.isEnabled()
    package = tmp_path / "n2v.zip"
    widget.export(str(package))  # what the button's file dialog calls
    assert package.is_file()
    path = tmp_path / "n2v.pt"
    widget.save_model(str(path))
    denoise = dock(viewer, "Denoise")
    denoise.layer_box.setCurrentText("FMD noisy")
    denoise.model_edit.setText(str(path))
    denoise.run_button.click()
    qtbot.waitUntil(lambda: not denoise.busy, timeout=30_000)
    expected = denoise_array(np.asarray(viewer.layers["FMD noisy"].data), load(path))
    np.testing.assert_allclose(viewer.layers["FMD noisy (n2v)"].data, expected, atol=1e-5)
    from_package = denoise_array(np.asarray(viewer.layers["FMD noisy"].data), load(package))
    np.testing.assert_allclose(from_package, expected, atol=1e-5)


def test_cancel_stops_a_training_within_seconds_with_a_usable_model(viewer, qtbot) -> None:
    widget = dock(viewer, "Train")
    widget.noisy_box.setCurrentText("FMD noisy")
    for key, value in {**N2V, "epochs": 500}.items():
        widget.picker.form.set_text(key, value)
    widget.train_button.click()
    qtbot.waitUntil(lambda: len(widget.history) >= 1, timeout=60_000)
    assert "epoch 1/500" in widget.status.text() and "ETA" in widget.status.text()
    widget.cancel_button.click()
    began = time.monotonic()
    qtbot.waitUntil(lambda: not widget.busy, timeout=20_000)
    assert time.monotonic() - began < 10
    model = widget.model
    assert model is not None and 1 <= model.epoch < 500
    assert "stopped after" in widget.status.text() and widget.save_button.isEnabled()
    out = denoise_array(np.asarray(viewer.layers["FMD noisy"].data), model)
    assert out.shape == (256, 256) and np.isfinite(out).all()


def test_train_on_pairs_needs_the_clean_layer(viewer) -> None:
    widget = dock(viewer, "Train")
    widget.picker.set_method("care")
    widget.clean_box.setCurrentText("(none)")
    start = record_count()
    widget.train_button.click()
    assert not widget.busy
    assert messages(start, "error") == ["'care' is trained on noisy/clean pairs: choose the "
                                        "clean layer"]


def test_compare_scores_each_method_against_the_ground_truth(viewer, qtbot) -> None:
    widget = dock(viewer, "Compare")
    widget.noisy_box.setCurrentText("FMD noisy")
    widget.gt_box.setCurrentText("FMD ground truth")
    for name in ("gaussian", "median"):
        widget.picker.set_method(name)
        widget.add_button.click()
    assert [widget.list.item(i).text() for i in range(widget.list.count())] == \
        ["gaussian", "median"]
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    noisy = np.asarray(viewer.layers["FMD noisy"].data)
    gt = np.asarray(viewer.layers["FMD ground truth"].data).astype(np.float64)
    rng = md.metrics.gt_range(gt)
    want = [("noisy input", md.metrics.psnr(noisy, gt, data_range=rng))]
    want += [(m, md.metrics.psnr(denoise_array(noisy, m), gt, data_range=rng))
             for m in ("gaussian", "median")]
    assert [r[0] for r in widget.rows] == [w[0] for w in want]
    np.testing.assert_allclose([r[1] for r in widget.rows], [w[1] for w in want], rtol=1e-6)
    assert widget.table.rowCount() == 3 and widget.table.item(1, 0).text() == "gaussian"
    assert all(widget.rows[0][1] < r[1] for r in widget.rows[1:])  # denoising helps
    assert "FMD noisy (gaussian)" in viewer.layers and "FMD noisy (median)" in viewer.layers


def test_compare_without_ground_truth_ranks_by_estimated_mse(viewer, qtbot) -> None:
    widget = dock(viewer, "Compare")
    widget.noisy_box.setCurrentText("FMD noisy")
    assert widget.gt_box.currentText() == "(none)" == widget.second_box.currentText()
    widget.picker.set_method("gaussian")
    widget.picker.form.set_text("sigma", 3)
    widget.add_button.click()
    widget.picker.set_method("median")
    widget.add_button.click()
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    noisy = np.asarray(viewer.layers["FMD noisy"].data)
    want = md.compare(noisy, methods=["gaussian:sigma=3", "median"], grid=False)
    got = widget.result
    assert got is not None and got.recommended == want.recommended
    assert [r.label for r in got.rows] == [r.label for r in want.rows]
    np.testing.assert_allclose([r.estimate for r in got.rows], [r.estimate for r in want.rows])
    shown = {"gaussian:sigma=3": "gaussian (sigma=3)", "median": "median"}  # the list's
    assert [widget.table.item(i, 0).text() for i in range(widget.table.rowCount())] == \
        [shown[r.label] for r in want.rows]
    assert widget.table.horizontalHeaderItem(1).text() == "est. MSE"
    assert widget.progress.value() == widget.progress.maximum() == 2
    assert widget.status.text() == (f"recommended: {shown[want.recommended]}: {want.reason}"
                                    if want.recommended else want.reason)
    assert "FMD noisy (gaussian (sigma=3))" in viewer.layers
    start = record_count()
    widget.add_button.click()  # median again
    assert messages(start, "error") == ["median is already in the list"]
    # the noisy layer as its own second capture is refused, with the reason
    widget.second_box.setCurrentText("FMD noisy")
    start = record_count()
    widget.run_button.click()
    assert not widget.busy
    assert messages(start, "error") == ["the second capture is the noisy layer itself: "
                                        "choose another layer or (none)"]


def test_an_rgb_layer_is_denoised_channel_by_channel(viewer, qtbot) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    viewer.add_image(rgb, name="rgb", rgb=True)
    widget = dock(viewer, "Denoise")
    widget.layer_box.setCurrentText("rgb")
    assert widget.axes_edit.text() == "CYX"
    widget.picker.set_method("median")
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    out = viewer.layers["rgb (median)"]
    assert out.rgb and out.data.dtype == np.uint8 and out.data.shape == rgb.shape
    planes = denoise_array(np.moveaxis(rgb, -1, 0), "median", axes="CYX")
    np.testing.assert_array_equal(out.data, np.clip(np.rint(np.moveaxis(planes, 0, -1)),
                                                    0, 255).astype(np.uint8))


def test_a_third_party_package_runs_only_with_the_trust_box(viewer, qtbot, tmp_path) -> None:
    """Issue #27: a package is code; the box says so, starts cleared and clears again
    when the model path changes."""
    pytest.importorskip("bioimageio.core")
    from .test_bmz import third_party

    package, _ = third_party(tmp_path)
    widget = dock(viewer, "Denoise")
    widget.layer_box.setCurrentText("FMD noisy")
    assert not widget.trust_box.isEnabled() and not widget.trust_box.isChecked()
    assert "could read, change or delete" in widget.trust_box.toolTip()
    widget.model_edit.setText(str(package))
    assert widget.trust_box.isEnabled() and not widget.trust_box.isChecked()
    start = record_count()
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    refused = messages(start, "error")
    assert len(refused) == 1 and "TorchScript, which is code" in refused[0]
    assert "Trust the model's code" in refused[0]
    assert "FMD noisy (bmz)" not in viewer.layers
    widget.trust_box.setChecked(True)
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    expected = denoise_array(np.asarray(viewer.layers["FMD noisy"].data),
                             load(package, trust=True))
    np.testing.assert_allclose(viewer.layers["FMD noisy (bmz)"].data, expected, atol=1e-5)
    widget.model_edit.setText(str(tmp_path / "another.zip"))
    assert not widget.trust_box.isChecked()  # trust went to one file, not to the box


def test_the_default_says_what_it_chose_and_keeps_it_with_the_result(viewer, qtbot) -> None:
    """Issue #28: auto, the widget's default, shows its choice and why, gives the BM3D
    licence notice once per run, and the result layer's metadata keeps the choice."""
    pytest.importorskip("bm3d")
    widget = dock(viewer, "Denoise")
    widget.layer_box.setCurrentText("FMD noisy")
    assert widget.picker.method == "auto"
    for _ in range(2):  # each run says it once
        start = record_count()
        widget.run_button.click()
        qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
        said = messages(start)
        assert sum("non-commercial use only" in m for m in said) == 1, said
        assert any(m.startswith("auto: white noise") and "VST-BM3D" in m for m in said)
    result = viewer.layers["FMD noisy (auto)"]
    assert "VST-BM3D" in result.metadata["microdenoise_choice"]
    expected = denoise_array(np.asarray(viewer.layers["FMD noisy"].data), "bm3d")
    assert float(np.mean(np.abs(np.asarray(result.data) - expected))) < 1e-3
