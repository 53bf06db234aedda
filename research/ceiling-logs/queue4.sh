#!/bin/bash
# three more seeds of the baseline and the boundary share at 20,000 answers, two runs at a time (one thread each)
cd /work/main && . .venv/bin/activate
export OMP_NUM_THREADS=1
for s in 3 4 5; do
  python research/ceiling.py --name baseline --seed $s --answers 20000 > research/ceiling-logs/baseline-seed$s.log 2>&1 &
  python research/ceiling.py --name boundary --seed $s --answers 20000 --boundary 0.5 > research/ceiling-logs/boundary-seed$s.log 2>&1
  wait
done
