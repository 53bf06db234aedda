"""Teachers that agree off the data manifold: vote margins on generated queries, and what they do to the student.

Digits, 20 teachers, 100 epochs (bench/utility.py's SETUPS), trained with the plain recipe and with each
augmentation of `TeacherConfig` (input noise, mixup within a teacher's own batch, random shifts); the settings
(RECIPES) were fixed before any run. Each augmentation uses only the teacher's own part, so the privacy unit
and every epsilon are unchanged (tests/test_teacher_aug.py). For each recipe:

- teacher accuracy: the plurality vote on the validation half of the test split (validation_split, seed 0);
- vote margin: mean of (top votes - runner-up votes) / M, on (a) the validation images, (b) generated queries:
  the 100 queries each DPSD run actually asked (its own), 1000 images of the trained generator of the plain
  recipe's first run (the same images for every recipe) and 1000 of an untrained `Generator` (seed 0), each
  with the loop's query pixel noise (DistillConfig.query_noise);
- flip rate: the chance that the Gaussian noise of the label mechanism at epsilon 1 and 10 (100 queries,
  sigma from PrivacyConfig) moves the noisy argmax off the teachers' plurality, on each query set (a Monte
  Carlo of this script's own, with reproducible draws: an analysis, not a release); and for each run the
  share of its released labels that differ from the clean plurality;
- the student: DPSD label mode (Gaussian votes, all classes) at epsilon 10, the digits path of bench/utility.py
  (DistillConfig(steps=300), PrivacyConfig(queries=100)), --seeds seeds, secret noise (each run one draw);
  accuracy on the validation half; the held-out half once, at the end, after every run.
    python bench/margin.py                       # about 20 minutes on one CPU thread
    python bench/margin.py --epsilons 10 1       # the students at epsilon 1 too
"""
import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

from dpsd_nb.data import load_dataset, validation_split
from dpsd_nb.models import Generator, resolve_device, seeded
from dpsd_nb.teachers import TeacherConfig, get_teachers, teacher_logits, class_votes
from dpsd_nb.distill import Distiller, DistillConfig, PrivacyConfig
from dpsd_nb.models import accuracy
from dpsd_nb.evaluate import predicted_labels, synthetic_images
from dpsd_nb.accountant import NEIGHBOUR_RELATION, privacy_unit
from dpsd_nb.mechanisms import noise_note

BASE = dict(teachers=20, epochs=100)  # bench/utility.py's digits teachers
RECIPES = {  # fixed before any run
    'plain': {},
    'input noise 0.3': dict(input_noise=0.3),  # the pixel noise the loop adds to its queries (DistillConfig.query_noise)
    'input noise 1.0': dict(input_noise=1.0),  # half the pixel range: far off the manifold
    'mixup 0.4': dict(mixup=0.4),
    'shift 1': dict(shift=1),  # one pixel of an 8x8 image
}
QUERIES, DELTA, GENERATED, DRAWS = 100, 1e-5, 1000, 200


def noisy(x, std, seed):
    "Queries as the loop asks them: pixel noise of `std`, clamped to the pixel range."
    return (x + std * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)


