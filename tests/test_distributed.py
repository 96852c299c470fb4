"""Dask: map_overlap equals denoise_array; files over a real local cluster; bad schedulers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

from microdenoise import (
    InputError,
    create,
    dask_models,
    denoise_array,
    denoise_files,
    read_image,
    write_image,
)
from microdenoise import distributed as mdd
from microdenoise.methods.local_filters import Median

from .conftest import blobs, poisson_gaussian


def _noisy(shape=(90, 110), seed=0) -> np.ndarray:
    return (poisson_gaussian(blobs(shape, seed=seed), seed=seed) * 3000 + 100).astype(np.uint16)


@pytest.fixture(scope="module")
def n2v() -> object:
    """A tiny trained N2V: a model with tensor state (a filter has none, so it cannot show
    a cache keyed on pickled tensors, which differ on every call)."""
    return create("n2v", epochs=1, steps_per_epoch=4, batch_size=4, patch_size=32,
                  filters=8).fit(_noisy((64, 64), seed=9).astype(np.float32))


@pytest.mark.parametrize(("method", "params"), [("median", {"size": 5}), ("gaussian", {})])
def test_map_overlap_equals_denoise_array(method: str, params: dict) -> None:
    image = _noisy()
    lazy = da.from_array(image, chunks=(40, 35))
    out = mdd.denoise_dask(lazy, method, params=params)
    assert isinstance(out, da.Array) and out.dtype == np.float32
    with dask.config.set(scheduler="synchronous"):
        result = out.compute()
    np.testing.assert_allclose(result, denoise_array(image, method, params=params),
                               rtol=1e-6, atol=1e-3)


def test_channels_normalized_globally_and_method_built_once() -> None:
    stack = np.stack([_noisy((50, 60), seed=s) * (s + 1) for s in range(3)])
    lazy = da.from_array(stack, chunks=(3, 25, 30))
    dask_models.MODELS.clear()
    before = dask_models.MODELS.built
    with dask.config.set(scheduler="synchronous"):
        result = mdd.denoise_dask(lazy, "median", axes="CYX").compute()
    assert dask_models.MODELS.built - before == 1  # one method for all 3 x 2 x 2 chunks
    np.testing.assert_allclose(result, denoise_array(stack, "median", axes="CYX"),
                               rtol=1e-6, atol=1e-3)


def test_a_model_with_tensor_state_is_built_once_across_calls(n2v: object) -> None:
    """Two denoise_dask calls with one trained network (tensors in its state) build it
    once: the cache key is a digest of the tensors' bytes, not of their pickles."""
    stack = np.stack([_noisy((64, 64), seed=s) for s in range(2)]).astype(np.float32)
    dask_models.MODELS.clear()
    before = dask_models.MODELS.built
    with dask.config.set(scheduler="synchronous"):
        first = mdd.denoise_dask(da.from_array(stack, chunks=(1, 64, 64)), n2v,
                                 axes="SYX").compute()
        second = mdd.denoise_dask(da.from_array(stack, chunks=(1, 32, 64)), n2v,
                                  axes="SYX").compute()
    assert dask_models.MODELS.built - before == 1 and len(dask_models.MODELS) == 1
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, denoise_array(stack, n2v, axes="SYX"), rtol=1e-5,
                               atol=1e-4)


def test_unreachable_scheduler_is_a_clear_error(tmp_path: Path) -> None:
    src = write_image(tmp_path / "a.tif", _noisy((32, 32)), dtype="uint16")
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"no Dask scheduler answered at tcp://127\.0\.0\.1:9"):
        mdd.denoise_files_distributed([src], tmp_path / "out", "median",
                                      scheduler="tcp://127.0.0.1:9", timeout=1)
    assert time.perf_counter() - t0 < 30
    with pytest.raises(InputError, match="local:N"):
        mdd.denoise_files_distributed([src], tmp_path / "out", "median", scheduler="ssh://x")


