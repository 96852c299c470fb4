"""Prediction rows of the speed table (issue 18): trained networks on large planes.

- ``predict``: N2V and CARE prediction of one 2048 x 2048 plane, ours
  (``denoise_array`` with a fitted model, the library's defaults) against CAREamics
  0.3.5's tiled prediction (``CAREamist.predict``, 256 x 256 tiles with 48 px overlap,
  the tiling of its N2V examples), each library in a fresh process with torch's
  default threads. Each network is trained for 2 steps on 64 x 64 patches of four
  256 x 256 crops of the plane, so the weights differ and the outputs are not compared
  (only their shape and finiteness); what is compared is the time and memory of
  prediction. N2V: both libraries' default U-Net is the same (depth 2, 32 initial
  filters, 3 x 3 kernels, batch norm). CARE: ours follows CSBDeep (5 x 5 kernels, no
  batch norm), CAREamics' is its N2V U-Net, so a second CARE row runs ours with
  ``kernel_size=3, batch_norm=True``, the same work as CAREamics'. The
  plane is the raw Convallaria frame (1024 x 1024, uint16) mirrored to 2048 x 2048.
  Memory: the largest resident set size seen during prediction (sampled every 10 ms)
  minus the size before it.
- ``fm2s_infer``: a fitted FM2S (default fast schedule, fitted once on the Convallaria
  frame) predicting a 2048 x 2048 plane (the mirrored frame) and a 100-frame
  1024 x 1024 stack (the frame shifted by a few pixels per frame: the content does not
  change the cost), with and without the 8-view averaging (``tta="d8"`` / ``"off"``).
  With averaging the stack row runs 10 frames (8x the work per frame); per-frame
  seconds are what the table compares. The ``direct`` columns are empty: no other
  tool runs FM2S.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

_PEAK = '''
import threading, time, psutil

class Peak:
    """Largest RSS seen while the block runs, minus the RSS before it (MB)."""
    def __enter__(self):
        self.proc, self.stop = psutil.Process(), False
        self.base = self.peak = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        self.t0 = time.perf_counter()
        return self
    def _poll(self):
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.01)
    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.stop = True
        self.thread.join()
        self.mb = (self.peak - self.base) / 2**20
'''

_OURS = _PEAK + '''
import json, sys
import numpy as np
import microdenoise as md
args = json.loads(sys.argv[1])
big = np.load(args["input"])
train = np.stack([big[y:y + 256, x:x + 256] for y, x in ((0, 0), (0, 1024), (1024, 0),
                                                         (700, 700))])
model = md.create(args["method"], epochs=1, steps_per_epoch=2, batch_size=16, patch_size=64,
                  seed=0, **args["params"])
if args["method"] == "care":
    from scipy import ndimage as ndi
    model.fit(train, np.stack([ndi.gaussian_filter(t.astype(np.float32), 2) for t in train]))
else:
    model.fit(train)
with Peak() as p:
    out = md.denoise_array(big, model)
print("RESULT " + json.dumps({"wall": p.wall, "mb": p.mb, "shape": list(out.shape),
                              "finite": bool(np.isfinite(out).all())}))
'''

_CAREAMICS = _PEAK + '''
import json, sys
import numpy as np
from scipy import ndimage as ndi
from careamics import CAREamist
from careamics.config import create_care_config, create_n2v_config
args = json.loads(sys.argv[1])
big = np.load(args["input"]).astype(np.float32)
train = np.stack([big[y:y + 256, x:x + 256] for y, x in ((0, 0), (0, 1024), (1024, 0),
                                                         (700, 700))])
common = dict(experiment_name="speed", data_type="array", axes="SYX", patch_size=[64, 64],
              batch_size=16, num_epochs=1, num_steps=2)
if args["method"] == "care":
    cfg = create_care_config(**common)
    model = CAREamist(cfg, work_dir=args["work_dir"], enable_progress_bar=False)
    model.train(train_data=train,
                train_data_target=np.stack([ndi.gaussian_filter(t, 2) for t in train]))
else:
    cfg = create_n2v_config(**common)
    model = CAREamist(cfg, work_dir=args["work_dir"], enable_progress_bar=False)
    model.train(train_data=train)
with Peak() as p:
    pred = model.predict(big[None], tile_size=(256, 256), tile_overlap=(48, 48))
out = np.asarray(pred[0] if isinstance(pred, (list, tuple)) else pred)
print("RESULT " + json.dumps({"wall": p.wall, "mb": p.mb, "shape": list(out.shape),
                              "finite": bool(np.isfinite(out).all())}))
'''

_FM2S = _PEAK + '''
import dataclasses, json, sys, time
import numpy as np
import microdenoise as md
args = json.loads(sys.argv[1])
sys.path.insert(0, args["benchmarks"])
from speed_predict import unit
frame = np.load(args["frame"])
big = np.load(args["input"])
model = md.create("fm2s", seed=0)
t0 = time.perf_counter()
model.fit(unit(frame))  # FM2S.fit takes [0, 1], as the core gives it
fit = time.perf_counter() - t0
res = {"fit_s": fit}
for tta, n in (("off", 100), ("d8", 10)):
    model.config = dataclasses.replace(model.config, tta=tta)
    with Peak() as p:
        md.denoise_array(big, model)
    res[f"plane_{tta}"] = (p.wall, p.mb)
    stack = np.stack([np.roll(frame, (k, 2 * k), axis=(0, 1)) for k in range(n)])
    with Peak() as p:
        md.denoise_array(stack, model, axes="TYX")
    res[f"stack_{tta}"] = (p.wall / n, p.mb, n)
print("RESULT " + json.dumps(res))
'''


def convallaria_plane(root: Path | None) -> np.ndarray:
    """The raw Convallaria frame (1024 x 1024, uint16) from the shared data."""
    import tifffile

    from microdenoise import datasets

    base = datasets.data_root_or_none() if root is None else root
    if base is None:
        sys.exit("shared data not found (../shared/data)")
    return np.asarray(tifffile.imread(Path(base) / "convallaria" / "convallaria_frame0.tif"))


def unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled as the core scales it for FM2S before fitting (``FM2S.fit`` takes
    [0, 1]): 8-bit by 255, anything else by its own min..max."""
    if x.dtype == np.uint8:
        return (x / 255.0).astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo)).astype(np.float32)


