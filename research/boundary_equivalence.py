"""The boundary share built into the package (`DistillConfig(boundary=0.5)`) against the research subclass it came from
(`research/ceiling.py` `Explorer`, `Levers(boundary=0.5)`): 30 MNIST steps each, one teacher, no noise, seed 0; the students and
generators must be equal bit for bit (run in session 31: both True), so the figures of bench/results/ceiling-mnist.md hold for the switch.

    OMP_NUM_THREADS=1 python research/boundary_equivalence.py
"""
import sys, torch; sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parent))
from ceiling import Explorer, Levers, INF_TEACHERS, INF_CFG
from dpsd_nb.data import load_dataset
from dpsd_nb.teachers import get_teachers
from dpsd_nb.distill import DistillConfig, PrivacyConfig, Distiller
torch.set_num_threads(1)
data = load_dataset('mnist', root='/work/shared/data')
t, _ = get_teachers(data, INF_TEACHERS, torch.device('cpu'), cache='/tmp/ceiling-cache', progress=False)
pr = PrivacyConfig('label', epsilon=float('inf'), queries=3000)
def run(d):
    d._cb('before_fit')
    while d.step < d.cfg.steps: d._iterate()
    d._finish(); return d
a = run(Explorer(data.info, t, pr, DistillConfig(steps=30, seed=0, **INF_CFG), device='cpu', levers=Levers(boundary=0.5)))
b = run(Distiller(data.info, t, pr, DistillConfig(steps=30, seed=0, boundary=0.5, **INF_CFG), device='cpu'))
sa, sb = a.student.state_dict(), b.student.state_dict()
print('students identical:', all(torch.equal(sa[k], sb[k]) for k in sa))
ga, gb = a.generator.state_dict(), b.generator.state_dict()
print('generators identical:', all(torch.equal(ga[k], gb[k]) for k in ga))
