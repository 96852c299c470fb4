#!/usr/bin/env bash
# The work of one lease on a GPU machine (the device tool), run in the background so
# that it outlasts one 10-minute device command; later commands poll and collect it.
#
#   bash benchmarks/gpu_session.sh start SET   # install, launch SET's jobs (setsid), poll
#   bash benchmarks/gpu_session.sh poll 560    # wait up to 560 s, report, pack results
#   bash benchmarks/gpu_session.sh kill TAG    # stop the job whose --tag is gpu_TAG
#   bash benchmarks/gpu_session.sh fm2s ROUNDS # FM2S default vs official code, alone
#
# Job sets: ``lease1`` is what the lease of 2026-11-23 ran (all at once); ``clidim``
# is the CLIDiM ablation still to do, alone on the GPU, CL+TV+SSIM first (the baseline
# again: the lease1 one, results/clidim_ablation/*_gpu_base.csv, mapped targets by their
# 99.8th percentile; move those CSVs aside when gpu_b2 lands, as both hold baseline_n30);
# ``w2s_rest`` the W2S rows that lease did not finish (care_k4_40k, care_bicubic_40k; the
# n2v and deconoising GPU scores were lost); ``clidim_cl`` CL+TV+SSIM alone, n = 30 then
# 16, in one process (the 2026-12-04 lease of 15 device-minutes).
#
# ``fm2s`` times the default FM2S against the unmodified official FM2S.py on the GPU
# (benchmarks/fm2s_vs_official.py, both sides on CUDA, alternating fresh processes),
# the paper's "6 s" on an RTX 3090 being the anchor; run it before any job starts.
# It needs .gpu_data/fmd_test_mix/{raw,gt}/Confocal_FISH_3.png and the official code
# exported into .gpu_data/fm2s-official (FM2S.py, configs.py, LICENSE, .commit).
#
# Needs, carried with the working tree: the W2S 8-bit data in .gpu_data/w2s_8bit and
# the PyWavelets wheel in .whl/ (the machine has torch, numpy, scipy, scikit-image and
# tifffile, but no PyWavelets, and reaches no package index). Results (the results
# folder and the logs; models stay there) are packed into $OUT/gpu_results.tgz at
# every poll. Logs worth keeping go with their benchmark's results, as
# results/w2s_care/gpu_logs_2026-11-23/ and results/clidim_ablation/gpu_logs_2026-11-23/.
#
# The jobs run in a copy of the tree under /tmp: every device command first syncs the
# working tree with this machine's, which deletes files the jobs wrote into tracked
# folders (2026-11-23: a results CSV written between two commands was lost that way).
# They share one GPU by time slicing: seven processes made each CARE model take
# ~1,230 s of wall time, so per-model GPU timings need a run of their own.
set -u
LOGS=/tmp/gpu_logs
WORK=/tmp/md_work
export PYTHONPATH=$WORK/src:/tmp/site PYTHONUNBUFFERED=1
mkdir -p "$LOGS"

W2S="python3 benchmarks/w2s_care.py run --device cuda --threads 2 --data-root .gpu_data"
CLIDIM="python3 benchmarks/clidim_ablation.py --data-root .gpu_data run --device cuda --threads 2 \
--iterations 2400 --batch 128 --steps-per-epoch 3 --model-dir /tmp/clidim_models"
# CL+TV+SSIM, n = 30 then 16 (float32: precision "auto" on CUDA)
CL_JOB="$CLIDIM --variants cl+tv+ssim --n-train 30 16 --tag gpu_cl"
declare -A JOBS
jobs_of() {
  case "$1" in
    lease1) JOBS=(
      [care_k30]="$W2S --rows care_k30_40k --tag gpu_k30"
      [care_k16]="$W2S --rows care_k16_40k --tag gpu_k16"
      [care_k8_k4]="$W2S --rows care_k8_40k care_k4_40k --tag gpu_k8"
      [care_sr]="$W2S --rows care_2x_40k care_bicubic_40k --tag gpu_sr"
      [self]="$W2S --rows n2v deconoising --tag gpu_self"
      [clidim_cl]="$CLIDIM --variants cl+tv+ssim --n-train 30 16 --tag gpu_cl"
      [clidim_base]="$CLIDIM --variants baseline --n-train 30 16 --tag gpu_base") ;;
    clidim) JOBS=(
      [clidim_cl]="$CL_JOB"
      [clidim_rest]="$CLIDIM --variants baseline --n-train 30 16 --tag gpu_b2; \
$CLIDIM --variants ssim cl tv --n-train 30 --tag gpu_rest") ;;
    clidim_cl) JOBS=(
      [clidim_cl]="$CL_JOB") ;;
    w2s_rest) JOBS=(
      [care_rest]="$W2S --rows care_bicubic_40k care_k4_40k --tag gpu_rest"
      [self]="$W2S --rows n2v deconoising --tag gpu_self") ;;
    *) echo "unknown job set ${1:-(none)}: lease1, clidim, clidim_cl or w2s_rest" >&2; return 2 ;;
  esac
}

install_wheels() {  # the carried .whl/ into /tmp/site (on PYTHONPATH)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
}

start() {
  jobs_of "$1" || exit 2
  install_wheels || exit 1
  python3 -c "import torch, pywt; print(torch.__version__, torch.cuda.get_device_name())" \
    || exit 1
  mkdir -p "$WORK" && cp -r . "$WORK" && cd "$WORK" || exit 1
  for name in "${!JOBS[@]}"; do
    setsid nohup bash -c "${JOBS[$name]}; echo \"exit \$?\"" >"$LOGS/$name.log" 2>&1 \
      </dev/null &
    echo "$!" >"$LOGS/$name.pid"
    echo "started $name: ${JOBS[$name]}"
  done
}

report() {
  date -u +%H:%M:%S
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  for log in "$LOGS"/*.log; do
    # the last progress-bar state or line of each job
    printf '%-12s %s\n' "$(basename "$log" .log)" \
      "$(tr '\r' '\n' <"$log" | grep -v '^\s*$' | tail -1 | cut -c1-150)"
  done
}

running() {
  pgrep -f "benchmarks/(w2s_care|clidim_ablation).py" >/dev/null
}

poll() {
  local until=$((SECONDS + $1))
  while ((SECONDS < until)) && running; do
    report
    sleep 60
  done
  report
  tar czf "$OUT/gpu_results.tgz" -C "$WORK" benchmarks/results "$LOGS" 2>/dev/null
  ls -la "$OUT"
}

fm2s() {
  # a stand-in virtualenv whose python runs the machine's python3 (torch, einops,
  # scipy); a symlink would not do: python3 there lives in an environment of its own
  mkdir -p /tmp/offvenv/bin
  printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" >/tmp/offvenv/bin/python
  chmod +x /tmp/offvenv/bin/python
  install_wheels || return 1
  nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv,noheader
  PYTHONPATH=$PWD/src:/tmp/site MICRODENOISE_DATA=.gpu_data timeout 300 \
    python3 benchmarks/fm2s_vs_official.py run \
    --rounds "$1" --official-dir .gpu_data/fm2s-official --official-venv /tmp/offvenv \
    --csv "$OUT/fm2s_gpu.csv"
}

case "${1:-}" in
  start) start "${2:-}" && poll "${3:-500}" ;;
  poll) poll "${2:-560}" ;;
  fm2s) fm2s "${2:-2}" ;;
  kill) pkill -f -- "--tag gpu_${2:?job tag, e.g. self}( |$)"; report ;;
  *) echo "usage: $0 start SET [SECONDS] | poll SECONDS | kill TAG | fm2s ROUNDS" >&2
     exit 2 ;;
esac
