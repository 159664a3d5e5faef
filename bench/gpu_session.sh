#!/usr/bin/env bash
# One lent-GPU session in one call: the CUDA-graph test, the throughput bench, then
# ogbench_state's AM training (both seeds at once) in three time-limited segments that end
# END_S seconds after the start. Evaluation and the report run afterwards on any machine:
# unpack $OUT/am_s*.tar into WORK/runs, then
#   python bench/ogbench_state.py --work WORK --agents am --seeds 0,1 --stage eval
#   python bench/ogbench_state.py --work WORK --agents am --seeds 0,1 --stage report ...
#
#   run (device): bash bench/gpu_session.sh CACHE WHEELS   with carry [CACHE, WHEELS]
#
# CACHE: a state cache from `ogbench_state.py --stage data` (31 MB for 200k transitions);
# WHEELS: rosbags and its dependencies as py3.12 wheels (README.md of the device notes).
# The run folders come back as one tar per run without their resume state (16 MiB limit).
# DEVICE=cpu END_S=120 TP_ARGS='--seconds 0.3 --rounds 1 --calls 10' rehearses it here.
set -uo pipefail
if [[ $# -lt 2 || ! -f $1/manifest.json ]]; then
    echo "usage: bash bench/gpu_session.sh CACHE WHEELS (CACHE holds manifest.json)" >&2
    exit 2
fi
cache=$(realpath "$1") wheels=$2
export PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda} END_S=${END_S:-565} OUT=${OUT:-/tmp/gpu_session_out}
TP_ARGS=${TP_ARGS:---seconds 2 --rounds 2 --calls 200}
mkdir -p "$OUT"
t0=$(date +%s)
if [[ $DEVICE == cuda ]]; then
    python3 -m pip install --quiet --no-index --no-deps --no-compile --target /tmp/site \
        "$wheels"/*.whl
    export PYTHONPATH=/tmp/site
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
fi
export PYTHONPATH="$PWD/src/am_learning:$PWD/src/am_sim:$PWD/src/am_dataset_recorder:${PYTHONPATH:-}"
echo "== CUDA graph test $(( $(date +%s) - t0 )) s"
timeout 120 python3 -m pytest -q -p no:cacheprovider src/am_learning/test/test_learning.py \
    -k cuda_graph 2>&1 | tail -n 15
if [[ -z ${SKIP_TP:-} ]]; then
    echo "== throughput $(( $(date +%s) - t0 )) s"
    timeout 150 python3 bench/throughput.py --device "$DEVICE" $TP_ARGS --out "$OUT" 2>&1 \
        | tail -n 8
fi
left=$(( END_S - ($(date +%s) - t0) ))
seg_min=$(python3 -c "print(round(($left - 50) / 3 / 60, 2))")
echo "== train $(( $(date +%s) - t0 )) s: $left s left, 3 segments of $seg_min min"
work=/tmp/gpu_session_work
mkdir -p $work && ln -sfn "$cache" $work/cache
timeout "$left" python3 bench/ogbench_state.py --work $work --stage train --train-jobs 2 \
    --agents am --seeds 0,1 --updates 1000000 --curve 40000,90000 --time-limit-min "$seg_min" \
    --device "$DEVICE" --threads 6 --set batch_size=1024 --set network.trunk_dim=512 \
    --set 'network.hidden_dims=[512,512]' --set network.layer_norm=true \
    --set checkpoint_interval=20000 --set log_interval=1000 2>&1 | tail -n 20
echo "== pack $(( $(date +%s) - t0 )) s"
for run in $work/runs/*; do
    tar -cf "$OUT/$(basename "$run").tar" -C $work/runs --exclude trainer.safetensors \
        "$(basename "$run")"
done
ls -la "$OUT"
echo "== end $(( $(date +%s) - t0 )) s"