def sized(frame: np.ndarray, size: int) -> np.ndarray:
    """``frame`` cropped (centre) or mirrored to ``size`` x ``size``."""
    out = frame
    while out.shape[0] < size:
        out = np.block([[out, out[:, ::-1]], [out[::-1], out[::-1, ::-1]]])
    y0 = (out.shape[0] - size) // 2
    return np.ascontiguousarray(out[y0:y0 + size, y0:y0 + size])


def _child(python: str, script: str, job: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([python, "-c", script, json.dumps(job)], capture_output=True,
                          text=True, check=False, cwd=job.get("work_dir"))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{python} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run_predict(args: Any, writer: Any) -> None:
    frame = convallaria_plane(args.data_root)
    big = sized(frame, 2048)
    venv = Path(args.careamics_venv) / "bin" / "python"
    if not venv.exists():
        sys.exit(f"no CAREamics virtualenv at {venv.parent.parent}: make it with "
                 "`benchmarks/vs_careamics.py install --venv ...`")
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "big.npy", big)
        for method, params in (("n2v", {}), ("care", {}),
                               ("care", {"kernel_size": 3, "batch_norm": True})):
            job = {"input": str(Path(tmp) / "big.npy"), "method": method, "work_dir": tmp,
                   "params": params}
            ours = _child(sys.executable, _OURS, job)
            theirs = _child(str(venv), _CAREAMICS, job)
            print(method, params, "ours", ours, "careamics", theirs, flush=True)
            same = ours["shape"][-2:] == theirs["shape"][-2:] and ours["finite"] \
                and theirs["finite"]
            writer.writerow({
                "row": "predict",
                "case": f"{method}{' 3x3+BN' if params else ''} 2048x2048 vs CAREamics tiled",
                "ours_s": f"{ours['wall']:.2f}", "direct_s": f"{theirs['wall']:.2f}",
                "ratio": f"{ours['wall'] / theirs['wall']:.3f}",
                "ours_peak_mb": f"{ours['mb']:.0f}", "direct_peak_mb": f"{theirs['mb']:.0f}",
                "max_diff": "weights differ" if same else "SHAPES DIFFER", "n": 1,
                "extra": json.dumps({"careamics": "0.3.5, tile 256, overlap 48",
                                     "ours": params or "defaults"})})


def run_fm2s_infer(args: Any, writer: Any) -> None:
    frame = convallaria_plane(args.data_root)
    big = sized(frame, 2048)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "big.npy", big)
        np.save(Path(tmp) / "frame.npy", frame)
        res = _child(sys.executable, _FM2S, {"input": str(Path(tmp) / "big.npy"),
                                             "frame": str(Path(tmp) / "frame.npy"),
                                             "work_dir": tmp,
                                             "benchmarks": str(Path(__file__).parent)})
    print("fm2s inference", res, flush=True)
    for tta in ("off", "d8"):
        wall, mb = res[f"plane_{tta}"]
        writer.writerow({"row": "fm2s_infer", "case": f"2048x2048 plane, tta={tta}",
                         "ours_s": f"{wall:.2f}", "direct_s": "", "ratio": "",
                         "ours_peak_mb": f"{mb:.0f}", "direct_peak_mb": "", "max_diff": "",
                         "n": 1, "extra": json.dumps({"fit_s": round(res["fit_s"], 1)})})
        per, mb, n = res[f"stack_{tta}"]
        writer.writerow({"row": "fm2s_infer", "case": f"1024x1024 stack, s per frame, "
                                                     f"tta={tta}",
                         "ours_s": f"{per:.3f}", "direct_s": "", "ratio": "",
                         "ours_peak_mb": f"{mb:.0f}", "direct_peak_mb": "", "max_diff": "",
                         "n": n, "extra": json.dumps({"frames": n})})
