#!/bin/bash
# the runs of bench/results/ceiling-mnist.md, one at a time, one thread each
cd /work/main && . .venv/bin/activate
export OMP_NUM_THREADS=1
run() { name=$1; shift; for s in 0 1 2; do python research/ceiling.py --name $name --seed $s --answers 20000 "$@" > research/ceiling-logs/$name-seed$s.log 2>&1; done; }
run baseline
run boundary --boundary 0.5
run boundary-shift --boundary 0.5 --shift 2
# run boundary-shift-dafl --boundary 0.5 --shift 2 --act 0.1 --ie 5   # NOT run: queue stopped after boundary-shift (shift lost on seeds 0, 1); see queue2.sh
