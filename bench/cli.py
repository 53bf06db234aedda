"""How fast `dpsd-nb` answers before it trains: `--help`, `--version` and bad input, against the peer every call
paid before issue 20, importing the modules the command used to import at start (torch, opacus, the whole package).

Each command is a fresh `python -m dpsd_nb.cli` process (what a user types, without the console script's own
start-up); wall-clock medians of --reps runs, interleaved with the peer so that a change of machine load hits both.
    python bench/cli.py             # 7 repetitions
    python bench/cli.py --reps 3
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

PEER = 'import dpsd_nb.data, dpsd_nb.models, dpsd_nb.teachers, dpsd_nb.accountant, dpsd_nb.mechanisms, dpsd_nb.distill, dpsd_nb.evaluate'


def seconds(argv, expect):
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
    took = time.perf_counter() - t0
    assert done.returncode == expect, (argv, done.returncode, done.stderr)
    return took


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--reps', type=int, default=7)
    args = p.parse_args()
    tmp = tempfile.mkdtemp()
    open(os.path.join(tmp, 'taken'), 'w').write('a file')
    cli = ['-m', 'dpsd_nb.cli']
    cases = {'--help': (cli + ['--help'], 0),
             '--version': (cli + ['--version'], 0),
             'run --out FILE': (cli + ['run', '--out', os.path.join(tmp, 'taken')], 2),
             'run --teachers 100000': (cli + ['run', '--teachers', '100000', '--out', os.path.join(tmp, 'o')], 2),
             'baseline nonprivate --epsilon 1': (cli + ['baseline', 'nonprivate', '--epsilon', '1', '--out', os.path.join(tmp, 'o')], 2),
             'run --dataset mnist --root EMPTY': (cli + ['run', '--dataset', 'mnist', '--root', tmp, '--out', os.path.join(tmp, 'o')], 2)}
    times = {name: [] for name in [*cases, 'peer: import the package']}
    for _ in range(args.reps):
        for name, (argv, code) in cases.items(): times[name].append(seconds(argv, code))
        times['peer: import the package'].append(seconds(['-c', PEER], 0))
    peer = statistics.median(times['peer: import the package'])
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"peer: python -c '{PEER}'\n")
    head = f"{'call':36} {'median s':>8} {'max s':>6} {'ratio to peer':>13}"
    print(head); print('-' * len(head))
    for name, t in times.items():
        print(f"{name:36} {statistics.median(t):8.3f} {max(t):6.3f} {statistics.median(t) / peer:13.3f}")
    print(f"(medians of {args.reps} fresh processes each)")


if __name__ == '__main__':
    main()
