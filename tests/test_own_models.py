"""Teachers, students and generators of your own through `Distiller` (issue 20): a module the package did not define
as the one teacher (M = 1, with its epsilon note) or a list of them (M teachers), any student, a generator of your own,
on made-up 3x32x32 and 1x8x8 data; bad input refused before any training, naming the value; the oracle the only door
to the teachers; reproducible runs with `noise_seed`; the caller's random state (CPU and CUDA) left alone."""
import copy
import re
import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from dpsd_nb.data import Data, DataInfo
from dpsd_nb.models import TeacherCNN, TeacherModules, member, seeded, student_cnn
from dpsd_nb.teachers import TeacherConfig, teacher_logits, train_teachers
from dpsd_nb.distill import (Distiller, DistillConfig, PrivacyConfig, _reinitialized, own_vote_chance)
from flowguard import FlowGuard
from dpsd_nb.evaluate import evaluate, sample_grid

torch.set_num_threads(1)
RGB = DataInfo('toy-rgb', (3, 32, 32), tuple('abcdefghij'))
GRAY = DataInfo('toy-gray', (1, 8, 8), tuple('0123456789'))
SMALL = DistillConfig(steps=3, query_batch=16, student_steps=1, student_batch=16, generator_batch=16, final_steps=2, latent=16)
PRIV = PrivacyConfig(epsilon=5., queries=48, noise_seed=0)  # reproducible noise: a test, NOT private against whoever knows it


