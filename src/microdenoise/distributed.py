"""Dask: one big array over many chunks, or many files over a cluster.

:func:`denoise_dask` denoises a :class:`dask.array.Array` lazily with
``map_overlap``: the normalization statistics are computed globally first
(per channel, as :func:`microdenoise.denoise_array` does), each chunk gets a
margin of the method's receptive field (``boundary="none"``: the image
border is treated as in untiled prediction), and the method is built once
per worker process, not once per chunk (a small cache keyed by its digest and
device: :mod:`microdenoise.dask_models`). For a local method the result equals
``denoise_array``.

:func:`denoise_files_distributed` runs one task per file on a Dask cluster
(``local:N`` starts N worker processes on this machine; ``tcp://HOST:PORT``
joins a running scheduler). Workers write the outputs themselves, atomically,
with :func:`microdenoise.denoise_file`; a fitted model is saved once beside the
outputs and loaded once per worker process, and a model loaded from a package (a
BioImage Model Zoo model that is no registered method) is loaded once per worker
process from that package, with the trust the user gave it. A file that fails
(bad input, or a bug) is reported as the local path reports it, without a retry
and without a worker traceback in the logs: the task returns the error instead of
raising it.
Outputs that already exist are kept, so an interrupted run resumes. A worker
process that dies (killed, out of memory) is restarted by its nanny and its
task rerun elsewhere; a file that kills more than ``retries`` workers (local
clusters; ``distributed.scheduler.allowed-failures`` of a running scheduler)
is reported as failed. Notices a worker raises (constant planes, clipped
pixels) and its info lines come back with the result and are re-issued here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import core, io
from . import feedback as fb
from .dask_models import ModelFile, Package, Shipped, ship_model, ship_to_files, worker_model
from .errors import InputError, NoticeWarning
from .normalize import Normalizer
from .pipeline import BatchResult, default_axes, start_batch
from .registry import DEFAULT_METHOD, Denoiser
from .routing import fit_picks, unit_methods

__all__ = ["denoise_dask", "denoise_files_distributed"]


def _denoise_block(block: np.ndarray, *, models: list[Shipped],
                   plan: list[tuple[int, tuple[Normalizer, Normalizer] | None, float]],
                   positions: dict[tuple[Any, ...], int], vax: int | None, device: str,
                   block_info: dict[Any, Any] | None = None) -> np.ndarray:
    """One chunk with its margins: one unit (chunks are one plane, or one volume, deep);
    a constant unit is passed through."""
    loc = block_info[0]["chunk-location"] if block_info else (0,) * block.ndim
    k = positions[tuple(None if i == vax else int(loc[i]) for i in range(block.ndim - 2))]
    model, pair, value = plan[k]
    if pair is None:
        return np.full(block.shape, value, dtype=np.float32)
    return core.denoise_block(worker_model(models[model], device), block, pair,
                              volume=vax is not None)


def denoise_dask(
    array: Any,
    method: str | Denoiser = DEFAULT_METHOD,
    *,
    axes: str | None = None,
    preset: str | None = None,
    params: dict[str, Any] | None = None,
    seed: int | None = None,
    device: str | None = None,
    fit_on: int | None = None,
) -> Any:
    """Denoise a Dask array lazily, chunk by chunk; return a float32 Dask array.

    The same prediction as :func:`microdenoise.denoise_array` (one core,
    :mod:`microdenoise.core`): global normalization per channel (per plane for models
    that scale each plane by itself), methods fitted
    per image fitted on each whole plane (or volume) before the graph is built
    (or once on ``fit_on`` planes), and each chunk denoised with a margin of the
    method's receptive field on the method's pooling grid. For a local method
    the result equals ``denoise_array``.

    Parameters
    ----------
    array : dask.array.Array
        Image or stack (any chunking; chunks are made one plane deep, or one whole
        volume deep along Z (else T) for 3D methods).
    method, preset, params, seed, device
        As in :func:`microdenoise.denoise_array`.
    axes : str, optional
        Letters from STCZYX, one per dimension; default ``YX`` with ``S`` in front.
    fit_on : int, optional
        Fit methods fitted per image once, on this many evenly spaced planes
        (default: on every plane, as ``denoise_array``).

    Returns
    -------
    dask.array.Array
        float32, the input's shape and chunks along YX, in the input's intensity units.
    """
    import dask.array as da

    if not isinstance(array, da.Array):
        array = da.asarray(array)
    if array.ndim < 2:
        raise InputError(f"the array has shape {array.shape}; an image needs at least 2 axes")
    axes = io.check_axes(axes or default_axes(array.ndim), ndim=array.ndim, shape=array.shape)
    den, fresh = core.prepare(method, preset=preset, params=params, seed=seed)
    device = core.run_device(den, device)  # None: the model's own
    if den.upscale != 1:
        raise InputError(f"denoise_dask keeps the array's shape; this {den.key} model writes "
                         f"{den.upscale}x larger images: use denoise_array or denoise_file")
    if fit_on is not None and fit_on < 1:
        raise InputError("fit_on must be at least 1")
    lay = core.layout(tuple(array.shape), axes, den)
    units = lay.units()
    constant = core.constant_units(array, lay)
    for k, value in constant.items():
        fb.notice(f"{lay.describe(units[k], 'the array')} is constant (value {value:g}): "
                  "passed through unchanged")
    image_norms = core.image_normalizers(den, array, lay, constant)
    work = [k for k in range(len(units)) if k not in constant]
    # The method of each unit (a routing method, the default, chooses one per channel)
    # and its fit_on group, as the core's loop does (routing.unit_methods).
    bases, groups = unit_methods(den, array, [units[k] for k in work], lay.cax,
                                 lambda u: core.normalizers(den, image_norms,
                                                            lay.channel(u))[0], fresh=fresh)
    models: list[Denoiser] = []
    model_of: dict[int, int] = {}
    per_image = fresh and den.fit_policy == "per_image"
    with core.on_device(den, device):
        for g in dict.fromkeys(groups):
            members = [k for k, h in zip(work, groups, strict=True) if h == g]
            base = bases[groups.index(g)]
            base.device = device
            if not (per_image and base.fit_policy == "per_image"):
                fitted = [base]
            elif fit_on is not None:
                fitted = [core.fit_unit(base, array, [units[members[i]] for i in
                                                      fit_picks(len(members), fit_on)],
                                        lay, image_norms)]
            else:
                fitted = [core.fit_unit(base, array, [units[k]], lay, image_norms)
                          for k in members]
            for j, k in enumerate(members):
                model_of[k] = len(models) + (j if len(fitted) > 1 else 0)
            models.extend(fitted)
    shipped = [ship_model(model) for model in models]
    plan = [(model_of[k], core.normalizers(models[model_of[k]], image_norms,
                                           lay.channel(u)), 0.0)
            if k in model_of else (-1, None, constant[k]) for k, u in enumerate(units)]
    positions = {tuple(None if isinstance(i, slice) else i for i in u): k
                 for k, u in enumerate(units)}
    # A U-Net's pooling grid must fall on the same pixels in every block as in the whole
    # image (see tiling.plan_tiles): chunks and margins on multiples of tile_multiple.
    m = den.tile_multiple
    rf = -(-den.receptive_field // m) * m
    chunks: dict[int, Any] = {i: (-1 if i == lay.vax else 1) for i in range(array.ndim - 2)}
    if m > 1:
        for i in (array.ndim - 2, array.ndim - 1):
            chunks[i] = _aligned_chunks(array.shape[i], array.chunks[i][0], m, rf)
    array = array.rechunk(chunks)
    if den.global_field and max(len(array.chunks[-1]), len(array.chunks[-2])) > 1:
        core.warn_global(den, "Dask chunks")
    depth = {i: (rf if i >= array.ndim - 2 else 0) for i in range(array.ndim)}
    return da.map_overlap(_denoise_block, array, depth=depth, boundary="none",
                          dtype=np.float32, models=shipped, plan=plan, positions=positions,
                          vax=lay.vax, device=device)


def _aligned_chunks(n: int, size: int, multiple: int, depth: int) -> tuple[int, ...]:
    """Chunks of an axis of length ``n`` that start on multiples of ``multiple``, each at
    least ``depth`` long (map_overlap would otherwise rechunk them off the grid)."""
    size = max(multiple, depth, size // multiple * multiple)
    chunks = [size] * (n // size)
    rest = n - sum(chunks)
    if rest and (rest >= depth or not chunks):
        chunks.append(rest)
    elif rest:
        chunks[-1] += rest
    return tuple(chunks)


def _client(scheduler: str, timeout: float, allowed_failures: int = 1) -> Any:
    import dask
    from distributed import Client, LocalCluster

    if scheduler.startswith("local:"):
        try:
            workers = int(scheduler.split(":", 1)[1])
        except ValueError:
            workers = 0
        if workers < 1:
            raise InputError(f"--scheduler {scheduler!r}: use local:N with N >= 1 workers")
        # One task per worker at a time: a file is seconds of work, and a worker that
        # dies then takes only its running task's retry budget with it.
        with dask.config.set({"distributed.scheduler.worker-saturation": 1.0,
                              "distributed.scheduler.allowed-failures": allowed_failures}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
        return Client(cluster)
    if not scheduler.startswith("tcp://"):
        raise InputError(f"--scheduler {scheduler!r}: use local:N or tcp://HOST:PORT")
    try:
        return Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"no Dask scheduler answered at {scheduler} within {timeout:g} s "
                         f"({type(exc).__name__}); start one (`dask scheduler`, then "
                         "`dask worker ADDRESS`), check the address, or use --scheduler "
                         "local:N") from None


@dataclass(frozen=True)
class _Outcome:
    """What a task sends back: the output or the error, and what it had to say."""

    written: str | None
    error: str | None = None
    internal: bool = False
    notices: tuple[str, ...] = ()
    infos: tuple[str, ...] = ()


def _denoise_one(path: str, target: str, method: str | ModelFile | Package | Denoiser,
                 options: dict[str, Any], label: str | None = None, strict: bool = False
                 ) -> _Outcome:
    """Run one file on a worker; errors are returned, not raised (no retry, no traceback)."""
    from .pipeline import denoise_file

    if not options.get("overwrite", False) and Path(target).exists():
        # Written by this batch: the task is rerun when the worker holding its result
        # died. (Outputs that existed before the batch were kept when it was planned.)
        return _Outcome(target)
    infos: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoticeWarning)
        try:
            if isinstance(method, ModelFile | Package):
                method = worker_model(method, None)  # denoise_file applies options["device"]
            with fb.reporting(fb.Feedback(label=label, strict=strict, info=infos.append)):
                written: str | None = str(denoise_file(path, target, method, **options))
            error, internal = None, False
        except InputError as exc:
            written, error, internal = None, str(exc), False
        except Exception as exc:  # noqa: BLE001  (a bug: reported, not retried)
            written, error, internal = None, f"{type(exc).__name__}: {exc}", True
    notices = tuple(str(w.message) for w in caught if issubclass(w.category, NoticeWarning))
    return _Outcome(written, error, internal, notices, tuple(infos))


def denoise_files_distributed(
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    method: str | Denoiser = DEFAULT_METHOD,
    *,
    scheduler: str = "local:2",
    timeout: float = 10.0,
    retries: int = 1,
    on_file: Callable[[Path, Path | None, str | None], None] | None = None,
    on_kept: Callable[[Path, Path], None] | None = None,
    **options: Any,
) -> BatchResult:
    """Denoise every image in ``inputs`` into ``out_dir``, one Dask task per file.

    Parameters
    ----------
    inputs, out_dir, method, on_file, on_kept, options
        As in :func:`microdenoise.denoise_files` (``options`` go to ``denoise_file``).
    scheduler : str
        ``"local:N"``: a local cluster of N single-threaded worker processes;
        ``"tcp://HOST:PORT"``: a running Dask scheduler.
    timeout : float
        Seconds to wait for the scheduler at ``tcp://`` before an :class:`InputError`.
    retries : int
        Local clusters: times a file may kill its worker (out of memory, a crash in
        native code) and be rerun elsewhere before it is reported. A file that
        raises an error is reported at once, never rerun.

    Returns
    -------
    BatchResult
        ``skipped`` lists outputs that existed (not redone unless ``overwrite=True``).
    """
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    todo, result, out_dir = start_batch(inputs, out_dir, on_file=on_file, on_kept=on_kept,
                                        **options)
    if not todo:
        return result
    if isinstance(method, Denoiser) and options.get("device") is None:
        # A model travels as a file or a path; it runs on its own device, as locally.
        options = {**options, "device": method.device}
    shipped = ship_to_files(method, out_dir)
    try:
        client = _client(scheduler, timeout, allowed_failures=retries)
    except BaseException:
        if isinstance(shipped, ModelFile):
            Path(shipped.path).unlink(missing_ok=True)
        raise
    try:
        report = fb.current()
        futures = {client.submit(_denoise_one, str(p), str(t), shipped, options, report.label,
                                 report.strict, pure=False): p for p, t in todo}
        for future in as_completed(futures):
            path = futures[future]
            try:
                outcome = future.result()
            except KilledWorker:
                died = InputError("every Dask worker that ran it died (out of memory? a "
                                  "crash in native code?); see the worker logs, or give "
                                  "the workers more memory")
                result.record(path, None, died, on_file)
                continue
            except Exception as exc:  # noqa: BLE001  (report per file, go on)
                result.record(path, None, exc, on_file, internal=False)
                continue
            for line in outcome.infos:
                if report.info is not None:
                    report.info(line)
            for line in outcome.notices:
                fb.notice_once(line)  # a run-wide notice (a licence) once, not per file
            if outcome.error is not None:
                error = (RuntimeError(outcome.error) if outcome.internal
                         else InputError(outcome.error))
                result.record(path, None, error, on_file)
            else:
                result.record(path, Path(str(outcome.written)), None, on_file)
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None and scheduler.startswith("local:"):
            cluster.close()
        if isinstance(shipped, ModelFile):
            Path(shipped.path).unlink(missing_ok=True)
    return result
