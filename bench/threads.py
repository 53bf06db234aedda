"""A run on a busy machine: `dpsd-nb run` (the default digits job) with torch's threads set to 1 and to the number
of cores (torch's own default), on an idle machine and beside one competing single-threaded process (a busy loop,
like a second kernel or another job on a shared 2-core machine).

The teachers are trained and cached first, so every timed run does the same work: the DPSD loop, the evaluation
and the files. The runs are interleaved (threads 1, cores, 1, cores, ...) in each condition. The CLI's default,
`choose_threads()` (half the cores), is what the thread-1 row measures on a 2-core machine.
    python bench/threads.py             # 2 repetitions per cell
    python bench/threads.py --reps 1 --steps 100
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def run(threads, out, cache, steps):
    argv = [sys.executable, '-m', 'dpsd_nb.cli', 'run', '--quiet', '--threads', str(threads), '--steps', str(steps),
            '--out', out, '--cache', cache, '--noise-seed', '0']
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - t0, json.loads(open(os.path.join(out, 'report.json')).read())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--reps', type=int, default=2)
    p.add_argument('--steps', type=int, default=200)
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    tmp = tempfile.mkdtemp(); cache, out = os.path.join(tmp, 'cache'), os.path.join(tmp, 'run')
    print(f"machine: {platform.platform()}, {cores} usable CPUs, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start")
    print(f"command: python {' '.join(sys.argv)}")
    run(1, out, cache, 1)  # trains and caches the teachers
    rows = {}
    for condition in ('idle', 'one competing process'):
        hog = subprocess.Popen([sys.executable, '-c', 'while True: pass']) if condition != 'idle' else None
        try:
            for _ in range(args.reps):
                for threads in sorted({1, cores}):
                    took, report = run(threads, out, cache, args.steps)
                    assert report['threads'] == threads
                    rows.setdefault((condition, threads), []).append(took)
                    print(f"{condition:22} threads {threads}: {took:6.1f} s (accuracy {report['student_accuracy']:.3f})", flush=True)
        finally:
            if hog: hog.kill(); hog.wait()
    head = f"{'condition':22} {'threads':>7} {'median s':>8} {'ratio to 1 thread idle':>22}"
    print('\n' + head); print('-' * len(head))
    base = statistics.median(rows[('idle', 1)])
    for (condition, threads), t in rows.items():
        print(f"{condition:22} {threads:7} {statistics.median(t):8.1f} {statistics.median(t) / base:22.2f}")
    print(f"(medians of {args.reps}; dpsd-nb run --steps {args.steps} on digits, teachers cached, noise seed 0 so every run does the same work)")


if __name__ == '__main__':
    main()