def tiny_cnn(info, width=4, seed=0):
    "A classifier the package did not define (global average pooling), its weights from `seed`."
    with seeded(seed):
        return nn.Sequential(nn.Conv2d(info.channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                             nn.Linear(4 * width, info.num_classes))

def own_student(info, seed=0):
    "A student with batch norm, also not the package's."
    with seeded(seed):
        return nn.Sequential(nn.Conv2d(info.channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(8, info.num_classes))

class OwnGenerator(nn.Module):
    "The interface the loop needs: generator(z, y), z of `latent` dims, images of `info.shape` in [-1, 1]."
    def __init__(self, info, latent=16, seed=0):
        super().__init__()
        self.shape, self.latent = info.shape, latent
        with seeded(seed): self.embed, self.fc = nn.Embedding(info.num_classes, latent), nn.Linear(latent, math.prod(info.shape))
    def forward(self, z, y): return torch.tanh(self.fc(z + self.embed(y))).view(len(z), *self.shape)

def made_up(info, n=60, seed=0):
    "Random images in [-1, 1] with random labels: a private split and a test split of that shape."
    g = torch.Generator().manual_seed(seed)
    split = lambda m: TensorDataset(torch.rand(m, *info.shape, generator=g) * 2 - 1, torch.randint(info.num_classes, (m,), generator=g))
    return Data(split(n), split(n // 2), info)

def run(info, teachers, privacy=PRIV, cfg=SMALL, **own):
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='one teacher')
        return Distiller(info, teachers, privacy, cfg, device='cpu', **own).fit()


@pytest.mark.parametrize('info', [RGB, GRAY], ids=['3x32x32', '1x8x8'])
def test_one_module_of_your_own_is_one_teacher_with_its_epsilon_note(info):
    with pytest.warns(UserWarning, match=r'one teacher \(M = 1\)') as caught:
        d = Distiller(info, tiny_cnn(info), PRIV, SMALL, device='cpu', student=own_student(info), generator=OwnGenerator(info))
    note = str(next(w.message for w in caught if 'one teacher' in str(w.message)))
    assert f'probability {own_vote_chance(d.mechanism):.2f}' in note and 'every answer' in note and 'epsilon = 5' in note
    d.fit()
    assert d.oracle.members == 1 and d.queries == 48 and math.isclose(d.epsilon, 5., rel_tol=1e-6)
    assert [tuple(x.shape) for x in d.buffer['x']] == [(16, *info.shape)] * 3
    assert tuple(d.buffer['soft'][0].shape) == (16, info.num_classes)
    assert tuple(d.student(torch.zeros(5, *info.shape)).shape) == (5, info.num_classes)

@pytest.mark.parametrize('info', [RGB, GRAY], ids=['3x32x32', '1x8x8'])
def test_a_list_of_modules_is_M_teachers_and_needs_no_note(info):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        d = run(info, [tiny_cnn(info, seed=j) for j in range(3)], student=own_student(info))
    assert not [w for w in caught if 'one teacher' in str(w.message)]
    assert d.oracle.members == 3 and d.queries == 48 and type(d.student[1]) is nn.BatchNorm2d
    assert torch.equal(torch.cat(d.buffer['soft']).sum(1), torch.ones(48))

def test_no_note_without_noise():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        Distiller(GRAY, tiny_cnn(GRAY), PrivacyConfig(epsilon=math.inf), SMALL, device='cpu')
    assert not [w for w in caught if 'one teacher' in str(w.message)]

def test_the_package_ensemble_and_its_members_as_a_list_are_the_same_teachers():
    with seeded(1): ensemble = TeacherCNN(GRAY, members=4, width=4, hidden=8)
    members = [member(ensemble, j) for j in range(4)]
    x = torch.rand(8, *GRAY.shape) * 2 - 1
    assert torch.allclose(teacher_logits(members, x), teacher_logits(ensemble, x), atol=1e-5)  # teacher j is member j
    a, b = run(GRAY, ensemble), run(GRAY, members)
    assert all(torch.equal(x, y) for x, y in zip(a.buffer['labels'], b.buffer['labels']))
    for p, q in zip(a.student.parameters(), b.student.parameters()): assert torch.equal(p, q)


BAD = {  # what is wrong -> (the Distiller's arguments, the words the error must contain)
    'teacher classes': (lambda: dict(teachers=nn.Sequential(nn.Flatten(), nn.Linear(3072, 7))), 'the teacher gives logits of shape (2, 7)'),
    'teacher input': (lambda: dict(teachers=tiny_cnn(GRAY)), 'the teacher fails on a probe'),
    'one of the list': (lambda: dict(teachers=[tiny_cnn(RGB), nn.Sequential(nn.Flatten(), nn.Linear(3072, 5))]), 'teachers[1] gives logits of shape (2, 5)'),
    'an ensemble in the list': (lambda: dict(teachers=[TeacherCNN(RGB, members=2)]), 'teachers[0] holds 2 teachers'),
    'not a module': (lambda: dict(teachers='resnet18'), "teachers='resnet18'"),
    'student classes': (lambda: dict(student=nn.Sequential(nn.Flatten(), nn.Linear(3072, 3))), 'the student gives outputs of shape (2, 3)'),
    'student input': (lambda: dict(student=student_cnn(GRAY)), 'the student fails on a probe'),
    'generator shape': (lambda: dict(generator=OwnGenerator(GRAY)), 'gives images of shape (2, 1, 8, 8): expected (2, *info.shape) = (2, 3, 32, 32)'),
    'generator latent': (lambda: dict(generator=OwnGenerator(RGB, latent=8)), 'generator.latent=8 but cfg.latent=16'),
    'generator call': (lambda: dict(generator=nn.Sequential()), 'the generator fails on a probe'),
}

@pytest.mark.parametrize('case', BAD)
def test_bad_input_is_refused_before_training_naming_the_value(case):
    make, words = BAD[case]
    args = {'teachers': tiny_cnn(RGB), **make()}
    student = args.setdefault('student', own_student(RGB))
    before = copy.deepcopy(student.state_dict())
    with pytest.raises((ValueError, TypeError)) as e, warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='one teacher')
        Distiller(RGB, privacy=PRIV, cfg=SMALL, device='cpu', **args)
    assert words in str(e.value), (case, str(e.value))
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())  # nothing trained, not even batch-norm statistics

def test_generator_outside_the_pixel_range_is_refused():
    class Loud(OwnGenerator):
        def forward(self, z, y): return 3 * super().forward(z, y)
    with pytest.raises(ValueError, match=r'pixels up to .* must lie in \[-1, 1\]'):
        Distiller(RGB, [tiny_cnn(RGB, seed=s) for s in (0, 1)], PRIV, SMALL, device='cpu', generator=Loud(RGB))



class HoldsTeacher(nn.Module):
    "A generator that keeps a teacher inside it (and would release it)."
    def __init__(self, teacher, info=RGB):
        super().__init__(); self.teacher, self.inner = teacher, OwnGenerator(info); self.latent = self.inner.latent
    def forward(self, z, y): return self.inner(z, y)

TEACHER_LEAKS = {  # a released model built from a teacher -> the words of the refusal (the guarantee covers only the answers)
    'the teacher as the student': (lambda t: dict(student=t), "the student contains a teacher's module"),
    "a teacher's layers in the student": (lambda t: dict(student=nn.Sequential(t[0], nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 10))),
                                          "the student contains a teacher's module"),
    "a teacher's tensor in the student": (lambda t: dict(student=_sharing(t)), "the student's 0.weight holds a teacher's weights"),
    'a copy of the teacher as the student': (lambda t: dict(student=copy.deepcopy(t)), "the student's 0.weight holds a teacher's weights"),
    'the teacher inside the generator': (lambda t: dict(generator=HoldsTeacher(t)), "the generator contains a teacher's module"),
}

def _sharing(t):
    s = tiny_cnn(RGB, seed=5); s[0].weight = t[0].weight  # the same Parameter, in a module of its own
    return s

