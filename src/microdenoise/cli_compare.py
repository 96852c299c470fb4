"""``microdenoise compare`` and the choice behind ``denoise --method auto``.

``compare`` prints the ranked Markdown table and the recommendation; with ``--out``
it writes ``table.md``, ``table.csv`` and ``figure.png`` there (the folder is checked
writable before any work; each file is written under a temporary name and renamed,
and nothing is written when the comparison fails).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from .compare_result import Row

AUTO_METHODS = ("gaussian", "median", "nlm", "bm3d", "fm2s")  # cheapest first
AUTO_CROP = 256
AUTO_PLANES = 2
AUTO_BUDGET_S = 120.0
FIGURE_PANELS = 6


def add_parser(sub: Any) -> None:
    """Add the ``compare`` subcommand to the subparsers ``sub``."""
    c = sub.add_parser(
        "compare", help="rank methods on your image without a clean image",
        description="Estimate each method's mean squared error against the unknown clean "
                    "image from the noisy data alone (two captures of one scene: "
                    "Noise2Noise; one image: the Noise2Self masked loss, or Monte-Carlo "
                    "SURE after a variance-stabilising transform), rank them and recommend "
                    "one. See docs/compare.md.")
    c.add_argument("input", type=Path, metavar="INPUT", help="the noisy image")
    pair = c.add_mutually_exclusive_group()
    pair.add_argument("--second", type=Path, default=None, metavar="FILE",
                      help="a second capture of the same scene (two-capture estimate)")
    pair.add_argument("--pairs-axis", default=None, metavar="AXIS",
                      help="a static stack: consecutive planes along AXIS (e.g. T) are "
                           "captures of one scene")
    c.add_argument("--methods", default=None,
                   help="comma-separated names or name:k=v:k=v (default "
                        "fm2s,gaussian,median,nlm,bm3d); filters named alone are tried on "
                        "their parameter grid")
    c.add_argument("--no-grid", action="store_true",
                   help="try each filter with its default parameter only")
    c.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="write table.md, table.csv and figure.png here")
    c.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="time limit: planes are scored in turn and only those every method "
                        "finished are used; methods not run on the first plane are listed")
    c.add_argument("--crop", type=int, default=None, metavar="N",
                   help="score a central N x N crop of each plane (faster)")
    c.add_argument("--planes", type=int, default=3, metavar="K",
                   help="stacks: score K evenly spaced planes (or K pairs; default 3)")
    c.add_argument("--axes", default=None, help="axes of the input, letters from STCZYX")
    c.add_argument("--single", choices=("masked", "sure"), default=None,
                   help="single-image estimator: the Noise2Self masked loss (default) or "
                        "Monte-Carlo SURE (not with --second or --pairs-axis)")
    c.add_argument("--seed", type=int, default=0, help="seed of the methods and SURE's probes")


def _check_numbers(args: argparse.Namespace) -> None:
    if args.budget is not None and not args.budget > 0:
        raise InputError(f"--budget must be a positive number of seconds, got {args.budget}")
    if args.crop is not None and args.crop < 32:
        raise InputError(f"--crop {args.crop} is too small: use 32 or more")
    if args.planes < 1:
        raise InputError("--planes must be at least 1")
    if args.single is not None and (args.second is not None or args.pairs_axis is not None):
        raise InputError("--single chooses the one-image estimator; with --second or "
                         "--pairs-axis the two-capture estimate is used: give one or the other")


def cmd_compare(args: argparse.Namespace) -> int:
    """Run :func:`microdenoise.compare` on the input; print and (with --out) write."""
    from . import atomic, figures
    from .compare_estimators import noise_check, residual_diagnostics
    from .comparison import DEFAULT_METHODS, candidates, compare
    from .io import read_image

    _check_numbers(args)
    names = [m for m in (args.methods or ",".join(DEFAULT_METHODS)).split(",")
             if m.strip()]
    if not names:
        raise InputError("--methods is empty: give at least one method")
    candidates(names, grid=not args.no_grid)  # unknown names refused before any work
    out = atomic.check_writable(args.out) if args.out is not None else None
    img = read_image(args.input, axes=args.axes)
    second = read_image(args.second, axes=args.axes).data if args.second is not None else None
    result = compare(img.data, methods=names, second=second, axes=img.axes,
                     pairs_axis=args.pairs_axis, grid=not args.no_grid,
                     crop=args.crop, max_planes=args.planes, budget=args.budget,
                     seed=args.seed, single=args.single or "masked", progress=_Progress())
    table = result.to_markdown()
    if out is not None:
        header = (f"microdenoise compare {args.input.name}"
                  + (f" --second {args.second.name}" if args.second else "")
                  + ": estimated MSE in the input's intensity units squared\n\n")
        with atomic.atomic_file(out / "table.md") as tmp:
            tmp.write_text(header + table + "\n")
        with atomic.atomic_file(out / "table.csv") as tmp:
            tmp.write_text(result.to_csv())
        panels = [(f"{r.label}\nMSE {r.estimate:.3g}+-{r.se:.2g}"
                   + ("" if r.reliable else " (unreliable)"), result.outputs[r.label])
                  for r in result.rows if r.label in result.outputs][:FIGURE_PANELS]
        model = noise_check(result.image).model
        maps = [residual_diagnostics(result.image, o.astype("float64"), model)[2]
                for _, o in panels]
        with atomic.atomic_file(out / "figure.png") as tmp:
            figures.output_residual_grid(result.image, panels, tmp, maps=maps)
    print(table)
    if out is not None:
        print(f"wrote {out / 'table.md'}, {out / 'table.csv'}, {out / 'figure.png'}")
    return 0


class _Progress:
    """One line on stderr per candidate and plane scored: ``[k/n] label: estimate``."""

    def __call__(self, row: Row, out: np.ndarray | None, done: int, total: int) -> None:
        what = (row.error if row.error else
                f"est. MSE {row.estimate:.4g} +- {row.se:.2g} ({row.estimator})")
        say(f"compare [{done}/{total}] {row.label}: {what} ({row.seconds:.1f} s)")


def choose_auto(path: Path, *, axes: str | None = None, pairs_axis: str | None = None,
                budget: float | None = None, seed: int = 0,
                methods: tuple[str, ...] = AUTO_METHODS) -> tuple[str, dict[str, Any], str]:
    """The method ``denoise --method auto`` uses for ``path``: (name, params, why).

    Compares ``methods`` (default :data:`AUTO_METHODS`) on a central ``AUTO_CROP`` crop of up to
    ``AUTO_PLANES`` planes within ``budget`` seconds (default ``AUTO_BUDGET_S``);
    without a reliable estimate it falls back to FM2S and says why.
    """
    from .comparison import FALLBACK, compare
    from .io import read_image

    img = read_image(path, axes=axes)
    result = compare(img.data, methods=methods, axes=img.axes,
                     pairs_axis=pairs_axis, crop=AUTO_CROP, max_planes=AUTO_PLANES,
                     budget=AUTO_BUDGET_S if budget is None else budget, seed=seed,
                     progress=_Progress())
    skipped = [r.label for r in result.rows if r.error]
    tail = f"; not scored: {', '.join(skipped)}" if skipped else ""
    if result.recommended is None:
        return (FALLBACK, {},
                f"auto: not reliable: falling back to {FALLBACK} because "
                f"{result.reason}{tail}")
    best = result.row(result.recommended)
    return (best.method, dict(best.params),
            f"auto chose {best.label} on {path.name}: {result.reason}{tail}")


def say(line: str) -> None:
    """One line on stderr (what ``denoise --method auto`` chose)."""
    print(f"microdenoise: {line}", file=sys.stderr, flush=True)
