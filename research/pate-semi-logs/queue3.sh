#!/bin/bash
# issue 32 lever 2: four rounds at 0.95 against two at 0.99 on the same answers (100 asked, epsilon 1); then epsilon 10 (2,000 asked)
cd /work/main && . .venv/bin/activate
export OMP_NUM_THREADS=1
for s in 0 1 2; do python research/pate_semi.py --seed $s --epsilon 1 --queries 100 --variants plain selftrain selftrain4 > research/pate-semi-logs/eps1-q100-r4-seed$s.log 2>&1; done
for s in 0 1 2; do python research/pate_semi.py --seed $s --epsilon 10 --variants plain selftrain > research/pate-semi-logs/eps10-seed$s.log 2>&1; done
