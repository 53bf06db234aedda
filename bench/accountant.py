"""dpsd_nb.accountant against Opacus's RDP accountant, side by side in one run: epsilon(delta) after 10^2..10^6
Gaussian queries, calibration of sigma for a target epsilon, the time of each, and the ratio.

    PYTHONPATH=. python bench/accountant.py [--sigma 100] [--target 1.0] [--delta 1e-5]
"""
import argparse, math, os, platform, sys, time, warnings

import numpy as np
import torch
import opacus
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from dpsd_nb.accountant import calibrate_gaussian, calibrate_rr, epsilon_gaussian

def timed(f, min_time=0.2, max_reps=2000):
    "Median seconds of one call of `f` over repeated calls (at least 3, about `min_time` in all), and its result."
    times, out = [], None
    while (len(times) < 3 or sum(times) < min_time) and len(times) < max_reps:
        t = time.perf_counter(); out = f(); times.append(time.perf_counter() - t)
    return float(np.median(times)), out

def opacus_epsilon(z, steps, delta):
    acc = RDPAccountant()
    acc.history = [(z, 1.0, steps)]  # what `steps` calls of acc.step(noise_multiplier=z, sample_rate=1) leave
    return acc.get_epsilon(delta)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--sigma', type=float, default=100.0, help='noise std for the epsilon rows')
    ap.add_argument('--target', type=float, default=1.0, help='target epsilon for the calibration rows')
    ap.add_argument('--delta', type=float, default=1e-5)
    args = ap.parse_args()
    torch.set_num_threads(1); warnings.filterwarnings('ignore', message='Optimal order')
    sens, d = math.sqrt(2), args.delta  # label mode: one teacher moves one vote
    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | load {os.getloadavg()[0]:.1f}")
    print(f"python {platform.python_version()} | numpy {np.__version__} | torch {torch.__version__} | opacus {opacus.__version__}")
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"Gaussian queries, sensitivity sqrt(2), delta={d:g}; times are medians of repeated calls, in ms\n")
    print(f"epsilon after q queries at sigma={args.sigma:g}   (Opacus: RDPAccountant.get_epsilon, noise_multiplier=sigma/sqrt(2), sample_rate=1)")
    print(f"{'queries':>9} {'ours':>12} {'opacus':>12} {'rel.diff':>9} {'ours ms':>9} {'opacus ms':>10} {'speedup':>8}")
    for q in [10**p for p in range(2, 7)]:
        t1, e1 = timed(lambda: epsilon_gaussian(args.sigma, sens, q, d))
        t2, e2 = timed(lambda: opacus_epsilon(args.sigma / sens, q, d))
        print(f"{q:>9} {e1:>12.6f} {e2:>12.6f} {abs(e1 - e2) / e2:>9.1e} {t1 * 1e3:>9.3f} {t2 * 1e3:>10.3f} {t2 / t1:>7.1f}x")
    print(f"\ncalibrate sigma for epsilon={args.target:g}   (Opacus: get_noise_multiplier(accountant='rdp') * sqrt(2), its default epsilon_tolerance=0.01)")
    print(f"{'queries':>9} {'ours sigma':>12} {'opacus sigma':>13} {'eps(ours)':>10} {'eps(opacus)':>11} {'ours ms':>9} {'opacus ms':>10} {'speedup':>8} {'rr eps0':>9} {'rr ms':>7}")
    for q in [10**p for p in range(2, 7)]:
        t1, s1 = timed(lambda: calibrate_gaussian(args.target, d, q, sens))
        t2, z2 = timed(lambda: get_noise_multiplier(target_epsilon=args.target, target_delta=d, sample_rate=1.0, steps=q, accountant='rdp'), min_time=0.5)
        t3, r3 = timed(lambda: calibrate_rr(args.target, d, q, 3))
        s2 = z2 * sens
        print(f"{q:>9} {s1:>12.4f} {s2:>13.4f} {epsilon_gaussian(s1, sens, q, d):>10.6f} {epsilon_gaussian(s2, sens, q, d):>11.6f} "
              f"{t1 * 1e3:>9.3f} {t2 * 1e3:>10.3f} {t2 / t1:>7.0f}x {r3:>9.2e} {t3 * 1e3:>7.2f}")
    print("\nrr: calibrate_rr for k=3 candidates (no Opacus counterpart; checked against dp-accounting in tests/test_privacy.py)")

if __name__ == '__main__': main()
