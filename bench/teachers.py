"""Teacher ensembles: vectorized training (one grouped model) against a plain loop of M trainings.

Same data, same M, same epochs, same initial weights and batches, in the same run.
    python bench/teachers.py                 # digits M=20; MNIST M=50 if ../shared/data holds it
    python bench/teachers.py --mnist250      # also 250 MNIST teachers, vectorized only (the loop would take hours)
"""
import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from dpsd_nb.data import load_dataset
from dpsd_nb.models import resolve_device
from dpsd_nb.teachers import TeacherConfig, TeacherReport, evaluate_teachers, train_teachers, train_teachers_loop


def loop_report(models, test):
    "The loop's teachers measured like the ensemble: stack their logits."
    accs = [evaluate_teachers(m, test).accuracies[0] for m in models]
    x, y = test.tensors
    with torch.no_grad():
        dev = next(models[0].parameters()).device
        votes = torch.stack([m(x.to(dev))[0].argmax(-1).cpu() for m in models])
    counts = torch.nn.functional.one_hot(votes, len(test.tensors[1].unique())).sum(0)
    top2 = counts.topk(2, dim=1).values
    return TeacherReport(accs, (counts.argmax(1) == y).float().mean().item(),
                         ((top2[:, 0] - top2[:, 1]).float() / len(models)).mean().item())


def timed(f):
    t0 = time.perf_counter(); out = f(); return out, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--root', default=str(Path(__file__).resolve().parents[2]/'shared'/'data'), help='folder holding MNIST/raw')
    p.add_argument('--device', default=None)
    p.add_argument('--mnist250', action='store_true', help='also train 250 MNIST teachers (vectorized only)')
    p.add_argument('--no-loop-mnist', action='store_true', help='skip the slow MNIST loop row')
    args = p.parse_args()
    device = resolve_device(args.device)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {device}, load average {os.getloadavg()[0]:.1f} at start")
    print(f"command: python {' '.join(sys.argv)}\n")
    runs = [('digits', load_dataset('digits'), TeacherConfig(teachers=20, epochs=100))]
    if (Path(args.root)/'MNIST'/'raw').exists():
        mnist = load_dataset('mnist', root=args.root)
        runs.append(('mnist', mnist, TeacherConfig(teachers=50, epochs=5, width=16, hidden=64)))
        if args.mnist250: runs.append(('mnist', mnist, TeacherConfig(teachers=250, epochs=20, width=16, hidden=64)))
    else: print(f"MNIST rows skipped: no {Path(args.root)/'MNIST'/'raw'}\n")

    head = f"{'data':7} {'M':>4} {'epochs':>6} {'trainer':11} {'seconds':>8} {'mean acc':>8} {'plurality':>9} {'margin':>6} {'loop/vectorized':>15}"
    print(head); print('-' * len(head))
    for name, data, cfg in runs:
        ens, tv = timed(lambda: train_teachers(data, cfg, device, progress=False))
        rv = evaluate_teachers(ens, data.test)
        print(f"{name:7} {cfg.teachers:4} {cfg.epochs:6} {'vectorized':11} {tv:8.1f} {rv.mean_accuracy:8.4f} {rv.plurality_accuracy:9.4f} {rv.mean_margin:6.3f} {'':>15}", flush=True)
        if cfg.teachers > 50 or (name == 'mnist' and args.no_loop_mnist): continue
        models, tl = timed(lambda: train_teachers_loop(data, cfg, device))
        rl = loop_report(models, data.test)
        print(f"{name:7} {cfg.teachers:4} {cfg.epochs:6} {'loop':11} {tl:8.1f} {rl.mean_accuracy:8.4f} {rl.plurality_accuracy:9.4f} {rl.mean_margin:6.3f} {tl / tv:14.1f}x", flush=True)


if __name__ == '__main__':
    main()
