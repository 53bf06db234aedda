"""Privacy/utility table: DPSD (label and data mode) at epsilon 1, 10 and infinity, DP-SGD at 1 and 10 (dpsgd_recipe), PATE with public
data (Confident-GNMax) at about 1 and 10, and the teachers.

Same student architecture, same data, same delta and seed for every row; epsilon is the one achieved, every
epsilon under replace-one (DP-SGD's too, accounted by dpsd_nb.accountant.epsilon_dpsgd from its privacy loss
distribution, not Opacus's add/remove number). The privacy noise is secret (drawn from the OS's entropy), so a rerun
draws other noise: each private row is one draw. Accuracy is reported on the held-out half of the test split
(validation_split), beside the validation half's; DP-SGD's settings (dpsgd_recipe) were chosen on the validation half,
DPSD's in earlier sessions on the whole test split.
Each row's epsilon is for that row's release alone: releasing several rows trained on the same private data
composes them (their epsilons add up, at most).
    python bench/utility.py                      # digits, CPU
    python bench/utility.py --dataset mnist      # MNIST from ../shared/data (250 teachers)
    python bench/utility.py --rows pate          # only the PATE rows (and the teachers)
    python bench/utility.py --dataset mnist --rows dpsgd --epsilons 1 --seeds 0 1 2   # one row, three seeds, the rest kept
    python bench/utility.py --dataset mnist --rows dpsgd --seeds 0 1 2 --jobs 3       # the DP-SGD runs in 3 processes at once

The DPSD rows run the recipe that `dpsd-nb run` takes its defaults from (`dpsd_nb.improve.dpsd_recipe`: teachers,
queries, knobs, pairs per data set and budget), so the table measures what the command runs. On a GPU, MNIST's rows
run 600 steps instead of the recipe's CPU steps (--steps to override either). MNIST's epsilon = infinity row uses one
teacher (its recipe): without noise nothing favours an ensemble, and one strong teacher labels best. MNIST's private
rows run two generator-student pairs on one budget (`fit_together`); they ask as many queries in all as one pair would.

PATE (13_pate, `pate_student`) labels public images: its pool is the validation half of the test split (PATE_NOTE).
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from dpsd_nb.data import load_dataset, validation_split
from dpsd_nb.models import resolve_device
from dpsd_nb.teachers import get_teachers
from dpsd_nb.distill import PrivacyConfig
from dpsd_nb.models import accuracy
from dpsd_nb.improve import fit_together, pair_configs, dpsd_recipe
from dpsd_nb.evaluate import predicted_labels, sample_grid, grid_picture, save_image_atomic
from dpsd_nb.dpsgd import train_dpsgd, dpsgd_recipe
from dpsd_nb.accountant import NEIGHBOUR_RELATION, privacy_unit
from dpsd_nb.mechanisms import noise_note
from dpsd_nb.pate_analysis import calibrate_confident
from dpsd_nb.pate import pate_student

EPSILONS = (1., 10., math.inf)
SETUPS = {  # per data set: the DPSD recipes' teachers and budgets (dpsd_recipe, one table with the CLI), GPU steps
    name: dict(teachers=dpsd_recipe(name, 10.).teachers, inf_teachers=dpsd_recipe(name, math.inf).teachers,
               queries={e: dpsd_recipe(name, e).queries for e in EPSILONS}, **more)
    for name, more in (('digits', {}), ('mnist', dict(gpu_steps=600)))}
# PATE with public data, fixed by one rule before any run (no accuracy looked at): ask the first `queries` images of the public
# pool (the DPSD rows' budget at that epsilon), T = 0.8 M and sigma1 / sigma2 = 150 / 40 (the paper's MNIST setting:
# T = 200, sigma1 = 150, sigma2 = 40 for 250 teachers), sigma2 calibrated so that every query answered would reach the
# target (`calibrate_confident`; on MNIST at 10: about the paper's 40 and 150), so the answers' epsilon is at most the target;
# the release of the data-dependent epsilon costs on top: the row's epsilon is the two together (`PateStudent.guarantee`);
# the data-dependent epsilon released at the order of that worst case, sigma_ss 15 (`pate_student`'s defaults)
SETUPS['digits']['pate'] = dict(threshold=16, queries={1.: 100, 10.: 100})
SETUPS['mnist']['pate'] = dict(threshold=200, queries={1.: 200, 10.: 3000})
ROWS = ('dpsd', 'confident', 'dpsgd', 'pate')
ROW_OF = lambda method: next((k for k, m in (('confident', 'DPSD, Confident'), ('dpsd', 'DPSD'), ('dpsgd', 'DP-SGD'), ('pate', 'PATE')) if method.startswith(m)), 'teachers')
PATE_NOTE = ("PATE rows: the public pool is the validation half of the test split, its labels unused to train, so valid_accuracy "
             "is None; label_accuracy: the answered noisy labels against the pool's true labels (for the report only). epsilon: the "
             "guarantee of what the row publishes, the answers and the release together (DP); epsilon_answers: the answers' "
             "data-independent epsilon alone (calibrated to the target); not_private.epsilon_data_dependent: NOT private; "
             "epsilon_released: the data-dependent epsilon released with smooth-sensitivity noise (DP, a release of a per-data-set "
             "bound, not a guarantee, and a noisy one: it can fall below the exact data-dependent epsilon). Settings fixed by rule before any run (SETUPS, calibrate_confident), none chosen by accuracy")


def target_of(row:dict) -> float:
    "The target epsilon of a row: as recorded, or (rows written before targets were) the setup's epsilon nearest the achieved one."
    if 'target' in row: return math.inf if row['target'] in ('inf', math.inf) else row['target']
    eps = math.inf if row['epsilon'] in ('inf', math.inf) else row['epsilon']
    return eps if math.isinf(eps) else min((1., 10.), key=lambda t: abs(math.log(eps / t)))


def aggregate(runs:list) -> list:
    "One row per method, mode and target epsilon: the mean over its seeds, with the sample sd and each seed's figures (one seed: as run); other fields are the first seed's."
    groups = {}
    for r in runs: groups.setdefault((r['method'], r['mode'], r['target']), []).append(r)
    rows = []
    for g in groups.values():
        row = {k: v for k, v in g[0].items() if k != 'seed'}
        if len(g) > 1:
            for k in ('accuracy', 'valid_accuracy', 'label_accuracy', 'seconds'):
                vals = [r[k] for r in g if r.get(k) is not None]
                if vals: row[k] = statistics.mean(vals)
                if k != 'seconds' and len(vals) > 1: row[f'{k}_sd'] = statistics.stdev(vals)
            row['epsilon'] = max(r['epsilon'] for r in g)  # the largest achieved (each seed's release alone)
            row['per_seed'] = [{k: r.get(k) for k in ('seed', 'accuracy', 'valid_accuracy', 'epsilon', 'answered', 'epsilon_released', 'not_private')
                                if k in r} for r in g]
        row['seeds'] = [r['seed'] for r in g]
        rows.append(row)
    return rows


def _dpsgd_run(data, eps:float, delta:float, seed:int, device) -> dict:
    "One DP-SGD row's run: the figures `main` records (accuracy on the held-out half, valid_accuracy on the other)."
    valid, held_out = validation_split(data.test)
    t0 = time.time()
    student, achieved = train_dpsgd(data, eps, delta, seed=seed, device=device)  # dpsgd_recipe: chosen on the validation half
    return dict(accuracy=accuracy(student, held_out), valid_accuracy=accuracy(student, valid), epsilon=achieved, seconds=time.time() - t0)


def _dpsgd_job(dataset:str, root:str, eps:float, delta:float, seed:int, device:str) -> dict:
    "`_dpsgd_run` in a process of its own and one thread (`--jobs`), which loads the data itself."
    torch.set_num_threads(1)
    return _dpsgd_run(load_dataset(dataset, root=root), eps, delta, seed, torch.device(device))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset', default='digits', choices=list(SETUPS))
    p.add_argument('--root', default=str(Path(__file__).resolve().parents[2]/'shared'/'data'))
    p.add_argument('--steps', type=int, default=None,
                   help="DPSD loop iterations per row (default: the recipe's; MNIST on a GPU: 600)")
    p.add_argument('--device', default=None)
    p.add_argument('--seeds', type=int, nargs='+', default=[0], help='seeds of the private rows (initial weights; the noise is secret in any case): '
                   'with several, each row holds the mean and the spread')
    p.add_argument('--rows', nargs='+', default=list(ROWS), choices=ROWS,
                   help='the private rows to run (the teachers row always); with some only, the other rows of an existing table are kept')
    p.add_argument('--epsilons', type=float, nargs='+', default=None,
                   help='the target epsilons of the private rows to run (default: all of the setup); with some only, the other rows are kept')
    p.add_argument('--out', default=str(Path(__file__).resolve().parent/'results'),
                   help='folder for utility-<dataset>.json and the per-row sample grids')
    p.add_argument('--pate-self-train', type=int, default=0, help='PATE rows: refit the student this many times with the public images it '
                   'labels itself (pate_student self_train; the pool: the rest of the validation half); 0: the plain student '
                   '(bench/results/pate-semi-mnist.md measured 2 on MNIST)')
    p.add_argument('--boundary', type=float, default=None, help='DPSD rows: DistillConfig(boundary=B), the share of each generator and query batch '
                   "drawn between two classes (bench/results/ceiling-mnist.md measured 0.5 without noise); default: the recipe's")
    p.add_argument('--modes', nargs='+', default=['label', 'data'], choices=['label', 'data'],
                   help='the DPSD rows\' modes to run (default both); with one only, the other rows of an existing table are kept')
    p.add_argument('--jobs', type=int, default=1, help='DP-SGD runs (seeds, epsilons) at once, each in a process of one thread, '
                   'beside the other rows; 1: in this process, in turn')
    args = p.parse_args()
    if args.jobs < 1: sys.exit(f"--jobs {args.jobs}: at least 1")
    device = resolve_device(args.device)
    if args.dataset != 'digits' and not (Path(args.root)/'MNIST'/'raw').exists():
        sys.exit(f"skipped: no MNIST under {args.root}")
    setup, delta = SETUPS[args.dataset], 1e-5
    note = ''
    steps_of = lambda e: args.steps or (setup['gpu_steps'] if device.type != 'cpu' and 'gpu_steps' in setup else dpsd_recipe(args.dataset, e).cfg.steps)
    steps = {f'{e:g}': steps_of(e) for e in EPSILONS}
    if device.type == 'cpu' and 'gpu_steps' in setup and args.steps is None:
        note = (f"NOTE: {args.dataset} on a CPU: the recipe's DPSD steps ({steps}) instead of the {setup['gpu_steps']} meant for a GPU")
    machine = (f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} on {torch.get_num_threads()} threads, device {device}, "
               + (f"DP-SGD runs in {args.jobs} processes of one thread at once, " if args.jobs > 1 else '') +
               f"load average {os.getloadavg()[0]:.1f} at start")
    command = f"python {' '.join(sys.argv)}"
    print(f"machine: {machine}\ncommand: {command}   (delta {delta}, seeds {args.seeds}, DPSD steps {steps})")
    print(f"{note}\n" if note else "")
    data = load_dataset(args.dataset, root=args.root)
    wanted = lambda eps: args.epsilons is None or any(math.isclose(eps, e) for e in args.epsilons)
    ensembles = {}  # DP-SGD alone needs no teachers: its table keeps the teachers rows it has
    for key in ('teachers', 'inf_teachers') if set(args.rows) != {'dpsgd'} else ():
        if setup[key].teachers not in ensembles: ensembles[setup[key].teachers] = get_teachers(data, setup[key], device, progress=False)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    valid, held_out = validation_split(data.test)  # accuracy: on the held-out half; valid_accuracy: on the other
    scores = lambda model: dict(accuracy=accuracy(model, held_out), valid_accuracy=accuracy(model, valid))
    plurality = lambda t, ds: (predicted_labels(t, ds.tensors[0]) == ds.tensors[1]).float().mean().item()
    rows = [dict(method='teachers (no privacy)', mode='', teachers=M, accuracy=plurality(t, held_out), valid_accuracy=plurality(t, valid),
                 epsilon=math.inf, queries=0, seconds=0., samples=None) for M, (t, _) in ensembles.items()]
    unit = privacy_unit(setup['teachers'].teachers)
    selection = ("accuracy on the held-out half of the test split, valid_accuracy on the validation half (validation_split, seed 0); "
                 "DP-SGD's settings (dpsgd_recipe) were chosen on the validation half; DPSD's were chosen in earlier sessions by "
                 "accuracy on the whole test split (some on this seed), so for them both halves have been looked at and the "
                 "numbers are optimistic; PATE's were fixed by rule before any run; tuning on private data is not accounted "
                 "for (Papernot & Steinke 2022)")
    def write(rows:list, complete:bool=False):
        "The table as it stands, over the rows an earlier run wrote that this one does not rerun (atomic: a reader sees one or the other)."
        stamp = dict(machine=machine, command=command, date=time.strftime('%Y-%m-%d'))
        rows = [{**stamp, **r} for r in rows]
        previous = out/f'utility-{args.dataset}.json'
        if (set(args.rows) != set(ROWS) or args.epsilons is not None or len(args.modes) < 2) and previous.exists():  # a partial rerun: keep the rows not rerun, each with its own machine and command
            old = json.loads(previous.read_text())
            rerun = lambda r: (ROW_OF(r['method']) == 'teachers' and bool(ensembles)) or (ROW_OF(r['method']) in args.rows and wanted(target_of(r))
                                                                                           and (ROW_OF(r['method']) != 'dpsd' or r['mode'] in args.modes))
            kept = [{'machine': old['machine'], 'command': old['command'], **r} for r in old['rows'] if not rerun(r)]
            rows = [r for r in kept if ROW_OF(r['method']) == 'teachers'] + rows[:len(ensembles)] + [r for r in kept if ROW_OF(r['method']) != 'teachers'] + rows[len(ensembles):]
            if complete: print(f"kept {len(kept)} rows of {previous}")
        report = dict(dataset=args.dataset, machine=machine, command=command, note=note, delta=delta, seed=args.seeds[0], seeds=args.seeds,
                      teachers=setup['teachers'].teachers, neighbour_relation=NEIGHBOUR_RELATION, privacy_unit=unit,
                      noise=noise_note(None), selection=selection, steps=steps, rows_run=args.rows,
                      pate=PATE_NOTE if 'pate' in args.rows else None,
                      composition="each row's epsilon is for that row's release alone; releasing several rows trained on the same private data composes them",
                      complete=complete,  # False while the command runs: the rows done so far, the table written after each
                      rows=[{**r, **{k: 'inf' for k in ('epsilon', 'target') if r.get(k) in ('inf', math.inf)}} for r in rows])
        tmp = out/f'.utility-{args.dataset}.json.{os.getpid()}.tmp'  # one per process: two commands may write the same table
        tmp.write_text(json.dumps(report, indent=1)); os.replace(tmp, out/f'utility-{args.dataset}.json')
    runs, pending = [], {}  # one run per private row and seed; DP-SGD runs under way in other processes (--jobs)
    if args.jobs > 1 and 'dpsgd' in args.rows:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context('spawn'))
        pending = {(seed, eps): pool.submit(_dpsgd_job, args.dataset, args.root, eps, delta, seed, str(device))
                   for seed in args.seeds for eps in (1., 10.) if wanted(eps)}
    for seed in args.seeds:
        for mode in args.modes if 'dpsd' in args.rows else ():
            for eps, q in setup['queries'].items():
                if not wanted(eps): continue
                t0 = time.time()
                rec = dpsd_recipe(args.dataset, eps, mode, steps=steps_of(eps))  # what dpsd-nb run does by default (`chosen`: where it was chosen)
                M, q, P = rec.teachers.teachers, rec.queries, rec.pairs  # each pair asks query_batch / P; pair i has seed + 1000 i
                cfg = replace(rec.cfg, seed=seed, **({'boundary': args.boundary} if args.boundary is not None else {}))
                d = fit_together(data.info, ensembles[M][0], PrivacyConfig(mode, epsilon=eps, delta=delta, queries=q), pair_configs(cfg, P), device=device)
                png = f"samples-{args.dataset}-{mode}-eps{eps:g}.png"
                if seed == args.seeds[0]:  # the first seed's samples
                    save_image_atomic(grid_picture(sample_grid(d.generator, data.info, student=d.student, seed=seed), data.info,
                                                   f"{args.dataset}, {mode} mode, epsilon {d.epsilon:.2f}"), out/png)
                runs.append(dict(seed=seed, target=eps, method=('DPSD' if P == 1 else f'DPSD, {P} pairs') + (f', boundary {cfg.boundary:g}' if cfg.boundary else ''), mode=mode, teachers=M, **scores(d.student),
                                 epsilon=d.epsilon, queries=d.queries, steps=d.step, pairs=P, seconds=time.time() - t0, samples=png))
                print(runs[-1], flush=True); write(rows + aggregate(runs))
        for eps, q in setup['queries'].items() if 'confident' in args.rows else ():  # DPSD label mode through Confident-GNMax
            if math.isinf(eps) or not wanted(eps): continue
            rec = dpsd_recipe(args.dataset, eps, 'label', 'confident', steps=steps_of(eps))  # hard answers: the recipe without vote softening
            t0, M = time.time(), rec.teachers.teachers
            cfg = replace(rec.cfg, seed=seed)
            privacy = PrivacyConfig('label', mechanism='confident', epsilon=eps, delta=delta, queries=q)
            d = fit_together(data.info, ensembles[M][0], privacy, pair_configs(cfg, rec.pairs), device=device)
            rep = d.confident_report()  # the data-dependent epsilon of the votes seen: NOT private, not released
            runs.append(dict(seed=seed, target=eps, method='DPSD, Confident-GNMax', mode='label', teachers=M, **scores(d.student),
                             epsilon=d.epsilon, queries=d.queries, answered=rep.answered, threshold=d.mechanism.threshold,
                             sigma1=d.mechanism.sigma1, sigma2=d.mechanism.sigma2,
                             not_private=dict(epsilon_data_dependent=rep.not_private.epsilon, note=rep.not_private.privacy),
                             steps=d.step, pairs=rec.pairs, seconds=time.time() - t0, samples=None))
            print(runs[-1], flush=True); write(rows + aggregate(runs))
        for eps in (1., 10.) if 'dpsgd' in args.rows else ():
            if not wanted(eps): continue
            if pending: run = pending.pop((seed, eps)).result()
            else: run = _dpsgd_run(data, eps, delta, seed, device)
            runs.append(dict(seed=seed, target=eps, method='DP-SGD (Opacus)', mode='', teachers=0, **run,
                             queries=0, settings={**dpsgd_recipe(data.info.name, eps), 'accounting': 'pld'}, samples=None))
            print(runs[-1], flush=True); write(rows + aggregate(runs))
        pate = setup['pate']
        for eps, q in pate['queries'].items() if 'pate' in args.rows else ():
            if not wanted(eps): continue
            t0 = time.time()
            M, (sigma1, sigma2) = setup['teachers'].teachers, calibrate_confident(eps, delta, q)
            x, y = (t[:q] for t in valid.tensors)  # the public pool: its labels are not used to train
            k = args.pate_self_train  # self-training reads the rest of the public pool, unlabelled
            r = pate_student(ensembles[M][0], data.info, x, pate['threshold'], sigma1, sigma2, delta, seed=seed, device=device,
                             self_train=k, pool=valid.tensors[0][q:] if k else None)
            a = r.answers.answered
            runs.append(dict(seed=seed, target=eps, method='PATE (public data, Confident-GNMax' + (f', self-trained {k})' if k else ')'), mode='', teachers=M,
                             accuracy=accuracy(r.student, held_out), self_train=k,
                             valid_accuracy=None, label_accuracy=(r.answers.labels[a] == y[a]).float().mean().item(),
                             epsilon=r.guarantee, epsilon_answers=r.epsilon, epsilon_released=r.released.epsilon,
                             not_private=dict(epsilon_data_dependent=r.not_private.epsilon, note=r.not_private.privacy),
                             queries=r.queries, answered=r.answered, threshold=pate['threshold'], sigma1=sigma1, sigma2=sigma2,
                             release_order=r.released.order, student_epochs=r.epochs, seconds=time.time() - t0, samples=None))
            print(runs[-1], flush=True); write(rows + aggregate(runs))
    rows += aggregate(runs)
    print(f"\n{'method':22} {'mode':6} {'teachers':>8} {'held-out':>8} {'valid':>8} {'epsilon':>8} {'queries':>8} {'seconds':>8}")
    for r in rows:
        valid_acc = '-' if r['valid_accuracy'] is None else f"{r['valid_accuracy']:.4f}"
        sd = f" ± {r['accuracy_sd']:.3f} ({len(r['seeds'])} seeds)" if 'accuracy_sd' in r else ''
        print(f"{r['method'][:22]:22} {r['mode']:6} {r['teachers'] or '-':>8} {r['accuracy']:8.4f} {valid_acc:>8} {r['epsilon']:8.3f} {r['queries']:8d} {r['seconds']:8.1f}{sd}")
    pate_rows = [r for r in rows if r['method'].startswith('PATE')]
    if pate_rows:
        print(f"\nPATE, public pool = the validation half: {'answered':>8} {'labels ok':>9} {'epsilon':>8} {'data-dep':>8} {'released':>8} {'with rel.':>9}")
        for r in pate_rows:
            print(f"{'':41} {r['answered']:>4}/{r['queries']:<4} {r['label_accuracy']:9.3f} {r['epsilon_answers']:8.3f} "
                  f"{r['not_private']['epsilon_data_dependent']:8.3f} {r['epsilon_released']:8.3f} {r['epsilon']:9.3f}")
        print("epsilon: the answers' data-independent epsilon (DP); data-dep: NOT private; released: smooth-sensitivity release (DP); "
              "with rel.: answers + release (DP), the row's epsilon")
    if note: print(note)
    print(f"\n{args.dataset}: {setup['teachers'].teachers} teachers on disjoint parts; every epsilon {NEIGHBOUR_RELATION}; privacy unit: {unit}")
    write(rows, complete=True)


if __name__ == '__main__':
    main()
