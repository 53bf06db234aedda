"""Issue 32, lever 3: how many answers should epsilon 10 buy on MNIST? (the recipe with more answers, the noise recalibrated)

`research/clean_bound.py` found that the epsilon-10 recipe's 3,000 answers, asked CLEAN, give 0.843 on the validation
half against 0.838 ± 0.019 with the noise: at this budget the noise costs about nothing and the number of answers is the
limit. Gaussian noise for the same epsilon grows only with about the square root of the answers, so this driver runs
the recipe (`dpsd_recipe('mnist', 10)`: 250 teachers, two pairs, refit on softened, denoised votes) with `--queries Q`
answers, the noise calibrated for Q at the same epsilon and delta (data-independent, replace-one), and the query steps
spread so that all Q are asked by about step 270 of 300 (`query_every` = 300 // ceil(Q / 100), the recipe's 6 for 3,000).
`--clean` asks the same Q answers without noise: the upper bound of that many answers.

Accuracy on the VALIDATION half of MNIST's test split (`validation_split`, seed 0); the held-out half is not read.

    OMP_NUM_THREADS=1 python research/answers_budget.py --queries 9000 --seed 0
"""
import argparse
import math
import os
import platform
import sys
import time
from dataclasses import replace

import torch

from dpsd_nb.data import load_dataset, validation_split
from dpsd_nb.models import accuracy
from dpsd_nb.teachers import get_teachers
from dpsd_nb.distill import PrivacyConfig, spread_every
from dpsd_nb.improve import dpsd_recipe, fit_together, pair_configs


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--queries', type=int, required=True, help="answers bought at epsilon --epsilon (the recipe buys 3,000 at 10)")
    p.add_argument('--epsilon', type=float, default=10.)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--clean', action='store_true', help="the same answers without noise (an upper bound, not private)")
    p.add_argument('--root', default='/work/shared/data')
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} on {torch.get_num_threads()} thread, "
          f"load average {os.getloadavg()[0]:.2f} at start\ncommand: python {' '.join(sys.argv)}", flush=True)
    data = load_dataset('mnist', root=args.root)
    valid, _ = validation_split(data.test)
    rec = dpsd_recipe('mnist', args.epsilon, 'label', seed=0)
    every = rec.cfg.query_every if args.queries == rec.queries else spread_every(int(rec.cfg.steps * 0.9), args.queries, rec.cfg.query_batch)
    cfg = replace(rec.cfg, seed=args.seed, query_every=every)
    teachers, report = get_teachers(data, rec.teachers, torch.device('cpu'), progress=False)
    privacy = PrivacyConfig('label', epsilon=math.inf if args.clean else args.epsilon, queries=args.queries)
    print(f"recipe: {rec.describe()}\nteachers: {report}\nconfig: {cfg}, pairs {rec.pairs}, answers {args.queries}"
          f"{' (clean)' if args.clean else ''}", flush=True)
    t0 = time.time()
    d = fit_together(data.info, teachers, privacy, pair_configs(cfg, rec.pairs), device='cpu')
    acc = accuracy(d.student, valid)
    print(f"RESULT epsilon={'inf' if args.clean else f'{d.epsilon:.3f}'} sigma={d.mechanism.sigma:.2f} seed={args.seed} answers={d.queries} "
          f"query_every={every} validation={acc:.4f} seconds={time.time() - t0:.0f}", flush=True)


if __name__ == '__main__':
    main()