@pytest.mark.parametrize('case', TEACHER_LEAKS)
def test_a_released_model_built_from_a_teacher_is_refused(case):
    make, words = TEACHER_LEAKS[case]
    t = tiny_cnn(RGB)
    with pytest.raises(ValueError) as e, warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='one teacher')
        Distiller(RGB, [t, tiny_cnn(RGB, seed=1)], PRIV, SMALL, device='cpu', **make(t))
    assert words in str(e.value), (case, str(e.value))

@pytest.mark.parametrize('teachers, words', [
    (lambda t: [t, t], 'teachers[0] and teachers[1] share weights'),
    (lambda t: [t, tiny_cnn(RGB, seed=1), copy.deepcopy(t)], 'teachers[0] and teachers[2] have identical weights'),
], ids=['the same module twice', 'a copy'])
def test_one_teacher_listed_twice_is_refused(teachers, words):
    "One record changes every copy of a teacher: M copies would need M times the sensitivity the noise is calibrated for."
    with pytest.raises(ValueError, match=re.escape(words)):
        Distiller(RGB, teachers(tiny_cnn(RGB)), PRIV, SMALL, device='cpu')

@pytest.mark.parametrize('as_list', [False, True], ids=['one module', 'a list'])
def test_the_oracle_is_the_only_door_to_teachers_of_your_own(as_list):
    teachers = [tiny_cnn(RGB, seed=j) for j in range(3)] if as_list else tiny_cnn(RGB)
    guard = FlowGuard(teachers)
    try: d = run(RGB, teachers, student=own_student(RGB), generator=OwnGenerator(RGB))
    finally: guard.close()
    assert guard.calls and {c for c in guard.calls} == {(False, False, True)}  # no grad, eval mode, inside the oracle
    mods = [m for t in (teachers if as_list else [teachers]) for m in t.modules()]
    assert all(p.grad is None for m in mods for p in m.parameters())
    held = [k for k, v in vars(d).items() if k != 'oracle' and isinstance(v, nn.Module) and any(m is t for m in v.modules() for t in mods)]
    assert held == []  # nothing but the oracle holds a teacher

def test_same_votes_other_logits_teach_the_same_student():
    "Teachers of your own that vote alike but whose logits differ: in label mode the run cannot tell them apart."
    class Shifted(nn.Module):
        def __init__(self, t): super().__init__(); self.t = t
        def forward(self, x): out = self.t(x); return 3 * out + out.mean(-1, keepdim=True) ** 2
    plain = [tiny_cnn(RGB, seed=j) for j in range(3)]
    a = run(RGB, plain, PrivacyConfig(epsilon=5., queries=48, k=3, noise_seed=0))
    b = run(RGB, [Shifted(copy.deepcopy(t)) for t in plain], PrivacyConfig(epsilon=5., queries=48, k=3, noise_seed=0))
    for p, q in zip(a.student.parameters(), b.student.parameters()): assert torch.equal(p, q)
    for p, q in zip(a.generator.parameters(), b.generator.parameters()): assert torch.equal(p, q)


def test_reproducible_for_a_fixed_seed_with_noise_seed():
    fresh = lambda: dict(teachers=[tiny_cnn(RGB, seed=j) for j in range(2)], student=own_student(RGB), generator=OwnGenerator(RGB))
    refit = DistillConfig(**{**vars(SMALL), 'refit': True})
    a, b = run(RGB, cfg=refit, **fresh()), run(RGB, cfg=refit, **fresh())
    for p, q in zip(a.student.state_dict().values(), b.student.state_dict().values()): assert torch.equal(p, q)
    assert all(torch.equal(x, y) for x, y in zip(a.buffer['noisy'], b.buffer['noisy']))
    c = run(RGB, privacy=PrivacyConfig(epsilon=5., queries=48, noise_seed=1), cfg=refit, **fresh())
    assert not torch.equal(a.buffer['noisy'][0], c.buffer['noisy'][0])  # another noise seed, other noise

def test_refit_draws_a_fresh_student_of_your_architecture():
    mine = own_student(RGB)
    d = run(RGB, [tiny_cnn(RGB, seed=s) for s in (0, 1)], cfg=DistillConfig(**{**vars(SMALL), 'refit': True}), student=mine)
    assert d.student is not mine and type(d.student[1]) is nn.BatchNorm2d
    assert not torch.equal(d.student[0].weight, own_student(RGB)[0].weight)  # weights drawn again from cfg.seed + 1, then fitted

def test_a_fresh_default_student_is_the_one_student_cnn_draws():
    "`refit` and `denoise` re-initialize a copy of the initial student: for `student_cnn` the very weights it draws from that seed."
    with seeded(7): drawn = student_cnn(RGB)
    with seeded(3): template = student_cnn(RGB)
    with seeded(7): again = _reinitialized(copy.deepcopy(template))
    for p, q in zip(drawn.parameters(), again.parameters()): assert torch.equal(p, q)


