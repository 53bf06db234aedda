"""Issue 32, lever 2 (first half): a semi-supervised student for PATE with public data (MNIST, 250 teachers).

PATE's student learns from public unlabeled images; the teachers label only the first `queries` of them, through
Confident-GNMax (`pate_student`, secret noise). Everything after the answers is post-processing: the student may use
every public image, labelled or not. This compares, on the SAME answers per seed (paired), students trained by

  plain      `pate_student`'s own: Adam on the answered images and their noisy labels (500 updates)
  shift      the same, each batch shifted by up to 2 pixels
  fixmatch   FixMatch (Sohn et al. 2020): labelled weak views + unlabeled strong views fitted to the weak views' confident
             predictions (threshold 0.95), weak = shift 2, strong = shift 4 + a 10 px cutout + pixel noise
  selftrain  plain, then two rounds of refitting on the answered images plus the public images it labels with
             probability >= 0.99 (shifted batches)

The public pool is the first half of the validation half of MNIST's test split (`validation_split`, seed 0), positions in
order; the second half of the validation half chooses (`select`). The held-out half is read only with --heldout, for
the variant chosen on `select`.

    python research/pate_semi.py --seed 0 --epsilon 1 > research/pate-semi-logs/eps1-seed0.log
"""
import argparse
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from dpsd_nb.data import load_dataset, validation_split
from dpsd_nb.models import accuracy, fresh_student, fit_classifier
from dpsd_nb.teachers import TeacherConfig, get_teachers, _shifted
from dpsd_nb.pate_analysis import calibrate_confident
from dpsd_nb.pate import pate_student

TEACHERS = TeacherConfig(teachers=250, epochs=20, width=16, hidden=64)  # bench/utility.py SETUPS['mnist']['teachers']
QUERIES = {1.: 200, 10.: 2000}  # the bench asks 200 at epsilon 1 (3,000 at 10, from a pool of 5,000; this pool holds 2,500)


def cutout(x, size, rng, fill):
    b, _, H, W = x.shape
    cy, cx = rng.integers(0, H, b), rng.integers(0, W, b)
    rows, cols = torch.arange(H)[None, :, None], torch.arange(W)[None, None, :]
    m = ((rows - torch.from_numpy(cy)[:, None, None]).abs() <= size // 2) & ((cols - torch.from_numpy(cx)[:, None, None]).abs() <= size // 2)
    return torch.where(m[:, None], torch.full_like(x, fill), x)


def fit_shift(model, x, y, steps, seed, lo, shift=2, lr=1e-3, batch=128):
    g, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / steps)))
    model.train()
    for _ in range(steps):
        i = torch.randint(len(x), (min(batch, len(x)),), generator=g)
        loss = F.cross_entropy(model(_shifted(x[i], shift, rng, lo)), y[i])
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    return model.eval()


def fixmatch(model, x, y, u, steps, seed, lo, tau=0.95, lam=1., mu=3, batch=64, lr=1e-3):
    g, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / steps)))
    used = []
    for _ in range(steps):
        model.train()
        i = torch.randint(len(x), (batch,), generator=g)
        j = torch.randint(len(u), (mu * batch,), generator=g)
        with torch.no_grad():
            p = model(_shifted(u[j], 2, rng, lo)).softmax(1)
            conf, pseudo = p.max(1)
            mask = (conf >= tau).float()
        strong = cutout(_shifted(u[j], 4, rng, lo), 10, rng, lo)
        strong = strong + 0.3 * torch.randn(strong.shape, generator=g)
        sup = F.cross_entropy(model(_shifted(x[i], 2, rng, lo)), y[i])
        unsup = (F.cross_entropy(model(strong), pseudo, reduction='none') * mask).mean()
        loss = sup + lam * unsup
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        used.append(mask.mean().item())
    return model.eval(), float(np.mean(used[-100:]))


