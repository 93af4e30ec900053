#!/usr/bin/env bash
# Run benchmarks/toy_bench.py over all six held-out concepts in two parallel single-thread shards (two CPU
# cores: two 1-thread processes finish sooner than one 2-thread process), then merge with toy_report.py.
#
#   bash benchmarks/run_toy_suite.sh OUT_PREFIX "METHODS" [BUDGET] [SEEDS] [FIRST_SEED]
#   bash benchmarks/run_toy_suite.sh benchmarks/results/v3_main "gfti;gfti+context;seed-faithful;gradient-ti" 4096 1
set -euo pipefail
out=${1:?output prefix}
methods=${2:?methods}
budget=${3:-4096}
seeds=${4:-1}
first_seed=${5:-0}
py=${PYTHON:-.venv/bin/python}
for first in 0 3; do
  "$py" benchmarks/toy_bench.py --first-concept "$first" --concepts 3 --seeds "$seeds" --first-seed "$first_seed" --budget "$budget" \
    --images 16 --threads 1 --methods "$methods" --out "${out}_c${first}" > "${out}_c${first}.log" 2>&1 &
done
wait
"$py" benchmarks/toy_report.py "${out}"_c*/results.json --out "$out"
