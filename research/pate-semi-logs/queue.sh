#!/bin/bash
# issue 32 lever 2 runs, one at a time, one thread each
cd /work/main && . .venv/bin/activate
export OMP_NUM_THREADS=1
python research/pate_semi.py --seed 0 --epsilon 1 --variants selftrain4 > research/pate-semi-logs/eps1-seed0-selftrain4.log 2>&1
for s in 1 2; do python research/pate_semi.py --seed $s --epsilon 1 --variants plain shift selftrain selftrain4 > research/pate-semi-logs/eps1-seed$s.log 2>&1; done