def margins(teachers, x, sigmas, seed=0):
    "Mean vote margin (units of M), share of ties, and per sigma the chance that Gaussian vote noise flips the plurality."
    votes = class_votes(teacher_logits(teachers, x)).float().cpu()
    top2 = votes.topk(2, dim=1).values
    g, plural = torch.Generator().manual_seed(seed), votes.argmax(1)
    flips = {}
    for name, s in sigmas.items():
        moved = (votes[None] + s * torch.randn(DRAWS, *votes.shape, generator=g)).argmax(2)
        flips[name] = (moved != plural).float().mean().item()
    return dict(margin=((top2[:, 0] - top2[:, 1]) / teachers.members).mean().item(), ties=(top2[:, 0] == top2[:, 1]).float().mean().item(),
                flip=flips)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--epsilons', type=float, nargs='+', default=[10.])
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--steps', type=int, default=300, help='DPSD iterations per run (300: as bench/utility.py on digits)')
    p.add_argument('--recipes', nargs='+', default=list(RECIPES), choices=list(RECIPES))
    p.add_argument('--device', default=None)
    p.add_argument('--out', default=str(Path(__file__).resolve().parent/'results'/'margin-digits.json'))
    args = p.parse_args()
    t_start, device = time.time(), resolve_device(args.device)
    machine = (f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} on {torch.get_num_threads()} threads, "
               f"device {device}, load average {os.getloadavg()[0]:.1f} at start")
    command = f"python {' '.join(sys.argv)}"
    print(f"machine: {machine}\ncommand: {command}", flush=True)
    data = load_dataset('digits')
    valid, held_out = validation_split(data.test)
    sigmas = {f'eps{e:g}': PrivacyConfig('label', epsilon=e, delta=DELTA, queries=QUERIES).build(data.info.num_classes).sigma for e in (1., 10.)}
    query_noise = DistillConfig().query_noise
    with seeded(0): untrained = Generator(data.info, DistillConfig().latent, conditional=True)
    sets = dict(untrained=noisy(synthetic_images(untrained, data.info, GENERATED, seed=0)[0], query_noise, 1))
    rows, students, ensembles = [], {}, {}
    for name in args.recipes:
        t0 = time.time()
        cfg = TeacherConfig(**BASE, **RECIPES[name])
        ensembles[name] = teachers = get_teachers(data, cfg, device, progress=False)[0]
        row = dict(recipe=name, options=RECIPES[name], teacher_seconds=time.time() - t0,
                   valid_plurality=(predicted_labels(teachers, valid.tensors[0]) == valid.tensors[1]).float().mean().item(), runs=[])
        print(f"{name}: teachers {row['teacher_seconds']:.0f} s (cached if ~0), plurality on the validation half {row['valid_plurality']:.4f}", flush=True)
        for eps in args.epsilons:
            for seed in range(args.seeds):
                t1 = time.time()
                d = Distiller(data.info, teachers, PrivacyConfig('label', epsilon=eps, delta=DELTA, queries=QUERIES),
                              DistillConfig(steps=args.steps, seed=seed), device=device).fit()
                asked = torch.cat(d.buffer['x']).cpu()
                clean = class_votes(teacher_logits(teachers, asked)).argmax(1).cpu()
                run = dict(target_epsilon=eps, epsilon=d.epsilon, seed=seed, valid_accuracy=accuracy(d.student, valid), queries=d.queries,
                           released_flip=(torch.cat(d.buffer['labels']).cpu() != clean).float().mean().item(),
                           asked=margins(teachers, asked, sigmas), seconds=time.time() - t1)
                students[name, eps, seed] = d.student
                if 'trained' not in sets:  # the plain recipe's first run: its generator's images, the same for every recipe
                    sets['trained'] = noisy(synthetic_images(d.generator, data.info, GENERATED, seed=1)[0], query_noise, 2)
                row['runs'].append(run)
                print(f"  eps {eps:g} seed {seed}: student {run['valid_accuracy']:.4f}, asked margin {run['asked']['margin']:.3f}, "
                      f"released labels off the plurality {run['released_flip']:.3f}, {run['seconds']:.0f} s", flush=True)
        rows.append(row)
    for row in rows:  # every query set, now that the trained generator's images exist
        row['margins'] = {k: margins(ensembles[row['recipe']], x, sigmas) for k, x in (('valid', valid.tensors[0]), *sets.items())}
    for row in rows:  # the held-out half, once, after every choice and run
        t = ensembles[row['recipe']]
        row['held_out_plurality'] = (predicted_labels(t, held_out.tensors[0]) == held_out.tensors[1]).float().mean().item()
        for run in row['runs']: run['held_out_accuracy'] = accuracy(students[row['recipe'], run['target_epsilon'], run['seed']], held_out)
    mean = lambda xs: sum(xs) / len(xs)
    print(f"\nsigma of the label mechanism, {QUERIES} queries, delta {DELTA}: " + ', '.join(f"{k} {v:.2f} votes" for k, v in sigmas.items()))
    print(f"{'recipe':16} {'plur.':>6} | margin: {'valid':>6} {'asked':>6} {'trained':>7} {'untrnd':>6} | flip@10: {'valid':>6} {'trained':>7} "
          f"{'untrnd':>6} {'released':>8} | {'eps':>4} {'student valid':>18} {'held-out':>8}")
    for row in rows:
        m = row['margins']
        for eps in args.epsilons:
            runs = [r for r in row['runs'] if r['target_epsilon'] == eps]
            acc = [r['valid_accuracy'] for r in runs]
            print(f"{row['recipe']:16} {row['valid_plurality']:6.3f} | {m['valid']['margin']:15.3f} {mean([r['asked']['margin'] for r in runs]):6.3f} "
                  f"{m['trained']['margin']:7.3f} {m['untrained']['margin']:6.3f} | {m['valid']['flip']['eps10']:15.3f} "
                  f"{m['trained']['flip']['eps10']:7.3f} {m['untrained']['flip']['eps10']:6.3f} {mean([r['released_flip'] for r in runs]):8.3f} | "
                  f"{eps:4g} {mean(acc):.3f} [{min(acc):.3f}..{max(acc):.3f}] {mean([r['held_out_accuracy'] for r in runs]):8.3f}")
    seconds = time.time() - t_start
    print(f"\n{seconds / 60:.1f} minutes; privacy unit: {privacy_unit(BASE['teachers'])}")
    report = dict(dataset='digits', machine=machine, command=command, date=time.strftime('%Y-%m-%d'), seconds=seconds,
                  teachers=BASE, recipes=RECIPES, queries=QUERIES, delta=DELTA, sigma=sigmas, query_noise=query_noise,
                  generated=GENERATED, flip_draws=DRAWS, neighbour_relation=NEIGHBOUR_RELATION, privacy_unit=privacy_unit(BASE['teachers']),
                  noise=noise_note(None), selection="recipes fixed before any run; accuracy on the validation half (validation_split, seed 0); "
                  "held_out_accuracy computed once after every run, not used to choose", rows=rows)
    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f'.{out.name}.tmp'); tmp.write_text(json.dumps(report, indent=1)); os.replace(tmp, out)


if __name__ == '__main__':
    main()
