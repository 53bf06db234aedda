"""Does Confident-GNMax help DPSD's label mode on generated queries? Plain label mode (GNMax on the candidates, every query
answered) against confident mode (`PrivacyConfig(mechanism='confident')`: answer only where the noisy top vote reaches
0.8 M), at the same target epsilon and the same number of queries asked.

Settings fixed before any run, none chosen by accuracy: the default job of bench/improve.py (digits, 20 teachers, 100 queries
spread over 200 steps in batches of 10, k = all classes, the plain loop); confident mode with PATE's rule, T = 0.8 M and
sigma1 / sigma2 = 150 / 40, both calibrated so that every query asked, charged the check and GNMax, meets the target.
Accuracy on the validation half of the test split (`validation_split`) per run; the held-out half only in the final table.
Also, on the queries asked (NOT private, for this measurement only): the answered fraction, the mean vote margin of all 20
teachers (top minus second count, in units of M), and the data-dependent epsilon (`pate_epsilon`), beside the guarantee.
The noise is secret: each seed is one draw of it. Writes bench/results/confident-digits.json.
    python bench/confident.py                  # digits, epsilon 1 and 10, 3 seeds, one CPU thread
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dpsd_nb.data import load_dataset, validation_split
from dpsd_nb.teachers import TeacherConfig, get_teachers
from dpsd_nb.distill import Distiller, DistillConfig, PrivacyConfig, spread_every
from dpsd_nb.models import accuracy
from dpsd_nb.pate_analysis import NOT_PRIVATE, pate_epsilon
from dpsd_nb.pate import public_votes

MODES = {'label (GNMax)': 'gaussian', 'confident (Confident-GNMax)': 'confident'}


def recording(d):
    "Keep every query `d` asks (generator outputs: free), to measure the teachers' votes on them afterwards."
    asked, answer = [], d.oracle.answer
    def record(x, *args):
        asked.append(x.detach().cpu()); return answer(x, *args)
    d.oracle.answer = record
    return asked


def vote_stats(d, teachers, asked):
    "On the queries asked: answered fraction (DP), mean top-minus-second vote margin / M and data-dependent epsilon (both NOT private)."
    votes = public_votes(teachers, torch.cat(asked)).double()
    top2 = votes.topk(2, dim=1).values
    margin = ((top2[:, 0] - top2[:, 1]) / votes.sum(1)).mean().item()
    if d.privacy.mechanism == 'confident': dep = d.confident_report().not_private.epsilon
    else: dep = pate_epsilon(votes.numpy(), np.ones(len(votes), bool), None, None, d.mechanism.sigma, d.privacy.delta).not_private.epsilon
    return dict(answered_fraction=d.released / d.queries, not_private=dict(mean_margin=margin, epsilon_data_dependent=dep, note=NOT_PRIVATE))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--epsilons', type=float, nargs='+', default=[1., 10.])
    p.add_argument('--queries', type=int, default=100)
    p.add_argument('--steps', type=int, default=200)
    p.add_argument('--batch', type=int, default=10)
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--out', default=str(Path(__file__).resolve().parent/'results'))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.time()
    command = 'python ' + ' '.join(sys.argv)
    machine = f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} on {torch.get_num_threads()} thread(s)"
    print(f"machine: {machine}, load average {os.getloadavg()[0]:.1f} at start\ncommand: {command}", flush=True)
    data = load_dataset('digits')
    valid, held = validation_split(data.test)
    teachers, _ = get_teachers(data, TeacherConfig(teachers=20, epochs=100), 'cpu', progress=False)
    cfg = DistillConfig(steps=args.steps, query_batch=args.batch, query_every=spread_every(args.steps, args.queries, args.batch))
    rows = []
    for eps in args.epsilons:
        for name, mechanism in MODES.items():
            for seed in range(args.seeds):
                t0 = time.time()
                d = Distiller(data.info, teachers, PrivacyConfig(mechanism=mechanism, epsilon=eps, queries=args.queries),
                              replace(cfg, seed=seed), device='cpu')  # secret noise
                asked = recording(d)
                d.fit()
                m = d.mechanism
                noise = dict(sigma=m.sigma) if mechanism == 'gaussian' else dict(sigma1=m.sigma1, sigma2=m.sigma2, threshold=m.threshold)
                rows.append(dict(mode=name, target_epsilon=eps, seed=seed, valid_accuracy=accuracy(d.student, valid),
                                 accuracy=accuracy(d.student, held), epsilon=d.epsilon, queries=d.queries, answered=d.released,
                                 **vote_stats(d, teachers, asked), **noise, seconds=time.time() - t0))
                r = rows[-1]
                print(f"eps {eps:g} | {name} | seed {seed}: valid {r['valid_accuracy']:.3f}, answered {r['answered']}/{r['queries']}, "
                      f"margin {r['not_private']['mean_margin']:.3f} M, epsilon {r['epsilon']:.3f} (data-dependent, NOT private: "
                      f"{r['not_private']['epsilon_data_dependent']:.3f}), {r['seconds']:.0f} s", flush=True)
    summary = []
    for eps in args.epsilons:
        for name in MODES:
            rs = [r for r in rows if r['target_epsilon'] == eps and r['mode'] == name]
            col = lambda f: [f(r) for r in rs]
            sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.
            v, h = col(lambda r: r['valid_accuracy']), col(lambda r: r['accuracy'])
            summary.append(dict(target_epsilon=eps, mode=name, valid_mean=statistics.mean(v), valid_sd=sd(v), heldout_mean=statistics.mean(h),
                                heldout_sd=sd(h), answered_fraction=statistics.mean(col(lambda r: r['answered_fraction'])),
                                epsilon=statistics.mean(col(lambda r: r['epsilon'])),
                                not_private=dict(mean_margin=statistics.mean(col(lambda r: r['not_private']['mean_margin'])),
                                                 epsilon_data_dependent=statistics.mean(col(lambda r: r['not_private']['epsilon_data_dependent'])))))
    print('\n| epsilon | mode | validation (mean ± sd) | held-out (mean ± sd) | answered | margin / M (NOT private) | epsilon (guarantee) '
          '| data-dependent epsilon (NOT private) |\n| --- | --- | --- | --- | --- | --- | --- | --- |')
    for s in summary:
        print(f"| {s['target_epsilon']:g} | {s['mode']} | {s['valid_mean']:.3f} ± {s['valid_sd']:.3f} | {s['heldout_mean']:.3f} ± {s['heldout_sd']:.3f} "
              f"| {s['answered_fraction']:.2f} | {s['not_private']['mean_margin']:.3f} | {s['epsilon']:.3f} | {s['not_private']['epsilon_data_dependent']:.3f} |")
    total = time.time() - t_start
    print(f"\ntotal {total:.0f} s, load average {os.getloadavg()[0]:.1f} at the end")
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    res = dict(dataset='digits', machine=machine, command=command, seconds=total, queries=args.queries, steps=args.steps, batch=args.batch,
               seeds=args.seeds, teachers=20, threshold_share=0.8, sigma_ratio='150 / 40', noise='secret: each seed is one draw',
               rows=rows, summary=summary,
               selection='nothing chosen: settings fixed by rule before the run; valid_accuracy is the validation half, accuracy the held-out half',
               not_private_note='not_private fields are computed from the private votes on the queries asked: NOT private, for this measurement only')
    tmp = out/'.confident-digits.json.tmp'; tmp.write_text(json.dumps(res, indent=1)); tmp.replace(out/'confident-digits.json')


if __name__ == '__main__':
    main()
