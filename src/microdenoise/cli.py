"""The ``microdenoise`` command: denoise, list, evaluate, demo.

Each subcommand parses its arguments and calls one library function. Bad input
ends with one line on stderr saying what is wrong and what to do, and exit code 2;
a batch in which some files failed exits with 1 after processing the rest.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import AxesWarning, FormatWarning, InputError
from .registry import Denoiser
from .training import DEVICES

EXIT_FAILED_FILES = 1
EXIT_BAD_INPUT = 2

_EPILOG = """examples:
  microdenoise denoise cells.tif -o denoised/                  # FM2S, zero-shot
  microdenoise denoise raw/ -o out/ --method fm2s --preset widefield --dtype same
  microdenoise denoise img.png -o out/ --method nlm --param h_factor=0.6
  microdenoise train --method n2v --input raw/ --out n2v.pt   # self-supervised
  microdenoise train --method n2v --param dims=3 --input zstacks/ --out n2v3d.pt  # 3D
  microdenoise denoise raw/ -o out/ --model n2v.pt
  microdenoise train --method care --input noisy/ --target clean/ --out care.pt  # pairs
  microdenoise evaluate --dataset fmd_test_mix --methods fm2s,median,nlm --images '*_3'
  microdenoise evaluate --dataset w2s_8bit --methods gaussian --model care=care.pt
  microdenoise list
"""


def _add_method_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="fm2s", help="method name (default fm2s; see `list`)")
    p.add_argument("--preset", default=None, help="named parameter set of the method")
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="method parameter, repeatable (e.g. --param schedule=paper)")
    p.add_argument("--seed", type=int, default=None, help="random seed (same seed, same output)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``microdenoise`` command."""
    parser = argparse.ArgumentParser(
        prog="microdenoise",
        description="Denoise fluorescence microscopy images: classical filters, FM2S "
                    "(zero-shot, the default), Noise2Void, DecoNoising, CARE and CLIDiM "
                    "under one command.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"microdenoise {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("denoise", help="denoise image files or folders",
                       description="Denoise TIFF/PNG/NPY/OME-Zarr images; outputs are "
                                   "OUTDIR/<name>.tif (OUTDIR/<name>.ome.zarr for OME-Zarr) "
                                   "with axes and pixel size kept. With --tile or "
                                   "--max-memory, files are streamed tile by tile.")
    d.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    d.add_argument("-o", "--out", required=True, type=Path, metavar="OUTDIR",
                   help="output folder (created if missing)")
    _add_method_options(d)
    d.add_argument("--model", type=Path, default=None,
                   help="a saved model (.pt) to apply instead of --method")
    d.add_argument("--tile", type=int, default=None, help="tile size for tiled prediction")
    d.add_argument("--overlap", type=int, default=None,
                   help="tile overlap (default and minimum: the method's receptive field)")
    d.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="stream large images tile by tile within about SIZE of memory "
                        "(e.g. 2GB); picks --tile when it is not given")
    d.add_argument("--device", choices=DEVICES, default="auto")
    d.add_argument("--dtype", default="float32",
                   help="output type: float32 (default) or same (the input's, rounded, clipped)")
    d.add_argument("--axes", default=None, help="axes of the input, letters from STCZYX")
    d.add_argument("--fit-on", type=int, default=None, metavar="K",
                   help="zero-shot methods on stacks: fit once on K planes, apply to all")
    d.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    d.add_argument("--pyramid", type=int, default=1, metavar="N",
                   help="write OME-Zarr outputs (<name>.ome.zarr) with N resolution levels, "
                        "each a 2x2 mean of the one before (default 1: no pyramid)")
    d.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run one Dask task per file: local:N (N worker processes here) or "
                        "tcp://HOST:PORT (a running scheduler); existing outputs are kept, "
                        "so a rerun resumes")

    sub.add_parser("list", help="list the methods, what they need and their parameters")

    e = sub.add_parser("evaluate", help="benchmark methods on noisy/clean pairs",
                       description="Paper-style table (Markdown + CSV) and a figure of crops.")
    e.add_argument("--dataset", required=True,
                   help="fmd_test_mix, srdtrans_subset, w2s_8bit or a folder with noisy/ and gt/")
    e.add_argument("--methods", default=None,
                   help="comma-separated; parameters as name:k=v:k=v (e.g. fm2s:schedule=paper); "
                        "default fm2s,median,gaussian,nlm (none when --model is given)")
    e.add_argument("--model", action="append", default=[], metavar="[LABEL=]PATH",
                   help="a trained model (.pt, from `train`) to score as saved, repeatable; "
                        "its row is LABEL (default: the file's stem)")
    e.add_argument("--data-root", type=Path, default=None, help="folder holding the datasets")
    e.add_argument("--images", nargs="*", default=None, metavar="PATTERN",
                   help="only these image names or glob patterns (e.g. '*_3')")
    e.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder")
    e.add_argument("--quantize", choices=("round", "trunc", "none"), default="round")
    e.add_argument("--seed", type=int, default=None)

    m = sub.add_parser("demo", help="denoise the bundled FMD sample and print the gain")
    m.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    m.add_argument("--method", default="fm2s")

    t = sub.add_parser("train", help="train a learned method (n2v, deconoising, care, clidim)",
                       description="Train on noisy images (n2v, deconoising) or on "
                                   "noisy/clean pairs (care, clidim: --target) and save a "
                                   "model; planes of stacks are samples. Apply it with "
                                   "`denoise --model MODEL`.")
    t.add_argument("--method", default="n2v", help="n2v (default), deconoising, care or clidim")
    t.add_argument("--input", nargs="+", required=True, metavar="NOISY",
                   help="noisy image files or folders")
    t.add_argument("--target", type=Path, default=None, metavar="CLEAN",
                   help="care, clidim: folder of clean images named as the noisy ones in --input "
                        "(or one clean file for one noisy --input file)")
    t.add_argument("--n-train", type=int, default=None, metavar="K",
                   help="care, clidim: train on K pairs only (the first K after a seeded shuffle)")
    t.add_argument("--out", required=True, type=Path, metavar="MODEL",
                   help="model file to write (.pt)")
    t.add_argument("--preset", default=None, help="named parameter set of the method")
    t.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="method parameter, repeatable (e.g. --param epochs=50)")
    t.add_argument("--seed", type=int, default=None, help="random seed")
    t.add_argument("--axes", default=None, help="axes of the inputs, letters from STCZYX")
    t.add_argument("--device", choices=DEVICES, default="auto")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model file")

    x = sub.add_parser("export", help="export a trained model as a BioImage Model Zoo package",
                       description="Write a bioimage.io model package (spec 0.5 zip: "
                                   "TorchScript and PyTorch weights, pre/post-processing, test "
                                   "tensors, README) that deepImageJ, ilastik, QuPath and "
                                   "bioimageio.core run. Needs pip install 'microdenoise[bmz]'.")
    x.add_argument("model", type=Path, metavar="MODEL", help="a trained model (.pt, from train)")
    x.add_argument("-o", "--out", required=True, type=Path, metavar="PACKAGE",
                   help="the package to write (.zip)")
    x.add_argument("--name", default=None, help="the model's name in the package")
    x.add_argument("--author", action="append", default=None, metavar="NAME",
                   help="an author (who trained the model), repeatable")
    x.add_argument("--overwrite", action="store_true", help="replace an existing package")
    return parser


