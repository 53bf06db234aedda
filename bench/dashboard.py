"""What watching costs: Distiller.fit() with and without the dashboard attached as a callback.

Same knobs, same seed, digits; the dashboard is headless (no browser) but updates its figures
exactly as in a live kernel (throttled redraws, accuracy every `eval_every` steps). Runs are
interleaved (without, with, without, ...) so that a change of machine load hits both; the
medians are compared, in wall-clock seconds and in the process's CPU seconds (with one torch
thread, CPU time is what the run costs, and other jobs on a shared machine disturb it less).
    python bench/dashboard.py                  # 60 steps, 5 repetitions each
    python bench/dashboard.py --steps 100 --reps 3 --every 0.5
"""
import argparse
import os
import platform
import statistics
import sys
import time

import torch

from dpsd_nb.dashboard import Dashboard
from dpsd_nb.distill import Distiller


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--steps', type=int, default=60)
    p.add_argument('--reps', type=int, default=5)
    p.add_argument('--every', type=float, default=0.5, help='seconds between two redraws')
    p.add_argument('--threads', type=int, default=1, help='torch threads')
    p.add_argument('--device', default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dash = Dashboard(steps=args.steps, every=args.every, device=args.device)
    watched = dash.make_distiller()  # loads (or trains and caches) the teachers
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {dash.device}, load average {os.getloadavg()[0]:.1f} at start")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"run: digits, {dash.controls['teachers'].value} teachers, {watched.privacy}, {args.steps} steps, "
          f"query batch {watched.cfg.query_batch}, accuracy every {dash.controls['eval_every'].value} steps, redraw every {args.every} s\n")
    wall, cpu = {'without': [], 'with': []}, {'without': [], 'with': []}
    for rep in range(args.reps):
        for kind in ('without', 'with'):
            d = dash.make_distiller() if kind == 'with' else Distiller(watched.info, dash.teachers, watched.privacy, watched.cfg, device=dash.device)
            t0, c0 = time.perf_counter(), time.process_time()
            d.fit()
            wall[kind].append(time.perf_counter() - t0); cpu[kind].append(time.process_time() - c0)
            print(f"rep {rep} {kind:7} {wall[kind][-1]:6.2f} s wall {cpu[kind][-1]:6.2f} s CPU", flush=True)
    machine, command = f"{platform.machine()} {os.cpu_count()} CPUs {dash.device}", 'python ' + ' '.join(sys.argv)
    head = f"{'machine':22} {'command':44} {'clock':5} {'s without':>9} {'s with':>7} {'ratio':>6}"
    print('\n' + head); print('-' * len(head))
    for name, t in (('wall', wall), ('CPU', cpu)):
        without, with_ = statistics.median(t['without']), statistics.median(t['with'])
        print(f"{machine:22} {command:44} {name:5} {without:9.2f} {with_:7.2f} {with_ / without:6.3f}")
    print(f"(medians of {args.reps}; redraws in the last watched run: {dash.draws}, accuracy evaluations: {len(dash.acc)})")


if __name__ == '__main__':
    main()
