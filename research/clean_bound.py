"""Issue 32: how far can MNIST's private recipes go if their answers were clean? (an upper bound for the epsilon 1 and 10 rows)

The bench's MNIST rows at epsilon 1 and 10 (`dpsd_recipe('mnist', eps)`: 250 teachers, 200 / 3,000 answers, two pairs,
query every 6th step, refit on all answers with softened votes and denoising) run here with the SAME number of answers,
the same loop and the same teachers, but without noise (`PrivacyConfig(epsilon=inf, queries=<the recipe's>)`): every
answer is the teachers' clean plurality label (with sigma = 0 the softened targets are the one-hot plurality, and
denoising is not applied). Whatever the mechanism, a row that buys this many answers on this loop's queries cannot do
better than this on average: the noise only takes away. The gap between this and the noisy row is what the noise costs;
the gap between this and the one-teacher ceiling (bench/results/ceiling-mnist.md) is what the few answers and the
ensemble's weaker labels cost.

Accuracy on the VALIDATION half of MNIST's test split (`validation_split`, seed 0); the held-out half is not read.

    OMP_NUM_THREADS=1 python research/clean_bound.py --epsilon 1 --seed 0
"""
import argparse
import math
import os
import platform
import sys
import time
from dataclasses import asdict

import torch

from dpsd_nb.data import load_dataset, validation_split
from dpsd_nb.models import accuracy
from dpsd_nb.teachers import get_teachers
from dpsd_nb.distill import PrivacyConfig
from dpsd_nb.improve import dpsd_recipe, fit_together, pair_configs


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--epsilon', type=float, required=True, help="the recipe whose answers are counted (1 or 10)")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--boundary', type=float, default=None, help="override the recipe's boundary share")
    p.add_argument('--root', default='/work/shared/data')
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} on {torch.get_num_threads()} thread, "
          f"load average {os.getloadavg()[0]:.2f} at start\ncommand: python {' '.join(sys.argv)}", flush=True)
    data = load_dataset('mnist', root=args.root)
    valid, _ = validation_split(data.test)
    rec = dpsd_recipe('mnist', args.epsilon, 'label', seed=0)
    cfg = rec.cfg if args.boundary is None else rec.cfg.__class__(**{**asdict(rec.cfg), 'boundary': args.boundary})
    cfg = cfg.__class__(**{**asdict(cfg), 'seed': args.seed})
    teachers, report = get_teachers(data, rec.teachers, torch.device('cpu'), progress=False)
    print(f"recipe: {rec.describe()}\nteachers: {report}\nconfig: {cfg}, pairs {rec.pairs}, answers {rec.queries} (clean)", flush=True)
    t0 = time.time()
    d = fit_together(data.info, teachers, PrivacyConfig('label', epsilon=math.inf, queries=rec.queries), pair_configs(cfg, rec.pairs), device='cpu')
    acc = accuracy(d.student, valid)
    print(f"RESULT epsilon_recipe={args.epsilon:g} seed={args.seed} boundary={cfg.boundary} answers={d.queries} "
          f"validation={acc:.4f} seconds={time.time() - t0:.0f}", flush=True)


if __name__ == '__main__':
    main()