def _progress(total: int, desc: str):  # noqa: ANN202  (tqdm type)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=None, file=sys.stderr)


def _check_options(args: argparse.Namespace, method: Denoiser) -> None:
    """Refuse bad options before any work (exit 2), rather than once per file."""
    import numpy as np

    from .io import check_axes
    from .training import resolve_device

    if args.dtype != "same":
        try:
            ok = np.dtype(args.dtype).kind in "uif"
        except TypeError:
            ok = False
        if not ok:
            raise InputError(f"--dtype {args.dtype!r}: use float32, same, uint8 or uint16")
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


def cmd_denoise(args: argparse.Namespace) -> int:
    from . import io, pipeline, registry

    params = registry.parse_params(args.param)
    if args.model is not None:
        method: str | registry.Denoiser = registry.load(args.model)
        if args.preset or params:
            raise InputError("--preset/--param configure --method; a --model is used as saved")
        _check_options(args, registry.load(args.model))
    else:
        method = args.method
        _check_options(args, registry.create(args.method, preset=args.preset, **params))
    paths = io.list_images(args.inputs)
    bar = _progress(len(paths), "denoising")

    def report(path: Path, written: Path | None, error: str | None) -> None:
        bar.update(1)
        if error is not None:
            bar.write(f"skipped {path}: {error}", file=sys.stderr)

    options = {"dtype": args.dtype, "overwrite": args.overwrite, "axes": args.axes,
               "tile": args.tile, "overlap": args.overlap, "device": args.device,
               "seed": args.seed, "fit_on": args.fit_on, "max_memory": args.max_memory,
               "pyramid": args.pyramid}
    if isinstance(method, str):
        options.update(preset=args.preset, params=params)
    if args.scheduler is not None:
        from .distributed import denoise_files_distributed

        result = denoise_files_distributed(paths, args.out, method, scheduler=args.scheduler,
                                           on_file=report, **options)
    else:
        result = pipeline.denoise_files(paths, args.out, method, on_file=report, **options)
    bar.close()
    for path in result.skipped:
        print(f"kept {path} (exists; --overwrite redoes it)", file=sys.stderr)
    for path in result.written:
        print(path)
    if result.failed:
        print(f"{len(result.failed)} of {len(paths)} file(s) failed", file=sys.stderr)
        return EXIT_FAILED_FILES
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .registry import describe, list_methods

    for name in list_methods():
        info = describe(name)
        print(f"{name:<10} {info['family']:<16} needs: {info['needs']}")
        if info["summary"]:
            print(f"    {info['summary']}")
        params = ", ".join(f"{k}={v}" for k, v in info["params"].items())
        print(f"    params: {params}")
        if info["presets"]:
            print(f"    presets: {', '.join(info['presets'])}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import datasets, evaluate, figures

    methods = args.methods if args.methods is not None else \
        ("" if args.model else "fm2s,median,gaussian,nlm")
    specs = [evaluate.parse_spec(s) for s in methods.split(",") if s.strip()]
    specs += [evaluate.parse_model_spec(m) for m in args.model]
    if not specs:
        raise InputError("nothing to evaluate: give --methods and/or --model")
    pairs = datasets.load_dataset(args.dataset, args.data_root, names=args.images)
    if not pairs:
        raise InputError(f"no images of {args.dataset} match {args.images}")
    args.out.mkdir(parents=True, exist_ok=True)
    firsts = {p.group: p.name for p in reversed(pairs)}
    bar = _progress(len(pairs) * len(specs), "evaluating")
    results, kept = evaluate.evaluate(pairs, specs, quantize_mode=args.quantize, seed=args.seed,
                                      keep=lambda p: firsts.get(p.group) == p.name,
                                      progress=bar.update)
    bar.close()
    table = evaluate.to_markdown(evaluate.summarize(results))
    (args.out / "table.md").write_text(
        f"Dataset {args.dataset}, {len(pairs)} images. 8-bit pairs: PSNR/SSIM on 0..255 "
        f"(data_range 255), outputs clipped and quantized ({args.quantize}); other pairs: "
        f"data_range = max(gt) - min(gt), no quantization.\n\n{table}\n")
    evaluate.write_csv(results, args.out / "scores.csv")
    by_name = {p.name: p for p in pairs}
    rows = [[by_name[n].noisy] + [kept[(s.label, n)] for s in specs] + [by_name[n].clean]
            for n in firsts.values()]
    figures.crop_grid(rows, list(firsts.values()),
                      ["noisy"] + [s.label for s in specs] + ["ground truth"],
                      args.out / "crops.png")
    print(table)
    print(f"wrote {args.out / 'table.md'}, {args.out / 'scores.csv'}, {args.out / 'crops.png'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from importlib import resources

    import numpy as np

    from . import evaluate, figures, io, pipeline

    data = resources.files("microdenoise") / "data"
    with resources.as_file(data / "confocal_fish_raw.png") as raw_path, \
            resources.as_file(data / "confocal_fish_gt.png") as gt_path:
        noisy = io.read_image(raw_path).data
        clean = io.read_image(gt_path).data
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    out = pipeline.denoise_array(noisy, args.method,
                                 preset="confocal" if args.method == "fm2s" else None)
    seconds = time.perf_counter() - t0
    tif = io.write_image(args.out / "confocal_fish_denoised.tif", out, overwrite=True)
    before = evaluate.score(noisy.astype(np.float64), clean, data_range=255.0)
    after = evaluate.score(evaluate.quantize(out), clean, data_range=255.0)
    png = figures.side_by_side(
        [noisy, out, clean],
        ["noisy (FMD Confocal FISH)", f"{args.method}: {after[0]:.2f} dB", "ground truth (avg 50)"],
        args.out / "confocal_fish_comparison.png")
    print(f"microdenoise demo: {args.method} on a 256x256 FMD Confocal FISH crop "
          "(bundled real sample; PSNR/SSIM on 0..255)")
    print(f"  noisy     PSNR {before[0]:6.2f} dB   SSIM {before[1]:.3f}")
    print(f"  denoised  PSNR {after[0]:6.2f} dB   SSIM {after[1]:.3f}   ({seconds:.1f} s)")
    print(f"  wrote {tif} and {png}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .registry import parse_params
    from .training import train_files

    path = train_files(args.input, args.method, args.out, preset=args.preset,
                       params=parse_params(args.param), axes=args.axes, device=args.device,
                       seed=args.seed, overwrite=args.overwrite, target=args.target,
                       n_train=args.n_train)
    print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .bmz import export_file

    print(export_file(args.model, args.out, name=args.name, authors=args.author,
                      overwrite=args.overwrite))
    return 0


COMMANDS = {"denoise": cmd_denoise, "list": cmd_list, "evaluate": cmd_evaluate,
            "demo": cmd_demo, "train": cmd_train, "export": cmd_export}


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: object = None, line: str | None = None) -> None:
    """Warnings of ours as one line on stderr, others as Python prints them."""
    if issubclass(category, (AxesWarning, FormatWarning)):
        print(f"microdenoise: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 some files failed, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", AxesWarning)
            warnings.showwarning = _show_warning
            return COMMANDS[args.command](args)
    except InputError as exc:
        print(f"microdenoise: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("microdenoise: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  (one line, not a traceback; MICRODENOISE_DEBUG=1 shows it)
        if os.environ.get("MICRODENOISE_DEBUG"):
            raise
        print(f"microdenoise: internal error: {type(exc).__name__}: {exc} (this is a bug; "
              "rerun with MICRODENOISE_DEBUG=1 and report the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
