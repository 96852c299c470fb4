"""The committed benchmark tables reproduce: rows recomputed equal their CSVs.

Deterministic rows of ``benchmarks/results/fmd_fm2s/fmd_test_mix`` (filters on the
FMD test mix, CPU-independent) are recomputed with the current code through
``denoise_array`` and the benchmark's own metric convention (outputs clipped and
rounded to 0..255, data_range 255). A change of the prediction core or of a filter
that moves a committed number fails here. Needs ``../shared/data`` (skipped
without it). BM3D's compiled core is not bit-reproducible and costs ~15 s an image:
its row is marked slow (``make test-all``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from microdenoise import datasets, denoise_array, metrics
from microdenoise.evaluate import parse_spec, quantize

ROOT = Path(__file__).parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "fmd_fm2s" / "fmd_test_mix"
IMAGES = ["Confocal_BPAE_B_3", "TwoPhoton_BPAE_B_3", "WideField_BPAE_B_3", "Confocal_BPAE_B_4"]
# The benchmark's row -> method spec (benchmarks/fmd_fm2s.py ROWS) and its CSV.
ROWS = {"median": ("median", "scores_filters_fast.csv"),
        "gaussian": ("gaussian", "scores_filters_fast.csv"),
        "nlm": ("nlm:vst=none", "scores_filters_fast.csv"),
        "nlm_vst": ("nlm:vst=gat", "scores_vst.csv"),
        "bm3d_vst": ("bm3d:vst=gat", "scores_vst.csv")}


def _committed(row: str, csv_name: str) -> dict[str, float]:
    with (RESULTS / csv_name).open() as fh:
        return {r["image"]: float(r["psnr"]) for r in csv.DictReader(fh) if r["row"] == row}


@pytest.fixture(scope="module")
def pairs() -> list[datasets.Pair]:
    if not (DATA / "fmd_test_mix").is_dir():
        pytest.skip("the benchmark data ../shared/data/fmd_test_mix is not here")
    return datasets.load_dataset("fmd_test_mix", DATA, names=IMAGES)


@pytest.mark.parametrize("row", [
    "median", "gaussian", "nlm", "nlm_vst",
    pytest.param("bm3d_vst", marks=pytest.mark.slow),
])
def test_committed_fmd_rows_reproduce(row: str, pairs: list[datasets.Pair]) -> None:
    spec_text, csv_name = ROWS[row]
    if row.startswith("bm3d"):
        pytest.importorskip("bm3d", reason="bm3d is the optional extra microdenoise[bm3d]")
    committed = _committed(row, csv_name)
    spec = parse_spec(spec_text)
    for pair in pairs:
        out = denoise_array(pair.noisy, spec.method, params=spec.params)
        psnr = metrics.psnr(quantize(out, "round"), pair.clean.astype(np.float64),
                            data_range=255)
        tolerance = 0.01 if row.startswith("bm3d") else 1e-3
        assert abs(psnr - committed[pair.name]) < tolerance, (row, pair.name, psnr)
