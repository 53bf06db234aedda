"""A run on a busy machine: `dpsd-nb run` (the default digits job) and the dashboard's default run, with torch's threads set to 1 and to the number
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


DASHBOARD = ("import sys, time; from dpsd_nb.dashboard import Dashboard; "
             "d = Dashboard(threads=int(sys.argv[1]), noise_seed=0); t = time.perf_counter(); d.run(block=True); "
             "assert not d.error.value, d.error.value; print(time.perf_counter() - t)")


def dashboard(threads):
    "Seconds of the dashboard's default run (headless, teachers cached), in a fresh process."
    done = subprocess.run([sys.executable, '-c', DASHBOARD, str(threads)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.split()[-1])


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
    dashboard(1)  # the dashboard's teachers (the default cache)
    rows = {}
    for condition in ('idle', 'one competing process'):
        hog = subprocess.Popen([sys.executable, '-c', 'while True: pass']) if condition != 'idle' else None
        try:
            for _ in range(args.reps):
                for threads in sorted({1, cores}):
                    took, report = run(threads, out, cache, args.steps)
                    assert report['threads'] == threads
                    rows.setdefault((condition, 'dpsd-nb run', threads), []).append(took)
                    print(f"{condition:22} threads {threads}: {took:6.1f} s (accuracy {report['student_accuracy']:.3f})", flush=True)
                    took = dashboard(threads)
                    rows.setdefault((condition, 'dashboard', threads), []).append(took)
                    print(f"{condition:22} threads {threads}: dashboard {took:6.1f} s", flush=True)
        finally:
            if hog: hog.kill(); hog.wait()
    head = f"{'condition':22} {'job':12} {'threads':>7} {'median s':>8} {'ratio to 1 thread idle':>22}"
    print('\n' + head); print('-' * len(head))
    for (condition, job, threads), t in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
        base = statistics.median(rows[('idle', job, 1)])
        print(f"{condition:22} {job:12} {threads:7} {statistics.median(t):8.1f} {statistics.median(t) / base:22.2f}")
    print(f"(medians of {args.reps}; dpsd-nb run --steps {args.steps} on digits and the dashboard's default run (Dashboard().run(block=True), headless), teachers cached, noise seed 0 so every run does the same work)")


if __name__ == '__main__':
    main()
