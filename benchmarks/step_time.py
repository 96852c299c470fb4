"""Training-step time of the U-Net methods in float32 and in bfloat16 (``precision``).

One optimizer step (forward, backward, Adam) of ``care``, ``n2v`` and ``deconoising``
at their default network and batch, on random patches, through the same
``training.step_module`` the methods train with; and one whole CLIDiM iteration
(``clidim_train.train_step``: G forward, contrastive D step, D step, G step) of the
pix2pix baseline and of CL+TV+SSIM on 4 crops of 256x256 (the CPU ablation's batch).
The two precisions are timed in alternating rounds in one process (one torch
thread by default), so that a drift of the shared machine hits both alike; the table
gives the median over rounds and the ratio. bf16 is only offered where it is native
(AVX512-BF16 / AMX on a CPU, or a GPU).

    .venv/bin/python benchmarks/step_time.py --out benchmarks/results/step_time/table.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _common import git_commit

from microdenoise.methods.clidim_train import TrainState, train_step
from microdenoise.registry import create
from microdenoise.training import native_cpu_bf16, resolve_device, step_module

# (method, patch side, batch): each method's own defaults, CARE also at W2S's 64 px.
CASES: tuple[tuple[str, int, int], ...] = (("care", 128, 16), ("care", 64, 16),
                                           ("n2v", 64, 16), ("deconoising", 100, 20),
                                           ("clidim baseline", 256, 4),
                                           ("clidim cl+tv+ssim", 256, 4))


def step_seconds(method: str, patch: int, batch: int, precision: str, *, steps: int,
                 device: torch.device) -> float:
    """Median seconds of ``steps`` optimizer steps (after 3 warm-up steps)."""
    gen = torch.Generator().manual_seed(0)
    if method.startswith("clidim"):
        x = (2 * torch.rand(batch, 2, patch, patch, generator=gen) - 1).to(device)
        clidim: Any = create("clidim", variant=method.split()[1], batch_size=batch,
                             crop=patch, precision=precision)
        clidim.net, clidim.disc, clidim.head = clidim.build((patch // 8 - 2) ** 2)
        state = TrainState.create(clidim, device)

        def step() -> None:
            train_step(state, x, gen)
    else:
        net: Any = create(method).build_net().to(device)  # type: ignore[attr-defined]
        run = step_module(net, precision, device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        x = torch.randn(batch, 1, patch, patch, generator=gen).to(device)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.mse_loss(run(x).float(), x).backward()
            opt.step()

    times = []
    for i in range(steps + 3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precisions = ["fp32", "bf16"] if device.type == "cuda" or native_cpu_bf16() else ["fp32"]
    rows = []
    for method, patch, batch in CASES:
        got: dict[str, list[float]] = {p: [] for p in precisions}
        for _ in range(args.rounds):
            for p in precisions:
                got[p].append(step_seconds(method, patch, batch, p, steps=args.steps,
                                           device=device))
        med = {p: statistics.median(v) for p, v in got.items()}
        ratio = med["fp32"] / med["bf16"] if "bf16" in med else float("nan")
        rows.append(f"| {method} | {batch} x {patch}x{patch} | {med['fp32'] * 1e3:.0f} | "
                    + (f"{med['bf16'] * 1e3:.0f} | {ratio:.2f}x |" if "bf16" in med
                       else "- | - |"))
        print(rows[-1], flush=True)
    where = (torch.cuda.get_device_name() if device.type == "cuda"
             else f"{platform.machine()} CPU, {args.threads} torch thread(s)")
    text = "\n".join([
        "# Training-step time, float32 vs bfloat16", "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {where} (a shared machine: "
        f"other jobs ran beside it), torch {torch.__version__}, commit {git_commit()}, by "
        "`benchmarks/step_time.py "
        f"--device {args.device} --threads {args.threads} --rounds {args.rounds} "
        f"--steps {args.steps}`.", "",
        "One optimizer step (forward, backward, Adam) of each method's default network "
        "on random patches, through `training.step_module` (what `precision` selects); "
        "for CLIDiM one whole iteration (G forward, contrastive D step, D step, G step). "
        f"Median over {args.rounds} alternating rounds of the per-round median of "
        f"{args.steps} steps; ratio = fp32 / bf16 (read the ratio, not the absolute "
        "times, on a shared machine).", "",
        "| method | batch x patch | fp32 ms | bf16 ms | bf16 speed-up |",
        "|---|---|---|---|---|", *rows, ""])
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
