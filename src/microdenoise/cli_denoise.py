"""``microdenoise denoise``: its options, their checks, and what it says while it works.

Everything it prints besides the written paths (stdout, one per line, as each
file finishes) goes to stderr: the method and scaling in use (a line per batch,
and again when a file differs), progress inside a long file (a tqdm bar in a
terminal, else a timestamped line at most every ~5 s), kept outputs, notices
and failures.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

from . import feedback as fb
from .config import parse_params
from .errors import InputError
from .registry import DEFAULT_METHOD, Denoiser
from .training import DEVICES

EXIT_FAILED_FILES = 1
SAFE_DTYPES = ("float32", "same")
PROGRESS_DELAY_S = 3.0  # a file quicker than this shows no progress inside it
PROGRESS_EVERY_S = 5.0  # without a terminal, at most one progress line this often


def add_parser(sub: Any) -> None:
    """Add the ``denoise`` subcommand to the subparsers ``sub``."""
    d = sub.add_parser("denoise", help="denoise image files or folders",
                       description="Denoise TIFF/PNG/NPY/OME-Zarr images; outputs are "
                                   "OUTDIR/<name>.tif (OUTDIR/<name>.ome.zarr for OME-Zarr) "
                                   "with axes and pixel size kept. With --tile or "
                                   "--max-memory, files are streamed tile by tile. Outputs "
                                   "that exist are kept, so a rerun resumes a batch.")
    d.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    d.add_argument("-o", "--out", required=True, type=Path, metavar="OUTDIR",
                   help="output folder (created if missing)")
    d.add_argument("--method", default=None,
                   help="method name (see `list`); default auto: measure the noise of each "
                        "channel, then VST-BM3D for pixel-independent noise, FM2S for "
                        "spatially correlated noise (without the bm3d package: FM2S)")
    d.add_argument("--pairs-axis", default=None, metavar="AXIS",
                   help="with --method auto: instead of routing by the noise, compare "
                        "methods on the first input (`compare`) and use the winner; "
                        "consecutive planes along AXIS are captures of one static scene "
                        "(two-capture estimate)")
    d.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="with --method auto: compare methods on the first input within "
                        "this time (`compare`, single-image estimate unless --pairs-axis) "
                        "and use the winner, instead of routing by the noise")
    d.add_argument("--preset", default=None, help="named parameter set of the method")
    d.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="method parameter, repeatable (e.g. --param schedule=paper)")
    d.add_argument("--seed", type=int, default=None, help="random seed (same seed, same output)")
    d.add_argument("--model", type=Path, default=None,
                   help="a saved model to apply instead of --method: a .pt from `train`, or a "
                        "BioImage Model Zoo package (.zip: ours load as they are; a third "
                        "party's only with --trust-model)")
    d.add_argument("--trust-model", action="store_true",
                   help="let the --model package run its own code (TorchScript weights, or "
                        "an architecture that is not microdenoise's): a package is a program, "
                        "so only for packages from a source you trust")
    d.add_argument("--tile", type=int, default=None, help="tile size for tiled prediction")
    d.add_argument("--overlap", type=int, default=None,
                   help="tile overlap (default and minimum: the method's receptive field)")
    d.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="stream large images tile by tile within about SIZE of memory "
                        "(e.g. 2GB); picks --tile when it is not given")
    d.add_argument("--device", choices=DEVICES, default="auto")
    d.add_argument("--dtype", default="float32",
                   help="output type: float32 (default) or same (the input's, rounded and "
                        "clipped: clipped pixels are counted and reported); another type "
                        "(uint8, uint16, ...) only with --allow-clipping")
    d.add_argument("--allow-clipping", action="store_true",
                   help="accept a --dtype that can clip intensities (e.g. uint8 for 16-bit "
                        "data); each file then says how many pixels were clipped")
    d.add_argument("--axes", default=None, help="axes of the input, letters from STCZYX")
    d.add_argument("--fit-on", type=int, default=None, metavar="K",
                   help="zero-shot methods on stacks: fit once on K planes, apply to all")
    d.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    d.add_argument("--recursive", action="store_true",
                   help="search subfolders of input folders too")
    d.add_argument("--strict", action="store_true",
                   help="fail a file with a constant (blank) plane instead of passing the "
                        "plane through unchanged with a warning")
    d.add_argument("--pyramid", type=int, default=1, metavar="N",
                   help="write OME-Zarr outputs (<name>.ome.zarr) with N resolution levels, "
                        "each a 2x2 mean of the one before (default 1: no pyramid)")
    d.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run one Dask task per file: local:N (N worker processes here) or "
                        "tcp://HOST:PORT (a running scheduler)")


def cli_words(message: str) -> str:
    """API spellings in a message (``axes=``) as the command's options (``--axes``)."""
    message = message.replace("axes= (e.g. 'TZYX') or --axes", "--axes (e.g. TZYX)")
    message = message.replace("pass axes= (e.g. 'TZYX')", "pass --axes (e.g. TZYX)")
    message = message.replace(" (recursive=True)", "")
    return message.replace("axes=", "--axes ")


