"""Evaluation: DP-SGD at the reference accuracies with its epsilon under replace-one, reproducible runs, the
membership attack against a brute-force AUC, and bad input refused with the bad value named."""
import math, warnings

import pytest
import torch

from dpsd_nb.data import load_dataset
from dpsd_nb.models import Generator
from dpsd_nb.teachers import TeacherConfig, train_teachers
from dpsd_nb.models import accuracy
from dpsd_nb.evaluate import _subset, class_coverage, evaluate, mia_auc, mia_auc_teachers, per_sample_loss, sample_grid, save_image_atomic, synthetic_utility
from dpsd_nb.dpsgd import train_dpsgd
from dpsd_nb.models import fit_classifier, fresh_student

torch.set_num_threads(1)
pytestmark = [pytest.mark.filterwarnings('ignore:Secure RNG turned off'),
              pytest.mark.filterwarnings('ignore:Optimal order is the'),
              pytest.mark.filterwarnings('ignore:Full backward hook is firing')]


@pytest.fixture(scope='module')
def data(): return load_dataset('digits')

@pytest.fixture(scope='module')
def overfit(data):
    "A student trained 150 epochs on 50 records, and those records."
    few = _subset(data.train, torch.arange(50))
    return fit_classifier(fresh_student(data.info, device='cpu'), few, epochs=150, batch_size=50), few


# ---------- DP-SGD ----------
@pytest.mark.parametrize('epsilon, floor', [(1., 0.50), (10., 0.85)])
def test_dpsgd_reaches_reference_accuracy(data, epsilon, floor):
    "The recipe (dpsgd_recipe: digits at 1 Adam 1e-2, batch 128, clip 1; at 10 SGD lr 1, batch 256, clip 0.1; 30 epochs), replace-one, noise seed 0."
    model, spent = train_dpsgd(data, epsilon, device='cpu', noise_seed=0)  # reproducible noise: a test must not flake
    assert 0.99 * epsilon <= spent <= epsilon, spent  # calibrated to the target under replace-one, never above it
    assert accuracy(model, data.test) > floor
    assert type(model) is torch.nn.Sequential and not hasattr(next(model.parameters()), 'grad_sample')

def test_dpsgd_reproduces(data):
    runs = [train_dpsgd(data, 5., epochs=2, device='cpu', noise_seed=0) for _ in range(2)]
    for p, q in zip(runs[0][0].parameters(), runs[1][0].parameters()): assert torch.equal(p, q)
    assert runs[0][1] == runs[1][1]
    other = train_dpsgd(data, 5., epochs=2, seed=1, device='cpu', noise_seed=0)[0]
    assert not torch.equal(next(other.parameters()), next(runs[0][0].parameters()))

def test_dpsgd_poisson_batches_are_secret_by_default(data, monkeypatch):
    "Which records a batch holds must be as secret as the noise: the sampler's generator is fresh from the OS, not torch's global one."
    import opacus.data_loader as dl
    seen, original = [], dl.DPDataLoader.from_data_loader.__func__
    def spy(cls, data_loader, **kwargs):
        g = kwargs.get('generator') or data_loader.generator
        seen.append((g, None if g is None else g.get_state().clone()))  # its state before any batch is drawn
        return original(cls, data_loader, **kwargs)
    monkeypatch.setattr(dl.DPDataLoader, 'from_data_loader', classmethod(spy))
    for noise_seed in (None, None, 3, 3): train_dpsgd(data, 5., epochs=1, device='cpu', noise_seed=noise_seed)
    assert len(seen) == 4 and all(g is not None and g is not torch.default_generator for g, _ in seen)
    assert not torch.equal(seen[0][1], seen[1][1])  # secret: drawn anew from the OS each run
    assert torch.equal(seen[2][1], seen[3][1])  # noise_seed: reproducible, and said to be not private


@pytest.mark.parametrize('kwargs, message', [
    (dict(epsilon=0), 'epsilon=0'), (dict(epsilon=-1.), 'epsilon=-1.0'), (dict(epsilon=math.inf), 'epsilon=inf'),
    (dict(epsilon=1., delta=0.), 'delta=0.0'), (dict(epsilon=1., delta=1.), 'delta=1.0'),
    (dict(epsilon=1., epochs=0), 'epochs=0'), (dict(epsilon=1., epochs=2.5), 'epochs=2.5'),
    (dict(epsilon=1., batch_size=0), 'batch_size=0'), (dict(epsilon=1., lr=0), 'lr=0'),
    (dict(epsilon=1., max_grad_norm=0), 'max_grad_norm=0')])
def test_dpsgd_bad_input(data, kwargs, message):
    with pytest.raises(ValueError, match=message): train_dpsgd(data, **kwargs)