def test_local_cluster_equals_single_process_and_resumes(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    for i in range(3):
        write_image(inputs / f"img{i}.tif", _noisy((48, 56), seed=i), dtype="uint16")
    (inputs / "bad.tif").write_bytes(b"II*\x00garbage" * 10)
    single = denoise_files([inputs], tmp_path / "single", "median")
    (tmp_path / "dist").mkdir()
    write_image(tmp_path / "dist" / "img0.tif", np.zeros((8, 8), np.float32))  # "done" earlier
    # A fitted model is saved once beside the outputs, loaded once per worker and removed
    # at the end.
    result = mdd.denoise_files_distributed([inputs], tmp_path / "dist", create("median"),
                                           scheduler="local:2")
    assert [p.name for p in result.skipped] == ["img0.tif"]
    assert sorted(p.name for p in result.written) == ["img1.tif", "img2.tif"]
    assert [(p.name, "corrupt" in m) for p, m in result.failed] == [("bad.tif", True)]
    for name in ("img1.tif", "img2.tif"):
        np.testing.assert_array_equal(read_image(tmp_path / "dist" / name).data,
                                      read_image(tmp_path / "single" / name).data)
    assert len(single.written) == 3
    assert not [p for p in (tmp_path / "dist").iterdir() if p.name.startswith(".")]


def test_cli_scheduler_unreachable_exits_2(tmp_path: Path, capsys, monkeypatch) -> None:
    from microdenoise.cli import main

    monkeypatch.setattr(mdd.denoise_files_distributed, "__kwdefaults__",
                        {**mdd.denoise_files_distributed.__kwdefaults__, "timeout": 1})
    src = write_image(tmp_path / "a.tif", _noisy((32, 32)), dtype="uint16")
    code = main(["denoise", str(src), "-o", str(tmp_path / "o"), "--method", "median",
                 "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    assert "no Dask scheduler answered at tcp://127.0.0.1:9" in capsys.readouterr().err


POISON = (40, 44)  # an image of this shape kills every worker that denoises it


class _DiesOnce(Median):
    """A median filter whose worker process dies (``os._exit``) on the batch's first call,
    and on every call for an image of shape ``POISON``: a crash no ``except`` can catch."""

    marker = ""

    def denoise(self, image: np.ndarray) -> np.ndarray:
        if image.shape == POISON:
            os._exit(3)
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return super().denoise(image)
        os._exit(3)  # the first call of the whole batch, in whichever worker runs it


def test_a_dying_worker_is_replaced_and_the_batch_completes(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    images = {f"img{i}.tif": _noisy((48, 56), seed=i) for i in range(4)}
    for name, image in images.items():
        write_image(inputs / name, image, dtype="uint16")
    write_image(inputs / "poison.tif", _noisy(POISON, seed=9), dtype="uint16")
    method = _DiesOnce()
    method.marker = str(tmp_path / "died")
    messages: dict[str, str | None] = {}
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        result = mdd.denoise_files_distributed(
            [inputs], tmp_path / "out", method, scheduler="local:2",
            on_file=lambda path, written, error: messages.update({path.name: error}))
    assert Path(method.marker).exists()  # a worker really died mid-task
    assert sorted(p.name for p in result.written) == sorted(images)
    for name, image in images.items():  # every output complete and right
        np.testing.assert_array_equal(read_image(tmp_path / "out" / name).data,
                                      denoise_array(image, "median"))
    assert [p.name for p, _ in result.failed] == ["poison.tif"]
    assert messages["poison.tif"] is not None and "worker" in messages["poison.tif"]
    assert "died" in messages["poison.tif"] and "internal error" not in messages["poison.tif"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(images)


def test_dask_array_passes_constant_planes_through_like_the_array_path() -> None:
    """A blank frame in a Dask stack: passed through with a notice, the rest denoised as
    ``denoise_array`` does (the constant plane left out of the statistics)."""
    import warnings

    from microdenoise import denoise_array
    from microdenoise.errors import NoticeWarning

    rng = np.random.default_rng(0)
    stack = rng.gamma(4.0, 50.0, size=(3, 40, 48)).astype(np.float32)
    stack[1] = 7.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lazy = mdd.denoise_dask(da.from_array(stack, chunks=(1, 20, 24)), "median", axes="TYX")
        got = lazy.compute(scheduler="synchronous")
    assert any(issubclass(w.category, NoticeWarning) and "plane T=1" in str(w.message)
               for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoticeWarning)
        expected = denoise_array(stack, "median", axes="TYX")
    np.testing.assert_array_equal(got[1], np.full((40, 48), 7.0, np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-4)


def test_a_trained_network_over_a_local_cluster_equals_the_local_path(tmp_path: Path,
                                                                      n2v: object) -> None:
    """A model with tensor state travels as a file saved once and gives the local output."""
    inputs = tmp_path / "in"
    for i in range(2):
        write_image(inputs / f"img{i}.tif", _noisy((48, 56), seed=i), dtype="uint16")
    single = denoise_files([inputs], tmp_path / "single", n2v)
    result = mdd.denoise_files_distributed([inputs], tmp_path / "dist", n2v,
                                           scheduler="local:1")
    assert not result.failed and len(result.written) == len(single.written) == 2
    for name in ("img0.tif", "img1.tif"):
        np.testing.assert_array_equal(read_image(tmp_path / "dist" / name).data,
                                      read_image(tmp_path / "single" / name).data)
    assert not [p for p in (tmp_path / "dist").iterdir() if p.name.startswith(".")]