def test_evaluate_and_sample_grid_take_models_of_your_own():
    data = made_up(RGB)
    teachers = [tiny_cnn(RGB, seed=j) for j in range(3)]
    d = run(RGB, teachers, student=own_student(RGB), generator=OwnGenerator(RGB))
    res = evaluate(d.student, d.generator, data, teachers, TeacherConfig(teachers=3, seed=0), n_per_class=2, epochs=1, device='cpu')
    assert {'teacher_accuracy', 'teacher_member_accuracy', 'mia_auc_teacher'} <= set(res['not_private'])
    assert 0 <= res['student_accuracy'] <= 1 and 0 <= res['not_private']['mia_auc_teacher'] <= 1
    one = evaluate(d.student, d.generator, data, tiny_cnn(RGB), n_per_class=2, epochs=1, device='cpu')  # M = 1: no partition needed
    assert 'mia_auc_teacher' in one['not_private']
    with pytest.raises(ValueError, match='without teacher_cfg'): evaluate(d.student, d.generator, data, teachers, device='cpu')
    assert tuple(sample_grid(d.generator, RGB, 2, d.student).shape) == (3, 10 * 35 + 1, 2 * 35 + 1)


def cpu_and_cuda_states():
    return torch.get_rng_state(), (torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])

def touch_everything(device):
    "Train teachers, build and fit a run (default models, with refit), on `device`."
    teachers = train_teachers(made_up(GRAY), TeacherConfig(teachers=2, epochs=1, width=4, hidden=8), device, progress=False)
    run_cfg = DistillConfig(**{**vars(SMALL), 'refit': True})
    Distiller(GRAY, teachers, PRIV, run_cfg, device=device).fit()

def test_the_cpu_random_state_is_left_alone():
    before = torch.get_rng_state()
    touch_everything('cpu')
    assert torch.equal(torch.get_rng_state(), before)

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_the_cuda_random_states_are_left_alone():
    torch.cuda.init(); before = cpu_and_cuda_states()
    touch_everything('cuda')
    after = cpu_and_cuda_states()
    assert torch.equal(after[0], before[0]) and all(torch.equal(a, b) for a, b in zip(after[1], before[1]))


class ClaimsMembers(nn.Module):
    "A module of your own that says it holds `members` teachers and returns that many copies of one teacher's logits."
    def __init__(self, t, members=50): super().__init__(); self.t, self.members = t, members
    def forward(self, x): return self.t(x).expand(self.members, -1, -1)

def _nudged(t):
    "A deep copy of `t` with 1e-6 added to one bias: a different tensor, the same teacher."
    t2 = copy.deepcopy(t)
    with torch.no_grad(): t2[-1].bias[0] += 1e-6
    return t2

def _copied_members(near:bool):
    "A `TeacherCNN` of 4 whose member 2 is member 0 copied (plus 1e-6 on one bias if `near`)."
    with seeded(0): e = TeacherCNN(RGB, members=4, width=4, hidden=8)
    with torch.no_grad():
        for p in e.parameters(): p[2] = p[0]
        e.fc2.bias[2, 0, 0] += 1e-6 if near else 0.
    return e

INFLATED = {  # a way to count one teacher several times -> the words of the refusal (the noise assumes one teacher per record)
    'TeacherModules([t] * 5)': (lambda t: TeacherModules([t] * 5), 'teachers[0] and teachers[1] share weights'),
    'a module of your own with members = 50': (lambda t: ClaimsMembers(t), 'members=50 but is a ClaimsMembers'),
    'a copy with 1e-6 on one bias': (lambda t: [t, _nudged(t)], 'teachers[0] and teachers[1] have nearly identical weights'),
    'a TeacherCNN with a member copied': (lambda t: _copied_members(near=False), 'members 0 and 2 of the TeacherCNN have identical weights'),
    'a TeacherCNN with a member nearly copied': (lambda t: _copied_members(near=True), 'members 0 and 2 of the TeacherCNN have nearly identical weights'),
}

@pytest.mark.parametrize('case', INFLATED)
def test_a_teacher_count_that_cannot_be_inflated(case):
    "Each record must change one teacher only: copies (exact or near) and counts the package cannot check are refused before any training."
    make, words = INFLATED[case]
    student = own_student(RGB); before = copy.deepcopy(student.state_dict())
    with pytest.raises(ValueError, match=re.escape(words)), warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='one teacher')
        Distiller(RGB, make(tiny_cnn(RGB)), PRIV, SMALL, device='cpu', student=student)
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())