# ---------- membership inference ----------
def brute_force_auc(model, members, nonmembers):
    "P(member scores higher) + P(tie) / 2 over all pairs."
    m, n = -per_sample_loss(model, members), -per_sample_loss(model, nonmembers)
    diff = m[:, None] - n[None, :]
    return ((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean()).item()

def test_mia_auc_is_the_pairwise_probability(data, overfit):
    model, few = overfit
    assert mia_auc(model, few, data.test) == pytest.approx(brute_force_auc(model, few, data.test), abs=1e-12)

def test_mia_auc_separates_memorized_records_and_not_unseen_halves(data, overfit):
    model, few = overfit
    assert mia_auc(model, few, data.test) > 0.6
    halves = _subset(data.test, torch.arange(0, 360, 2)), _subset(data.test, torch.arange(1, 360, 2))
    assert abs(mia_auc(model, *halves) - 0.5) < 0.1  # null std ~0.03 for 180 vs 180
    assert mia_auc(model, few, few) == 0.5

def test_mia_auc_swapping_sides_mirrors(data, overfit):
    model, few = overfit
    assert mia_auc(model, few, data.test) == pytest.approx(1 - mia_auc(model, data.test, few), abs=1e-12)

@pytest.fixture(scope='module')
def teachers(data):
    cfg = TeacherConfig(teachers=4, epochs=5)
    return train_teachers(data, cfg, 'cpu', progress=False), cfg

def test_mia_auc_teachers_is_the_mean_over_teachers(data, teachers):
    from dpsd_nb.data import partition
    from dpsd_nb.models import member
    ens, cfg = teachers
    parts = partition(data.train, cfg.teachers, cfg.seed)
    each = [mia_auc(member(ens, j), _subset(data.train, parts[j]), data.test) for j in range(cfg.teachers)]
    assert mia_auc_teachers(ens, data, cfg) == pytest.approx(sum(each) / len(each))
    one = mia_auc_teachers(ens, data, cfg, max_teachers=1, seed=3)
    assert any(one == pytest.approx(a) for a in each)

def test_mia_bad_input(data, overfit, teachers):
    model, few = overfit
    ens, cfg = teachers
    with pytest.raises(ValueError, match='members is empty'): mia_auc(model, _subset(few, []), data.test)
    with pytest.raises(ValueError, match='nonmembers is empty'): mia_auc(model, few, _subset(few, []))
    with pytest.raises(ValueError, match='ensemble of 4 teachers'): mia_auc(ens, few, data.test)
    with pytest.raises(ValueError, match='cfg.teachers=2'): mia_auc_teachers(ens, data, TeacherConfig(teachers=2))


# ---------- generator measurements ----------
@pytest.fixture(scope='module')
def untrained(data):
    torch.manual_seed(0)
    return Generator(data.info, conditional=True), fresh_student(data.info, device='cpu')

def test_utility_and_coverage_reproduce(data, untrained):
    gen, student = untrained
    u = [synthetic_utility(gen, student, data.info, data.test, n_per_class=20, epochs=2, device='cpu') for _ in range(2)]
    assert u[0] == u[1]
    c = class_coverage(gen, student, data.info, n=200)
    assert torch.equal(c, class_coverage(gen, student, data.info, n=200)) and c.sum().item() == pytest.approx(1.)

def test_unconditional_generator(data, untrained):
    torch.manual_seed(0)
    gen = Generator(data.info, conditional=False)
    assert class_coverage(gen, untrained[1], data.info, n=1500).sum().item() == pytest.approx(1.)
    with pytest.raises(ValueError, match='conditional generator'): sample_grid(gen, data.info)

def test_evaluate_keys(data, untrained, teachers):
    gen, student = untrained
    res = evaluate(student, gen, data, *teachers, n_per_class=10, epochs=1, device='cpu')
    private = res.pop('not_private')
    assert set(res) == {'student_accuracy', 'synthetic_accuracy', 'coverage_min', 'coverage_max'}
    assert {'teacher_accuracy', 'teacher_member_accuracy', 'mia_auc_teacher', 'mia_auc_student'} == set(private) - {'note'}
    assert 'does NOT cover' in private.pop('note')
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in (*res.values(), *private.values()))
    with pytest.raises(ValueError, match='without teacher_cfg'): evaluate(student, gen, data, teachers[0])

def test_save_image_atomic_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(Exception): save_image_atomic(torch.rand(5, 4, 4), tmp_path/'a'/'x.png')
    assert list((tmp_path/'a').iterdir()) == []
    with pytest.raises(ValueError): save_image_atomic(torch.rand(3, 4, 4), tmp_path/'x.unknown-format')
    assert list(tmp_path.glob('*x*')) == []
    p = save_image_atomic(torch.rand(3, 4, 4), tmp_path/'x.png')
    assert p.read_bytes()[:4] == b'\x89PNG'
