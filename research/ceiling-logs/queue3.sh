#!/bin/bash
# third queue: the winning loop (boundary share 0.5, package defaults otherwise) with a larger budget: 30,000 answers
cd /work/main && . .venv/bin/activate
export OMP_NUM_THREADS=1
while kill -0 26270 2>/dev/null; do sleep 5; done  # queue2.sh finishes first
for s in 0 1 2; do python research/ceiling.py --name boundary-30k --seed $s --answers 30000 --boundary 0.5 > research/ceiling-logs/boundary-30k-seed$s.log 2>&1; done