@torch.no_grad()
def predict(model, x):
    model.eval()
    return torch.cat([model(b).softmax(1) for b in x.split(1024)])


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--epsilon', type=float, default=1.)
    p.add_argument('--steps', type=int, default=1500)
    p.add_argument('--queries', type=int, default=None, help='images asked (default: QUERIES[epsilon])')
    p.add_argument('--variants', nargs='*', default=['plain', 'shift', 'fixmatch', 'selftrain'])
    p.add_argument('--heldout', action='store_true', help='also report the held-out half (only for a variant already chosen)')
    a = p.parse_args()
    torch.set_num_threads(1)
    print('machine:', platform.platform(), platform.processor() or '', '| torch', torch.__version__, '| threads', torch.get_num_threads())
    print('command: python', ' '.join(sys.argv))
    data = load_dataset('mnist', root=os.environ.get('DPSD_NB_DATA', '/work/shared/data'))
    valid, held = validation_split(data.test)
    pool, select = (TensorDataset(*(t[s] for t in valid.tensors)) for s in (slice(0, 2500), slice(2500, None)))
    lo = -data.info.mean / data.info.std  # a blank pixel, normalized
    t0 = time.time()
    teachers, report = get_teachers(data, TEACHERS, 'cpu', progress=False)
    print(f'teachers: {time.time() - t0:.0f} s, plurality accuracy on the test split {report.plurality_accuracy:.3f}')
    eps, q = a.epsilon, a.queries or QUERIES[a.epsilon]
    s1, s2 = calibrate_confident(eps, 1e-5, q)
    x_pool = pool.tensors[0]
    t0 = time.time()
    r = pate_student(teachers, data.info, x_pool[:q], 200, s1, s2, 1e-5, seed=a.seed, device='cpu')  # secret noise: one draw
    ans = r.answers.answered
    x, y = x_pool[:q][ans], r.answers.labels[ans]
    truth = pool.tensors[1][:q][ans]
    print(f'epsilon {eps}: {q} asked, {len(x)} answered, labels correct {float((y == truth).float().mean()):.3f}, '
          f'guarantee {r.guarantee:.3f}, sigma1 {s1:.1f} sigma2 {s2:.1f}')
    out = {}
    def report_(name, model, t, extra=''):
        out[name] = accuracy(model, select)
        h = f' heldout {accuracy(model, held):.4f}' if a.heldout else ''
        print(f'RESULT variant={name} seed={a.seed} epsilon={eps} queries={q} answered={len(x)} select={out[name]:.4f}{h} seconds={time.time() - t:.0f} {extra}', flush=True)
    if 'plain' in a.variants: report_('plain', r.student, t0)
    if 'shift' in a.variants:
        t = time.time(); report_('shift', fit_shift(fresh_student(data.info, a.seed, 'cpu'), x, y, a.steps, a.seed, lo), t)
    if 'fixmatch' in a.variants:
        t = time.time(); m, used = fixmatch(fresh_student(data.info, a.seed, 'cpu'), x, y, x_pool, a.steps, a.seed, lo)
        report_('fixmatch', m, t, f'confident_share_last100={used:.3f}')
    for name, rounds, tau in (('selftrain', 2, 0.99), ('selftrain4', 4, 0.95)):
        if name not in a.variants: continue
        t = time.time()
        m = fit_shift(fresh_student(data.info, a.seed, 'cpu'), x, y, a.steps // 3, a.seed, lo)
        for rnd in range(rounds):
            pr = predict(m, x_pool); conf, lab = pr.max(1); keep = conf >= tau
            keep[:q] &= ~torch.isin(torch.arange(q), ans.nonzero().flatten())  # the answered images keep their answers
            xx, yy = torch.cat([x, x_pool[keep]]), torch.cat([y, lab[keep]])
            m = fit_shift(fresh_student(data.info, a.seed + 1 + rnd, 'cpu'), xx, yy, a.steps // 3, a.seed + 1 + rnd, lo)
        report_(name, m, t, f'pseudo_labelled={int(keep.sum())}')


if __name__ == '__main__':
    main()
