"""Digits, data mode, epsilon 10: does the label-mode recipe's refit help or hurt data mode? (3 seeds, validation half)

The digits recipe (`dpsd_recipe('digits', 10.)`) was chosen in label mode (softened votes + refit, bench/improve.py). In data
mode softened votes do not apply, so `dpsd_recipe(..., mode='data')` keeps refit alone; the rerun table fell from 0.370 to
0.239 there. Here: the data-mode recipe with and without refit, same everything else, secret noise, seeds 0-2.

    OMP_NUM_THREADS=1 python research/digits_data_mode.py > research/digits-data-logs/refit.log
"""
import os, platform, statistics, sys, time
from dataclasses import replace
import torch
from dpsd_nb.data import load_dataset, validation_split
from dpsd_nb.models import accuracy
from dpsd_nb.teachers import get_teachers
from dpsd_nb.distill import Distiller, PrivacyConfig
from dpsd_nb.improve import dpsd_recipe

torch.set_num_threads(1)
print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} on 1 thread, load {os.getloadavg()[0]:.1f}\ncommand: python {' '.join(sys.argv)}", flush=True)
data = load_dataset('digits'); valid, held = validation_split(data.test)
rec = dpsd_recipe('digits', 10., mode='data')
teachers, _ = get_teachers(data, rec.teachers, 'cpu', progress=False)
print(rec.describe(), flush=True)
res = {}
for refit in (True, False):
    for seed in range(3):
        t0 = time.time()
        d = Distiller(data.info, teachers, PrivacyConfig('data', epsilon=10., queries=rec.queries), replace(rec.cfg, refit=refit, seed=seed), device='cpu').fit()
        res.setdefault(refit, []).append(accuracy(d.student, valid))
        print(f"RESULT refit={refit} seed={seed} validation={res[refit][-1]:.4f} epsilon={d.epsilon:.3f} seconds={time.time() - t0:.0f}", flush=True)
for refit, v in res.items(): print(f"SUMMARY refit={refit} mean={statistics.mean(v):.4f} sd={statistics.stdev(v):.4f} per_seed={[round(a, 4) for a in v]}")