def check_dtype(dtype: str, allow_clipping: bool) -> None:
    """``float32`` and ``same`` always; other real types only with ``--allow-clipping``."""
    import numpy as np

    if dtype in SAFE_DTYPES:
        return
    try:
        ok = np.dtype(dtype).kind in "uif"
    except TypeError:
        ok = False
    if not ok:
        raise InputError(f"--dtype {dtype!r}: use float32 or same (or, with --allow-clipping, "
                         "a numeric type such as uint8 or uint16)")
    if not allow_clipping:
        raise InputError(f"--dtype {dtype} can clip and round intensities (e.g. 16-bit data "
                         "above 255 in uint8); use --dtype float32 or same, or add "
                         "--allow-clipping to accept it (each file then reports its "
                         "clipped pixels)")


def check_options(args: argparse.Namespace, method: Denoiser) -> None:
    """Refuse bad options before any work (exit 2), rather than once per file."""
    from .io import check_axes
    from .training import resolve_device

    check_dtype(args.dtype, args.allow_clipping)
    resolve_device(args.device)
    if args.axes is not None:
        check_axes(args.axes)
    if args.fit_on is not None and args.fit_on < 1:
        raise InputError("--fit-on must be at least 1")
    if args.pyramid < 1:
        raise InputError(f"--pyramid takes a number of levels >= 1, got {args.pyramid}")
    rf = method.receptive_field
    if args.overlap is not None and args.overlap < rf:
        raise InputError(f"--overlap {args.overlap} is below {method.key}'s receptive field "
                         f"({rf} px): tiles would show seams; use --overlap {rf} or more")
    overlap = rf if args.overlap is None else args.overlap
    if args.tile is not None and args.tile <= 2 * overlap:
        raise InputError(f"--tile {args.tile} must be larger than twice the overlap "
                         f"({overlap} px)")
    if args.max_memory is not None and method.upscale != 1:
        raise InputError(f"--max-memory streams same-size outputs; this model writes "
                         f"{method.upscale}x larger images: drop --max-memory (use --tile "
                         "to bound the network's memory)")
    if args.max_memory is not None and args.tile is None:
        from .streaming import tile_for_memory

        tile_for_memory(args.max_memory, method, overlap=overlap)


