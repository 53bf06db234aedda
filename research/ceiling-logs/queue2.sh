#!/bin/bash
# second queue (after the shift lever lost on two seeds, the DAFL terms are measured on top of the boundary share alone)
cd /work/main && . .venv/bin/activate
export OMP_NUM_THREADS=1
while kill -0 25966 2>/dev/null; do sleep 5; done  # boundary-shift seed 2 of queue.sh finishes first
run() { name=$1; shift; for s in 0 1 2; do python research/ceiling.py --name $name --seed $s "$@" > research/ceiling-logs/$name-seed$s.log 2>&1; done; }
run boundary-dafl --answers 20000 --boundary 0.5 --act 0.1 --ie 5
