"""Predict W2S test images with a care_k4 model; save SI-PSNR / raw PSNR per image."""
import sys, csv
import numpy as np, torch
torch.set_num_threads(1)
from microdenoise import datasets, denoise_array, load, metrics
from microdenoise.evaluate import quantize
model_path, out_csv = sys.argv[1], sys.argv[2]
model = load(model_path)
test = datasets.w2s_8bit("/work/shared/data", split="test")
rows = []
for pair in test:
    out = denoise_array(pair.noisy, model)
    pred = quantize(out, "round")
    gt = pair.clean.astype(np.float64)
    rows.append({"image": pair.name, "psnr": f"{metrics.psnr(pred, gt, data_range=255):.4f}",
                 "si_psnr": f"{metrics.si_psnr(pred, gt, data_range=255):.4f}"})
    np.save(f"{out_csv}.{pair.name}.npy", out) if pair.name.endswith("_0") else None
with open(out_csv, "w", newline="") as fh:
    w = csv.DictWriter(fh, ["image", "psnr", "si_psnr"]); w.writeheader(); w.writerows(rows)
print("done", len(rows))
