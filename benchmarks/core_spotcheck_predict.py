"""Score a saved W2S model on the 60 test images (FOVs 081-100): raw and SI-PSNR per image.

    .venv/bin/python benchmarks/core_spotcheck_predict.py runs/w2s_care/denoise_care_k4.pt OUT.csv

Used by ``benchmarks/results/core_spotcheck`` to compare the same model trained by two
versions of the code (``w2s_care.py run`` skips images already scored in a committed
CSV). Metrics as ``w2s_care.py``: outputs rounded and clipped to 0..255, data_range 255;
the output of the first channel of each FOV is saved beside ``OUT.csv`` as ``.npy``.
"""
import csv
import sys
from pathlib import Path

import numpy as np
import torch

from microdenoise import datasets, denoise_array, load, metrics
from microdenoise.evaluate import quantize

torch.set_num_threads(1)
model_path, out_csv = sys.argv[1], sys.argv[2]
model = load(model_path)
test = datasets.w2s_8bit(str(Path(__file__).parents[2] / "shared" / "data"), split="test")
rows = []
for pair in test:
    out = denoise_array(pair.noisy, model)
    pred = quantize(out, "round")
    gt = pair.clean.astype(np.float64)
    rows.append({"image": pair.name, "psnr": f"{metrics.psnr(pred, gt, data_range=255):.4f}",
                 "si_psnr": f"{metrics.si_psnr(pred, gt, data_range=255):.4f}"})
    if pair.name.endswith("_0"):
        np.save(f"{out_csv}.{pair.name}.npy", out)
with open(out_csv, "w", newline="") as fh:
    writer = csv.DictWriter(fh, ["image", "psnr", "si_psnr"])
    writer.writeheader()
    writer.writerows(rows)
print("done", len(rows))
