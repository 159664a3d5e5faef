#!/usr/bin/env bash
# ogbench_state's training stage on a lent GPU machine, sized to a time budget.
#
#   source bench/device_setup.sh
#   bash bench/gpu_ogbench_state.sh CACHE WORK BUDGET_S [ogbench_state.py arguments...]
#
# Every agent and seed trains at once on the one GPU (small state networks leave it mostly
# idle, one process cannot fill it). A probe of PROBE_S seconds measures the updates/s of
# all of them together; --updates is then set so that the bench's train stage (two segments:
# a curve snapshot at half way, then the end) fits BUDGET_S (WORK/updates.txt keeps N).
# Evaluation and the report run afterwards on any machine holding WORK; they read each
# run's checkpoints and update counts from its folder:
#   python bench/ogbench_state.py --work WORK --agents ... --seeds ... --stage eval
#   python bench/ogbench_state.py --work WORK --agents ... --seeds ... --stage report
set -euo pipefail
if [[ $# -lt 3 ]]; then
    echo "usage: bash bench/gpu_ogbench_state.sh CACHE WORK BUDGET_S [ogbench_state.py arguments...]" >&2
    exit 2
fi
cache=$1 work=$2 budget_s=$3
if [[ ! -f $cache/manifest.json ]]; then  # else the bench would start generating data
    echo "$cache is not a dataset cache (no manifest.json): build it with ogbench_state.py --stage data" >&2
    exit 2
fi
shift 3
probe_s=${PROBE_S:-40}
runs=$(python3 - "$@" <<'EOF'
import argparse, sys
p = argparse.ArgumentParser()
p.add_argument('--agents', default='am,gcbc,her,her_neg')
p.add_argument('--seeds', default='0,1')
a, _ = p.parse_known_args(sys.argv[1:])
print(len([x for x in a.agents.split(',') if x]) * len([x for x in a.seeds.split(',') if x]))
EOF
)
mkdir -p "$work/probe"
for w in "$work" "$work/probe"; do
    [[ -e $w/cache ]] || ln -s "$(realpath "$cache")" "$w/cache"
done
start=$(date +%s)

# Probe: the bench's own train stage, every run at once, stopped by its time limit.
if ! python3 bench/ogbench_state.py --work "$work/probe" --stage train --train-jobs "$runs" \
    --updates 1000000 --time-limit-min "$(python3 -c "print($probe_s / 60)")" "$@" \
    >"$work/probe.log" 2>&1; then
    echo "the probe failed; the end of $work/probe.log:" >&2
    tail -n 30 "$work/probe.log" >&2
    exit 1
fi
rate=$(python3 - "$work/probe/runs" <<'EOF'
import json, sys
from pathlib import Path
times = [json.loads(p.read_text()) for p in Path(sys.argv[1]).glob('*/train_time.json')]
print(min(t['end_step'] / t['train_wall_s'] for t in times))
EOF
)
left=$(( budget_s - ($(date +%s) - start) - 60 ))  # 60 s: two data loads, saving, packing
updates=$(python3 -c "print(max(1000, int($rate * $left * 0.85) // 1000 * 1000))")
echo "probe: $rate updates/s per run with $runs runs at once; $left s left -> $updates updates"
echo "$updates" >"$work/updates.txt"

python3 bench/ogbench_state.py --work "$work" --stage train --train-jobs "$runs" \
    --updates "$updates" --curve "$(( updates / 2 ))" "$@"
echo "trained $runs runs to $updates updates in $(( $(date +%s) - start )) s"
