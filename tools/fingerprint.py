"""Fingerprints of small runs with reproducible noise, to show that a refactor changes no behaviour: each line is a
configuration and the SHA-256 of everything it returns (weights, released answers, epsilons), bit for bit.

    python tools/fingerprint.py > before.txt     # on the old code
    python tools/fingerprint.py > after.txt      # on the new code
    diff before.txt after.txt                    # no output: the same behaviour

Digits, one torch thread, CPU, `noise_seed` fixed (reproducible noise: NOT private, for this comparison only). The
teachers are trained once per run (not read from a cache), so a change in how they are trained shows too. A few minutes.
"""
import hashlib
import importlib
import math
import warnings

import torch

warnings.filterwarnings('ignore')
torch.set_num_threads(1)

def _find(name:str):
    "The package's object `name`, wherever the current layout keeps it (refactors move things between modules)."
    for module in ('distill', 'improve', 'evaluate', 'pate', 'teachers', 'models', 'mechanisms', 'accountant', 'data',
                   'training', 'loop', 'dpsgd', 'baselines', 'pate_student', 'pate_analysis'):
        try: m = importlib.import_module(f'dpsd_nb.{module}')
        except ModuleNotFoundError: continue
        if hasattr(m, name): return getattr(m, name)
    raise ImportError(name)

def digest(*things) -> str:
    "SHA-256 of tensors, numbers, strings and containers of them, bit for bit."
    h = hashlib.sha256()
    def feed(x):
        if isinstance(x, torch.Tensor): h.update(str((x.dtype, tuple(x.shape))).encode()); h.update(x.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(x, dict): [feed((k, x[k])) for k in sorted(x, key=str)]
        elif isinstance(x, (list, tuple)): [feed(v) for v in x]
        elif isinstance(x, torch.nn.Module): feed(x.state_dict())
        else: h.update(repr(x).encode())
    feed(things)
    return h.hexdigest()[:16]

def run(info, teachers, privacy:dict, cfg:dict):
    DistillConfig, PrivacyConfig, Distiller = _find('DistillConfig'), _find('PrivacyConfig'), _find('Distiller')
    d = Distiller(info, teachers, PrivacyConfig(noise_seed=7, **privacy), DistillConfig(**cfg), device='cpu').fit()
    return digest(d.student, d.generator, dict(d.buffer), d.epsilon)

def main():
    data = _find('load_dataset')('digits')
    TeacherConfig, train_teachers = _find('TeacherConfig'), _find('train_teachers')
    teachers = train_teachers(data, TeacherConfig(teachers=10, epochs=3), 'cpu', progress=False)
    small = dict(steps=6, query_batch=20, student_steps=2, generator_batch=20, final_steps=4)
    print('teachers', digest(teachers))
    rows = {'label gaussian': (dict(epsilon=10., queries=60), small),
            'label gaussian k=3': (dict(epsilon=10., queries=60, k=3), small),
            'label rr': (dict(epsilon=10., queries=60, mechanism='rr', k=3), small),
            'label confident': (dict(epsilon=10., queries=60, mechanism='confident'), small),
            'data': (dict(epsilon=10., queries=60, mode='data', k=3), small),
            'no noise': (dict(epsilon=math.inf, queries=60), small),
            'improvements': (dict(epsilon=10., queries=60), {**small, 'query_pool': 3, 'ema': .9, 'vote_temperature': .6, 'denoise': 2}),
            'refit': (dict(epsilon=10., queries=60), {**small, 'refit': True}),
            'query every 2': (dict(epsilon=10., queries=60), {**small, 'query_every': 2})}
    for name, (privacy, cfg) in rows.items(): print(name, run(data.info, teachers, privacy, cfg))
    DistillConfig, PrivacyConfig = _find('DistillConfig'), _find('PrivacyConfig')
    together = _find('fit_together')(data.info, teachers, PrivacyConfig(epsilon=10., queries=60, noise_seed=7),
                                     _find('pair_configs')(DistillConfig(**small), 2), device='cpu')
    print('two pairs', digest(together.student, together.generator, dict(together.buffer), together.epsilon))
    confident = _find('Distiller')(data.info, teachers, PrivacyConfig(epsilon=10., queries=60, mechanism='confident', noise_seed=7),
                                   DistillConfig(**small), device='cpu').fit()
    print('confident report', digest(repr(confident.confident_report())))
    model, eps = _find('train_dpsgd')(data, 5., epochs=1, seed=0, device='cpu', noise_seed=3)[:2]
    print('dp-sgd', digest(model, eps))
    pate = _find('pate_student')(teachers, data.info, data.test.tensors[0][:60], threshold=8., sigma1=4., sigma2=2., delta=1e-5,
                                 student_steps=20, device='cpu', generator=torch.Generator().manual_seed(5))
    print('pate student', digest(pate.student, repr({k: v for k, v in vars(pate).items() if k != 'student'})))
    report = _find('evaluate')(together.student, together.generator, data, teachers, TeacherConfig(teachers=10, epochs=3), n_per_class=10, epochs=1, device='cpu')
    print('evaluate', digest(repr(report)))

if __name__ == '__main__': main()
