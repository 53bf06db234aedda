#!/bin/bash
# a smaller boundary share (0.25), seeds 0-2, two runs at a time (one thread each)
cd /work/main && . .venv/bin/activate
export OMP_NUM_THREADS=1
python research/ceiling.py --name boundary25 --seed 0 --answers 20000 --boundary 0.25 > research/ceiling-logs/boundary25-seed0.log 2>&1 &
python research/ceiling.py --name boundary25 --seed 1 --answers 20000 --boundary 0.25 > research/ceiling-logs/boundary25-seed1.log 2>&1
wait
python research/ceiling.py --name boundary25 --seed 2 --answers 20000 --boundary 0.25 > research/ceiling-logs/boundary25-seed2.log 2>&1
