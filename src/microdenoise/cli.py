"""The ``microdenoise`` command: denoise, compare, list, evaluate, demo, train, export.

Each subcommand parses its arguments and calls one library function
(``denoise`` lives in :mod:`microdenoise.cli_denoise`, ``compare`` in
:mod:`microdenoise.cli_compare`). Exit codes: 0 done
(outputs that already existed are kept and count as done); 1 some files of a
batch failed (the others were processed); 2 bad input, one line on stderr
saying what is wrong and what to do, before any work; 3 an internal error (a
bug); 130 interrupted (Ctrl-C, SIGINT); 143 terminated (SIGTERM, what SLURM
and most schedulers send): no partial output is left, and a line says which
files finished.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from . import cli_compare, cli_denoise
from .cli_denoise import EXIT_FAILED_FILES, cli_words
from .errors import AxesWarning, FormatWarning, InputError, NoticeWarning
from .training import DEVICES
from .version import __version__

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED_FILES", "EXIT_INTERRUPTED", "EXIT_TERMINATED",
           "build_parser", "main"]

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM

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
  microdenoise compare img.tif --out compare/                  # rank methods, no clean image
  microdenoise denoise img.tif -o out/ --method auto           # use compare's winner
  microdenoise list
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``microdenoise`` command."""
    parser = argparse.ArgumentParser(
        prog="microdenoise",
        description="Denoise fluorescence microscopy images: classical filters, FM2S "
                    "(zero-shot), Noise2Void, DecoNoising, CARE and CLIDiM under one "
                    "command. The default (auto) measures the noise and runs VST-BM3D on "
                    "pixel-independent noise, FM2S on spatially correlated noise.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"microdenoise {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    cli_denoise.add_parser(sub)
    cli_compare.add_parser(sub)

    sub.add_parser("list", help="list the methods, what they need and their parameters")

    e = sub.add_parser("evaluate", help="benchmark methods on noisy/clean pairs",
                       description="Paper-style table (Markdown + CSV) and a figure of crops.")
    e.add_argument("--dataset", required=True,
                   help="fmd_test_mix, srdtrans_subset, w2s_8bit or a folder with noisy/ and gt/")
    e.add_argument("--methods", default=None,
                   help="comma-separated; parameters as name:k=v:k=v (e.g. fm2s:schedule=paper); "
                        "default fm2s,median,gaussian,nlm (none when --model is given)")
    e.add_argument("--model", action="append", default=[], metavar="[LABEL=]PATH",
                   help="a trained model (.pt, from `train`, or a BioImage Model Zoo package) "
                        "to score as saved, repeatable; its row is LABEL (default: the file's "
                        "stem)")
    e.add_argument("--trust-model", action="store_true",
                   help="let the --model packages run their own code (TorchScript, an "
                        "architecture not microdenoise's): only for packages from a source "
                        "you trust")
    e.add_argument("--data-root", type=Path, default=None, help="folder holding the datasets")
    e.add_argument("--images", nargs="*", default=None, metavar="PATTERN",
                   help="only these image names or glob patterns (e.g. '*_3')")
    e.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder")
    e.add_argument("--quantize", choices=("round", "trunc", "none"), default="round")
    e.add_argument("--seed", type=int, default=None)

    m = sub.add_parser("demo", help="denoise the bundled FMD sample and print the gain",
                       description="The default (auto: it measures the noise and says what "
                                   "it chose and why), FM2S and a Gaussian blur on the "
                                   "bundled FMD sample, side by side with PSNR/SSIM and "
                                   "seconds.")
    m.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    m.add_argument("--method", default="auto",
                   help="the method shown first and written as the output (default auto)")

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


def cmd_list(args: argparse.Namespace) -> int:
    from .registry import describe, list_methods

    names = list_methods()
    infos = [describe(name) for name in names]
    width = max(len(name) for name in names) + 1
    family = max(len(info["family"]) for info in infos) + 1
    for name, info in zip(names, infos, strict=True):
        print(f"{name:<{width}} {info['family']:<{family}} needs: {info['needs']}")
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
    specs += [evaluate.parse_model_spec(m, trust=args.trust_model) for m in args.model]
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
    from . import feedback as fb
    from .atomic import check_writable
    from .registry import method_class

    data = resources.files("microdenoise") / "data"
    with resources.as_file(data / "confocal_fish_raw.png") as raw_path, \
            resources.as_file(data / "confocal_fish_gt.png") as gt_path:
        noisy = io.read_image(raw_path).data
        clean = io.read_image(gt_path).data
    first = method_class(args.method).key
    check_writable(args.out)  # before any work
    names = list(dict.fromkeys([first, "fm2s", "gaussian"]))
    print(f"microdenoise demo: {', '.join(names)} on a 256x256 FMD Confocal FISH crop "
          "(bundled real sample; PSNR/SSIM on 0..255, seconds on this machine)", flush=True)
    before = evaluate.score(noisy.astype(np.float64), clean, data_range=255.0)
    print(f"  {'noisy':9s} PSNR {before[0]:6.2f} dB   SSIM {before[1]:.3f}", flush=True)
    outputs, titles, said = [], [], []
    for name in names:
        feedback = fb.Feedback(info=lambda line: said.append(line) if "auto:" in line else None)
        t0 = time.perf_counter()
        with fb.reporting(feedback):
            out = pipeline.denoise_array(noisy, name)
        seconds = time.perf_counter() - t0
        after = evaluate.score(evaluate.quantize(out), clean, data_range=255.0)
        print(f"  {name:9s} PSNR {after[0]:6.2f} dB   SSIM {after[1]:.3f}   "
              f"({seconds:.1f} s)", flush=True)
        for line in said:
            print(f"            {line}", flush=True)
        said.clear()
        outputs.append(out)
        titles.append(f"{name}: {after[0]:.2f} dB, {seconds:.1f} s")
    tif = io.write_image(args.out / "confocal_fish_denoised.tif", outputs[0], overwrite=True)
    png = figures.side_by_side(
        [noisy, *outputs, clean], ["noisy (FMD Confocal FISH)", *titles, "ground truth (avg 50)"],
        args.out / "confocal_fish_comparison.png")
    print(f"  wrote {tif} ({first}) and {png}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import parse_params
    from .training_io import train_files

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


COMMANDS = {"denoise": cli_denoise.cmd_denoise, "compare": cli_compare.cmd_compare,
            "list": cmd_list, "evaluate": cmd_evaluate,
            "demo": cmd_demo, "train": cmd_train, "export": cmd_export}


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: object = None, line: str | None = None) -> None:
    """Warnings of ours as one line on stderr, others as Python prints them."""
    if issubclass(category, AxesWarning | NoticeWarning | FormatWarning):
        print(f"microdenoise: warning: {cli_words(str(message))}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds like Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


@contextlib.contextmanager
def _quiet_and_interruptible() -> Iterator[None]:
    """SIGTERM unwinds like SIGINT (temporary files removed); tifffile's own log lines
    (e.g. on a truncated file) are silenced: our one error line says it."""
    tiff_log = logging.getLogger("tifffile")
    was_disabled = tiff_log.disabled
    tiff_log.disabled = True
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        tiff_log.disabled = was_disabled
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        with warnings.catch_warnings(), _quiet_and_interruptible():
            warnings.simplefilter("always", AxesWarning)
            warnings.simplefilter("always", NoticeWarning)
            warnings.showwarning = _show_warning
            return COMMANDS[args.command](args)
    except InputError as exc:
        print(f"microdenoise: error: {cli_words(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        term = isinstance(exc, _Terminated)
        note = getattr(args, "finished_note", None)
        detail = f"; {note()}" if note is not None else ""
        print(f"microdenoise: {'terminated (SIGTERM)' if term else 'interrupted'}{detail}",
              file=sys.stderr)
        return EXIT_TERMINATED if term else EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001  (one line, not a traceback; MICRODENOISE_DEBUG=1 shows it)
        if os.environ.get("MICRODENOISE_DEBUG"):
            raise
        print(f"microdenoise: internal error: {type(exc).__name__}: {exc} (this is a bug; "
              "rerun with MICRODENOISE_DEBUG=1 and report the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
