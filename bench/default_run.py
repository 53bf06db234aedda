"""The README's first command, measured: `dpsd-nb run` with every default (digits, the recipe at epsilon 10), run --reps
times, each in a fresh output folder with the teachers cached after the first. Records each run's test accuracy (from its
report.json) and wall time, and writes bench/results/default-run-digits.json. Each run draws fresh secret noise, so the
spread is the noise's (and the student's seed is the same).

    python bench/default_run.py            # 3 runs
    python bench/default_run.py --reps 5
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
from pathlib import Path

OUT = Path(__file__).resolve().parent/'results'/'default-run-digits.json'


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--reps', type=int, default=3)
    args = p.parse_args()
    import torch
    machine = (f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, load average {os.getloadavg()[0]:.2f} at start; "
               f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.reps):
            out = Path(tmp)/f'run{i}'
            t0 = time.perf_counter()
            done = subprocess.run([str(Path(sys.executable).parent/'dpsd-nb'), 'run', '--out', str(out)], capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            if done.returncode: sys.exit(f"dpsd-nb run failed ({done.returncode}):\n{done.stderr[-2000:]}")
            report = json.loads((out/'report.json').read_text())
            runs.append(dict(student_accuracy=report['student_accuracy'], epsilon=report['epsilon'], seconds=round(seconds, 1)))
            print(runs[-1], flush=True)
    acc = [r['student_accuracy'] for r in runs]
    result = dict(command='dpsd-nb run (every default), ' + f'python bench/default_run.py --reps {args.reps}', machine=machine,
                  note='test accuracy of the released student on the digits test split; each run one draw of the secret noise; '
                       'the teachers come from the cache when an earlier run left them there (the first run trains them otherwise)',
                  runs=runs, mean=statistics.mean(acc), sd=statistics.stdev(acc) if len(acc) > 1 else None,
                  date=time.strftime('%Y-%m-%d'))
    OUT.write_text(json.dumps(result, indent=1) + '\n')
    print(f"mean {result['mean']:.3f}" + (f" ± {result['sd']:.3f}" if result['sd'] is not None else '') + f" over {len(acc)} runs -> {OUT}")


if __name__ == '__main__':
    main()
