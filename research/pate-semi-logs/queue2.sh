#!/bin/bash
# issue 32 lever 3 (first look): fewer images asked at epsilon 1, plain and self-trained students on the same answers
cd /work/main && . .venv/bin/activate
export OMP_NUM_THREADS=1
for q in 100 50; do for s in 0 1 2; do python research/pate_semi.py --seed $s --epsilon 1 --queries $q --variants plain selftrain > research/pate-semi-logs/eps1-q$q-seed$s.log 2>&1; done; done
