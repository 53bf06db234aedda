"""Do the free improvements of 05c_improve pay? Each one against the plain loop, on the validation half of the test
split (where settings are chosen), over several seeds, with the held-out half beside it (reported, never chosen by).

The setting is the default job (`dpsd-nb run`): digits, 20 teachers, label mode, Gaussian votes, epsilon 10, 100
queries spread over 200 steps in batches of 10. Every variant spends the same budget; the noise is secret, so each
seed is one draw of it. Writes bench/results/improve-<dataset>.json (shown by 05c_improve).
    python bench/improve.py                    # digits, 3 seeds, one CPU thread
    python bench/improve.py --seeds 5 --epsilon 1
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

import torch

from dpsd_nb.data import load_dataset, validation_split
from dpsd_nb.teachers import TeacherConfig, get_teachers
from dpsd_nb.distill import Distiller, DistillConfig, PrivacyConfig, spread_every
from dpsd_nb.models import accuracy
from dpsd_nb.improve import fit_together, pair_configs

VARIANTS = {  # name: (DistillConfig changes, generator-student pairs)
    'plain loop': ({}, 1),
    'refit': (dict(refit=True), 1),
    'softened votes + refit': (dict(vote_temperature=0.6, refit=True), 1),
    'denoised + softened + refit': (dict(vote_temperature=0.6, refit=True, denoise=4), 1),
    'weight average': (dict(ema=0.99), 1),
    'balanced queries': (dict(query_pool=4), 1),
    'two pairs': ({}, 2),
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset', default='digits')
    p.add_argument('--epsilon', type=float, default=10.)
    p.add_argument('--queries', type=int, default=100)
    p.add_argument('--steps', type=int, default=200)
    p.add_argument('--batch', type=int, default=10)
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--out', default=str(Path(__file__).resolve().parent/'results'))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    command = 'python ' + ' '.join(sys.argv)
    machine = f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} on {torch.get_num_threads()} thread(s)"
    print(f"machine: {machine}, load average {os.getloadavg()[0]:.1f} at start\ncommand: {command}", flush=True)
    data = load_dataset(args.dataset)
    valid, held = validation_split(data.test)
    teachers, _ = get_teachers(data, TeacherConfig(teachers=20, epochs=100), 'cpu', progress=False)
    privacy = PrivacyConfig(epsilon=args.epsilon, queries=args.queries)  # secret noise
    base = DistillConfig(steps=args.steps, query_batch=args.batch, query_every=spread_every(args.steps, args.queries, args.batch))
    rows = []
    for name, (knobs, pairs) in VARIANTS.items():
        for seed in range(args.seeds):
            t0 = time.time()
            cfg = replace(base, seed=seed, **knobs)
            d = (fit_together(data.info, teachers, privacy, pair_configs(cfg, pairs), device='cpu') if pairs > 1 else
                 Distiller(data.info, teachers, privacy, cfg, device='cpu').fit())
            rows.append(dict(variant=name, seed=seed, valid_accuracy=accuracy(d.student, valid), accuracy=accuracy(d.student, held),
                             epsilon=d.epsilon, queries=d.queries, seconds=time.time() - t0))
            print(rows[-1], flush=True)
    summary = []
    for name in VARIANTS:
        v = [r['valid_accuracy'] for r in rows if r['variant'] == name]
        h = [r['accuracy'] for r in rows if r['variant'] == name]
        summary.append(dict(variant=name, valid_mean=statistics.mean(v), valid_sd=statistics.stdev(v) if len(v) > 1 else 0.,
                            heldout_mean=statistics.mean(h), heldout_sd=statistics.stdev(h) if len(h) > 1 else 0.))
    print('\n| variant | validation (mean ± sd) | held-out (mean ± sd) |\n| --- | --- | --- |')
    for s in summary: print(f"| {s['variant']} | {s['valid_mean']:.3f} ± {s['valid_sd']:.3f} | {s['heldout_mean']:.3f} ± {s['heldout_sd']:.3f} |")
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    res = dict(dataset=args.dataset, machine=machine, command=command, epsilon=args.epsilon, queries=args.queries, steps=args.steps,
               batch=args.batch, seeds=args.seeds, teachers=20, noise='secret: each seed is one draw', rows=rows, summary=summary,
               selection='choose on valid_accuracy (the validation half); accuracy is the held-out half, reported only')
    tmp = out/f'.improve-{args.dataset}.json.tmp'; tmp.write_text(json.dumps(res, indent=1)); tmp.replace(out/f'improve-{args.dataset}.json')


if __name__ == '__main__':
    main()
