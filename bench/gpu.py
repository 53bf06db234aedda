"""The MNIST paper-scale run on one GPU: 250 teachers, DPSD in label and data mode at epsilon 1 and 10 (the settings
of bench/utility.py's MNIST table, its GPU steps), and the live dashboard's default run; the device, the command, the
seconds of each part and the total against the target (the whole MNIST table in under 10 minutes on one GPU).

Also a reproducibility check on the device: the same label-mode row twice with the same seed and `noise_seed`
(reproducible noise, for this check only), which on CUDA agree only up to the nondeterminism of its convolutions
unless `--deterministic` asks torch for deterministic algorithms.
    python bench/gpu.py                          # MNIST from ../shared/data, device cuda
    python bench/gpu.py --root DIR --deterministic
Not run on a CPU (it says so and exits): the MNIST table on a CPU is bench/utility.py --dataset mnist.
"""
import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from utility import SETUPS  # the MNIST table's settings, one source

from dpsd_nb.data import load_dataset, validation_split
from dpsd_nb.teachers import get_teachers
from dpsd_nb.distill import DistillConfig, PrivacyConfig
from dpsd_nb.models import accuracy
from dpsd_nb.improve import fit_together, pair_configs


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--root', default=str(Path(__file__).resolve().parents[2]/'shared'/'data'))
    p.add_argument('--device', default='cuda')
    p.add_argument('--deterministic', action='store_true', help='torch.use_deterministic_algorithms(True) (and the cuBLAS setting it needs)')
    p.add_argument('--cache', default=None, help='teacher cache (default: a fresh folder, so the teachers are trained and timed)')
    args = p.parse_args()
    if args.device.startswith('cuda') and not torch.cuda.is_available(): sys.exit('skipped: no CUDA device here')
    if args.deterministic:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8'); torch.use_deterministic_algorithms(True)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {device} ({name})")
    print(f"command: python {' '.join(sys.argv)}")
    cache = args.cache or str(Path(os.environ.get('TMPDIR', '/tmp'))/f'dpsd-gpu-bench-{os.getpid()}')
    setup, times, t_all = SETUPS['mnist'], {}, time.time()
    data = load_dataset('mnist', root=args.root)
    valid, held_out = validation_split(data.test)
    t0 = time.time()
    teachers, _ = get_teachers(data, setup['teachers'], device, cache, progress=False)
    times['250 teachers'] = time.time() - t0
    for mode in ('label', 'data'):
        for eps in (1., 10.):
            knobs = {**setup['private_cfg'], **(setup['label_cfg'] if mode == 'label' else {})}
            cfg = DistillConfig(steps=setup['gpu_steps'], **knobs)
            t0 = time.time()
            d = fit_together(data.info, teachers, PrivacyConfig(mode, epsilon=eps, queries=setup['queries'][eps]),
                             pair_configs(cfg, setup['pairs']), device=device)
            times[f'DPSD {mode} eps {eps:g}'] = time.time() - t0
            print(f"DPSD {mode:5} eps {eps:4g}: {times[f'DPSD {mode} eps {eps:g}']:7.1f} s, epsilon {d.epsilon:.3f}, "
                  f"valid {accuracy(d.student, valid):.4f}, held-out {accuracy(d.student, held_out):.4f}", flush=True)
    from dpsd_nb.dashboard import Dashboard
    t0 = time.time()
    Dashboard(device=device).make_distiller().fit()
    times['dashboard default run'] = time.time() - t0
    runs = []
    for _ in range(2):  # reproducibility on the device: same seed, same noise seed
        cfg = DistillConfig(steps=50, **setup['private_cfg'])
        d = fit_together(data.info, teachers, PrivacyConfig('label', epsilon=10., queries=300, noise_seed=0), pair_configs(cfg, 1), device=device)
        runs.append(torch.cat([q.flatten() for q in d.student.state_dict().values() if q.is_floating_point()]))
    diff = (runs[0] - runs[1]).abs().max().item()
    print(f"\nreproducibility, label eps 10, 50 steps, noise_seed 0, twice: max |weight difference| {diff:.3g}"
          f" ({'deterministic algorithms' if args.deterministic else 'default algorithms'})")
    head = f"{'part':26} {'seconds':>8}"
    print('\n' + head); print('-' * len(head))
    for part, s in times.items(): print(f"{part:26} {s:8.1f}")
    table = sum(s for part, s in times.items() if part != 'dashboard default run')
    print(f"{'MNIST table (teachers + 4 rows)':26} {table:8.1f}   target < 600 s: {'met' if table < 600 else 'NOT met'}")
    print(f"(total with the check: {time.time() - t_all:.1f} s)")


if __name__ == '__main__':
    main()
