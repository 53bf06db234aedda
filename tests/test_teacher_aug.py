"""Training augmentation of the teachers (input noise, mixup, shifts) keeps the privacy unit: replacing one record
changes exactly its own teacher's trained weights, bit for bit, with every option on, as tests/test_audit.py checks
for the plain recipe. Broken variant: mixup partners drawn from the whole stacked batch, i.e. from other teachers'
parts (more than one teacher then moves). Also: the defaults keep the plain recipe's cache keys, the options are
reproducible from the seed and refused when bad before any training, and the slow loop agrees with the vectorized
trainer.
"""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import dpsd_nb.teachers as teachers_module
from dpsd_nb.data import Data, load_dataset, partition
from dpsd_nb.models import member
from dpsd_nb.teachers import TeacherConfig, cache_path, get_teachers, train_teachers, train_teachers_loop

torch.set_num_threads(1)
SMALL = dict(teachers=10, epochs=6, width=8, hidden=32)
OPTIONS = {'input_noise': dict(input_noise=0.5), 'mixup': dict(mixup=0.4), 'shift': dict(shift=1),
           'all': dict(input_noise=0.3, mixup=1.0, shift=1)}


@pytest.fixture(scope='module')
def digits(): return load_dataset('digits')


def replaced(data, i):
    "`data` with record `i` replaced: a new label and a new image (the negative)."
    x, y = (t.clone() for t in data.train.tensors)
    y[i], x[i] = (y[i] + 5) % 10, -x[i]
    return Data(TensorDataset(x, y), data.test, data.info)


def members_that_differ(a, b):
    "Indices of the teachers whose trained weights differ at all between the two ensembles."
    differ = torch.zeros(a.members, dtype=torch.bool)
    for pa, pb in zip(a.parameters(), b.parameters()): differ |= (pa != pb).flatten(1).any(1)
    return differ.nonzero().flatten().tolist()


def mixed_across_teachers(x, y, cfg, streams, info):
    "The broken variant: mixup over the stacked batch of all teachers (M b images), partners from other teachers' parts."
    M, b = y.shape
    g = torch.Generator().manual_seed(cfg.seed)
    other, lam = torch.randperm(M * b, generator=g), torch.rand(M * b, generator=g)
    xs, ys = x.flatten(0, 1), F.one_hot(y.flatten(), info.num_classes).float()
    xs, ys = torch.lerp(xs[other], xs, lam.view(-1, 1, 1, 1)), torch.lerp(ys[other], ys, lam[:, None])
    return xs.view_as(x), ys.view(M, b, -1)


@pytest.mark.parametrize('option', list(OPTIONS))
def test_one_record_changes_only_its_own_teacher(digits, option):
    cfg = TeacherConfig(**SMALL, **OPTIONS[option])
    base, parts = train_teachers(digits, cfg, 'cpu', progress=False), partition(digits.train, cfg.teachers, cfg.seed)
    for i in (0, 700, len(digits.train) - 1):
        owner = next(j for j, p in enumerate(parts) if i in p)
        assert members_that_differ(base, train_teachers(replaced(digits, i), cfg, 'cpu', progress=False)) == [owner], (option, i)


def test_mixup_across_teachers_is_caught(digits, monkeypatch):
    cfg = TeacherConfig(**SMALL, mixup=0.4)
    monkeypatch.setattr(teachers_module, '_augmented', mixed_across_teachers)
    before, after = train_teachers(digits, cfg, 'cpu', progress=False), train_teachers(replaced(digits, 0), cfg, 'cpu', progress=False)
    assert len(members_that_differ(before, after)) > 1


def test_options_change_the_training(digits):
    plain = train_teachers(digits, TeacherConfig(**SMALL), 'cpu', progress=False)
    for option, opts in OPTIONS.items():
        assert len(members_that_differ(plain, train_teachers(digits, TeacherConfig(**SMALL, **opts), 'cpu', progress=False))) == SMALL['teachers'], option


def test_reproducible_from_the_seed(digits):
    cfg = TeacherConfig(**SMALL, **OPTIONS['all'])
    state = torch.get_rng_state()
    a, b = (train_teachers(digits, cfg, 'cpu', progress=False) for _ in range(2))
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is left alone
    assert members_that_differ(a, b) == []
    other = train_teachers(digits, TeacherConfig(**{**SMALL, 'seed': 1}, **OPTIONS['all']), 'cpu', progress=False)
    assert len(members_that_differ(a, other)) == SMALL['teachers']


def test_loop_agrees_with_vectorized(digits):
    cfg = TeacherConfig(teachers=3, epochs=2, **OPTIONS['all'])
    together, alone = train_teachers(digits, cfg, 'cpu', progress=False), train_teachers_loop(digits, cfg, 'cpu')
    for j in range(3): torch.testing.assert_close(member(together, j).fc2.weight, alone[j].fc2.weight, atol=1e-4, rtol=0)


def test_cache_keys(digits, tmp_path):
    # the plain recipe's keys, as they were before the options existed: its cached teachers are found again
    assert cache_path(digits, TeacherConfig(), tmp_path).name == 'teachers-digits-M1-e9bb90cff94f.pt'
    assert cache_path(digits, TeacherConfig(teachers=20, epochs=100), tmp_path).name == 'teachers-digits-M20-afecfe3e30df.pt'
    keys = {cache_path(digits, TeacherConfig(teachers=20, epochs=100, **o), tmp_path) for o in
            ({}, dict(input_noise=0.3), dict(input_noise=1.0), dict(mixup=0.4), dict(shift=1), dict(shift=2))}
    assert len(keys) == 6  # teachers of another recipe are never reused


@pytest.mark.parametrize('opts, message', [
    (dict(input_noise=-0.1), 'input_noise=-0.1'), (dict(input_noise=float('inf')), 'input_noise=inf'),
    (dict(mixup=-1), 'mixup=-1'), (dict(mixup='0.4'), "mixup='0.4'"), (dict(shift=-1), 'shift=-1'), (dict(shift=0.5), 'shift=0.5'),
    (dict(shift=True), 'shift=True')])
def test_bad_options_are_refused(opts, message):
    with pytest.raises(ValueError, match=message): TeacherConfig(**opts)


def test_shift_too_large_is_refused_before_training(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(teachers_module, '_batches', lambda *a: pytest.fail('trained before refusing'))
    with pytest.raises(ValueError, match=r'shift=8: must be below the image side, 0\.\.7'):
        get_teachers(digits, TeacherConfig(teachers=2, epochs=1, shift=8), 'cpu', tmp_path)
