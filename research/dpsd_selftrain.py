"""Issue 32, lever 2 (second half): self-training for DPSD, anchored to the answers (MNIST, epsilon 10, the recipe's loop).

One run of the bench's MNIST epsilon 10 row (`dpsd_recipe('mnist', 10.)`: 250 teachers, 3,000 answers, two pairs, refit on
softened, denoised votes; secret noise) per seed; then, on the SAME run (paired), students refitted after the run from what
it released, all post-processing of DP outputs (the answers, the students, the generators); no teacher is asked again:

  release    the run's own released student (the recipe)
  anchored   the released student labels a pool of generator samples (both pairs' generators, class-balanced, the queries'
             pixel noise); a fresh student is refitted (the recipe's refit: final_steps updates, cosine rate) on the answers
             with their final targets plus the pool images labelled with probability >= 0.99 (one-hot); twice (the second
             round's labeller is the first round's student)
  selfpate   `pate.fit_self_trained` on the answers' hard labels (argmax of the final targets) and the same pool: PATE's
             self-training (shifted batches, 2 rounds at 0.99), which lifted PATE with public data (bench/results/pate-semi-mnist.md)

Accuracy on the VALIDATION half of MNIST's test split (`validation_split`, seed 0); the held-out half is not read.

    OMP_NUM_THREADS=1 python research/dpsd_selftrain.py --seed 0 > research/dpsd-selftrain-logs/seed0.log
"""
import argparse
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

from dpsd_nb.data import load_dataset, validation_split
from dpsd_nb.models import accuracy
from dpsd_nb.teachers import get_teachers
from dpsd_nb.distill import PrivacyConfig
from dpsd_nb.improve import dpsd_recipe, fit_together, pair_configs
from dpsd_nb.pate import fit_self_trained


def pool_of(d, n, seed):
    "n generator samples per pair, class-balanced, with the queries' pixel noise (post-processing of the released generators)."
    g, C, out = torch.Generator().manual_seed(seed), d.info.num_classes, []
    for pair in [d, *d.partners]:
        pair.generator.eval()
        with torch.no_grad():
            y = torch.arange(n) % C
            x = pair.generator(torch.randn(n, pair.cfg.latent, generator=g), y)
            out.append((x + pair.cfg.query_noise * torch.randn(x.shape, generator=g)).clamp(-1, 1))
    return torch.cat(out)


def anchored(d, X, Y, pool, rounds, threshold, seed):
    "Refit a fresh student (the recipe's refit) on the answers' final targets plus the pool images the labeller is sure of, `rounds` times."
    labeller, kept = d.student, []
    C = d.info.num_classes
    for r in range(rounds):
        with torch.no_grad(): p = torch.cat([labeller.eval()(b).softmax(1) for b in pool.split(1024)])
        conf, lab = p.max(1)
        keep = conf >= threshold
        kept.append(int(keep.sum()))
        labeller, _ = d._fresh_student(torch.cat([X, pool[keep]]), torch.cat([Y, F.one_hot(lab[keep], C).float()]), seed + 100 + r)
    return labeller.eval(), kept


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--epsilon', type=float, default=10.)
    p.add_argument('--pool', type=int, default=10000, help='generator samples per pair')
    p.add_argument('--root', default='/work/shared/data')
    p.add_argument('--dataset', default='mnist', help='digits: a quick check of the script only')
    p.add_argument('--steps', type=int, default=None, help="the loop's steps (default the recipe's)")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} on {torch.get_num_threads()} thread, "
          f"load average {os.getloadavg()[0]:.2f} at start\ncommand: python {' '.join(sys.argv)}", flush=True)
    data = load_dataset(args.dataset, root=args.root)
    valid, _ = validation_split(data.test)
    rec = dpsd_recipe(args.dataset, args.epsilon, 'label', seed=0, steps=args.steps)
    teachers, report = get_teachers(data, rec.teachers, torch.device('cpu'), progress=False)
    cfg = rec.cfg.__class__(**{**rec.cfg.__dict__, 'seed': args.seed})
    print(f"recipe: {rec.describe()}\nconfig: {cfg}", flush=True)
    t0 = time.time()
    d = fit_together(data.info, teachers, PrivacyConfig('label', epsilon=args.epsilon, delta=1e-5, queries=rec.queries),
                     pair_configs(cfg, rec.pairs), device='cpu')
    print(f"run: epsilon {d.epsilon:.4f}, answers {d.released}, {time.time() - t0:.0f} s", flush=True)
    res = {'release': accuracy(d.student, valid)}
    print(f"RESULT seed={args.seed} variant=release validation={res['release']:.4f}", flush=True)
    X = torch.cat(d.buffer['x'])
    t1 = time.time(); Y = d._final_targets(); print(f"final targets recomputed in {time.time() - t1:.0f} s", flush=True)
    pool = pool_of(d, args.pool, args.seed)
    t1 = time.time()
    s, kept = anchored(d, X, Y, pool, 2, 0.99, args.seed)
    res['anchored'] = accuracy(s, valid)
    print(f"RESULT seed={args.seed} variant=anchored validation={res['anchored']:.4f} kept={kept} of {len(pool)} seconds={time.time() - t1:.0f}", flush=True)
    t1 = time.time()
    s = fit_self_trained(data.info, X, Y.argmax(1), pool, rounds=2, threshold=0.99, shift=2, steps=500, seed=args.seed)
    res['selfpate'] = accuracy(s, valid)
    print(f"RESULT seed={args.seed} variant=selfpate validation={res['selfpate']:.4f} kept={s.pseudo_labelled} seconds={time.time() - t1:.0f}", flush=True)
    print(f"SUMMARY seed={args.seed} " + ' '.join(f"{k}={v:.4f}" for k, v in res.items()) + f" total_seconds={time.time() - t0:.0f}", flush=True)


if __name__ == '__main__':
    main()