class Progress:
    """Progress inside a file that takes more than ``delay`` seconds, on ``stream``.

    In a terminal a tqdm bar (removed when the file is done); otherwise a
    timestamped line at most every ``every`` seconds, so batch-job logs show life.
    """

    def __init__(self, stream: TextIO, *, delay: float | None = None,
                 every: float | None = None) -> None:
        delay = PROGRESS_DELAY_S if delay is None else delay
        every = PROGRESS_EVERY_S if every is None else every
        self.stream, self.delay, self.every = stream, delay, every
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.name = ""
        self.start = self.last = 0.0
        self.bar: Any = None

    def __call__(self, done: float, total: int, what: str) -> None:
        now = time.monotonic()
        name = fb.current().name
        if name != self.name:
            self.close()
            self.name, self.start, self.last = name, now, now
        if now - self.start < self.delay:
            return
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=Path(name).name, unit=what.split()[0],
                                file=self.stream, leave=False)
            self.bar.n = round(done, 2)
            self.bar.refresh()
        elif now - self.last >= self.every:
            self.last = now
            print(f"{time.strftime('%H:%M:%S')} {name}: {done:.1f} of {total} {what} done "
                  f"({now - self.start:.0f} s)", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.name = ""


def _resolve_method(args: argparse.Namespace, params: dict[str, str]
                    ) -> tuple[str | Denoiser, Denoiser, str]:
    """The method to run (a name or a loaded model), an instance to check, and its label."""
    from . import registry

    if args.trust_model and args.model is None:
        raise InputError("--trust-model lets a --model package run its code; there is no "
                         "--model here")
    if args.model is not None:
        model = registry.load(args.model, trust=args.trust_model)
        if args.method is not None and registry.method_class(args.method).key != model.key:
            raise InputError(f"give --method or --model, not both (--model {args.model} is "
                             f"a {model.key} model, --method says {args.method})")
        if args.preset or params:
            raise InputError("--preset/--param configure --method; a --model is used as saved")
        return model, model, f"{model.key} model {args.model.name}"
    auto = (args.method or DEFAULT_METHOD).strip().lower() == "auto"
    if auto and (args.pairs_axis is not None or args.budget is not None):
        return _auto_method(args, params)  # the comparison the user asked for
    if args.pairs_axis is not None or args.budget is not None:
        raise InputError("--pairs-axis and --budget configure --method auto's comparison")
    name = registry.method_class(args.method or DEFAULT_METHOD).key
    method = registry.create(name, preset=args.preset, **params)
    label = f"{name} (preset {args.preset})" if args.preset else name
    return name, method, label


def _auto_method(args: argparse.Namespace, params: dict[str, str]
                 ) -> tuple[str | Denoiser, Denoiser, str]:
    """``--method auto`` with ``--pairs-axis`` or ``--budget``: compare methods on the
    first input (as ``compare`` does), say which won and why."""
    from . import io, registry
    from .cli_compare import choose_auto, say

    if args.model is not None or args.preset or params:
        raise InputError("--method auto chooses the method and its parameters: drop "
                         "--model/--preset/--param")
    if args.budget is not None and not args.budget > 0:
        raise InputError(f"--budget must be a positive number of seconds, got {args.budget}")
    from .atomic import check_writable

    check_dtype(args.dtype, args.allow_clipping)
    check_writable(args.out)  # before the comparison's work
    with warnings.catch_warnings():  # cmd_denoise lists the inputs again and says it then
        warnings.simplefilter("ignore")
        paths = io.list_images(args.inputs, recursive=args.recursive)
    name, chosen, why = choose_auto(paths[0], axes=args.axes, pairs_axis=args.pairs_axis,
                                    budget=args.budget, seed=args.seed or 0)
    say(why + (f" (used for all {len(paths)} inputs)" if len(paths) > 1 else ""))
    params.update({k: str(v) for k, v in chosen.items()})
    method = registry.create(name, **params)
    label = name + "".join(f" {k}={v}" for k, v in chosen.items()) + " (auto)"
    return name, method, label


def cmd_denoise(args: argparse.Namespace) -> int:
    """Denoise the inputs into ``--out``; 0 when every file is written or kept."""
    from . import io, pipeline

    params = parse_params(args.param)
    method, instance, label = _resolve_method(args, params)
    check_options(args, instance)
    paths = io.list_images(args.inputs, recursive=args.recursive)
    pipeline.prepare_output_dir(args.out)
    err = sys.stderr
    progress = Progress(err)
    said: dict[bool, str] = {}  # the last line of each kind: method/scaling, fit choices
    finished: list[Path] = []
    args.finished_note = lambda: _finished_note(finished, len(paths))

    def info(line: str) -> None:
        kind = "intensities" in line  # the method-and-scaling line, else what a fit chose
        if said.get(kind) != line:
            said[kind] = line
            print(f"microdenoise: {line}", file=err, flush=True)

    def report(path: Path, written: Path | None, error: str | None) -> None:
        progress.close()
        if error is not None:
            print(f"skipped {path}: {cli_words(error)}", file=err, flush=True)
        elif written is not None:
            finished.append(written)
            print(written, flush=True)

    def kept(path: Path, target: Path) -> None:
        print(f"kept existing {target} (--overwrite redoes it)", file=err, flush=True)

    options: dict[str, Any] = {
        "dtype": args.dtype, "overwrite": args.overwrite, "axes": args.axes, "tile": args.tile,
        "overlap": args.overlap, "device": args.device, "seed": args.seed,
        "fit_on": args.fit_on, "max_memory": args.max_memory, "pyramid": args.pyramid}
    if isinstance(method, str):
        options.update(preset=args.preset, params=params)
    feedback = fb.Feedback(label=label, strict=args.strict, info=info, progress=progress)
    with fb.reporting(feedback):
        try:
            if args.scheduler is not None:
                from .distributed import denoise_files_distributed

                result = denoise_files_distributed(paths, args.out, method,
                                                   scheduler=args.scheduler, on_file=report,
                                                   on_kept=kept, **options)
            else:
                result = pipeline.denoise_files(paths, args.out, method, on_file=report,
                                                on_kept=kept, **options)
        finally:
            progress.close()
    if result.failed:
        print(f"{len(result.failed)} of {len(paths)} file(s) failed", file=err)
        return EXIT_FAILED_FILES
    return 0


def _finished_note(finished: list[Path], total: int) -> str:
    if not finished:
        return f"none of {total} file(s) finished"
    names = ", ".join(str(p) for p in finished[:5]) + (", ..." if len(finished) > 5 else "")
    return (f"{len(finished)} of {total} file(s) finished ({names}); rerun the same command "
            "to do the rest")
