"""The information flow, enforced: the teachers run only inside the oracle, in eval mode, without gradients,
and only their votes reach what is released. Each check is shown to fail on a deliberately broken loop."""

from dataclasses import replace

import pytest
import torch

from dpsd_nb.data import load_dataset
from dpsd_nb.distill import Distiller, DistillConfig, PrivacyConfig, TeacherOracle
from dpsd_nb.models import member
from dpsd_nb.teachers import TeacherConfig, get_teachers
from flowguard import FlowGuard

SMALL = DistillConfig(steps=6, query_batch=20, student_steps=2, generator_batch=20, final_steps=5)
PRIV = PrivacyConfig(epsilon=5., queries=100, k=3, noise_seed=0)  # reproducible noise: runs compared bit for bit
CONFIGS = {'plain': SMALL,  # and the recipes' knobs: the boundary share (the generator's mixed draws), softened votes, refit
           'boundary, softened, refit': replace(SMALL, boundary=0.5, vote_temperature=0.6, refit=True)}


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
    data = load_dataset('digits')
    teachers, _ = get_teachers(data, TeacherConfig(teachers=10, epochs=5), 'cpu', cache=tmp_path_factory.mktemp('t'), progress=False)
    return data, teachers


class Shifted(torch.nn.Module):
    "Same votes as the one-member `t`, different logits: one teacher of your own."
    def __init__(self, t): super().__init__(); self.t = t
    def forward(self, x): out = self.t(x)[0]; return 3 * out + out.mean(-1, keepdim=True) ** 2


def _members(teachers, wrap=lambda t: t):
    "The ensemble's members as a list of teachers (each a copy), each wrapped in `wrap`."
    return [wrap(member(teachers, j)) for j in range(teachers.members)]


@pytest.fixture(params=list(CONFIGS))
def cfg(request): return CONFIGS[request.param]


def _run(data, teachers, cfg=SMALL): return Distiller(data.info, teachers, PRIV, cfg, device='cpu').fit()


def _same(a, b): return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_teachers_run_only_inside_the_oracle_without_gradients(digits, cfg):
    data, teachers = digits
    guard = FlowGuard(teachers)
    try: _run(data, teachers, cfg)
    finally: guard.close()
    assert guard.calls, 'the teachers were never queried'
    assert set(guard.calls) == {(False, False, True)}  # no grad, eval mode, inside the oracle
    assert all(p.grad is None for p in teachers.parameters())


def test_the_guard_sees_a_teacher_called_outside_the_oracle(digits, monkeypatch, cfg):
    data, teachers = digits
    original = Distiller._query
    def peeking(self):  # a broken loop: it also runs the teachers itself, with gradients on
        self.oracle._teachers(torch.zeros(2, *data.info.shape))
        return original(self)
    monkeypatch.setattr(Distiller, '_query', peeking)
    guard = FlowGuard(teachers)
    try: _run(data, teachers, cfg)
    finally: guard.close()
    assert (True, False, False) in set(guard.calls)


def test_only_the_votes_reach_the_student_and_the_generator(digits, cfg):
    data, teachers = digits
    a, b = _run(data, _members(teachers), cfg), _run(data, _members(teachers, Shifted), cfg)
    assert _same(a.student, b.student) and _same(a.generator, b.generator)


def test_a_loop_that_reads_the_logits_is_told_apart(digits, monkeypatch, cfg):
    data, teachers = digits
    original = TeacherOracle.answer
    def leaky(self, x, student_probs, mechanism, generator):  # a broken oracle: the logits' scale leaks into the answers
        answer = original(self, x, student_probs, mechanism, generator)
        with torch.no_grad(): scale = self._teachers(x).abs().mean()
        answer.soft.mul_(1 + 1e-3 * scale)
        return answer
    monkeypatch.setattr(TeacherOracle, 'answer', leaky)
    a, b = _run(data, _members(teachers), cfg), _run(data, _members(teachers, Shifted), cfg)
    assert not (_same(a.student, b.student) and _same(a.generator, b.generator))
