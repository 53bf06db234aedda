"""Confident mode (`mechanisms.ConfidentLabels`, `PrivacyConfig(mechanism='confident')`) inside the DPSD loop:

- accounting: every query asked is charged the threshold check (sensitivity 1) and GNMax (sqrt 2), answered or not, and
  the epsilon is the data-independent one of `pate_analysis.pate_epsilon`; the same check fails on a broken variant that charges
  the answered queries only (monkeypatched inside the test);
- unanswered queries never reach the student: every batch it is trained on holds answered queries only, with their labels;
- nothing of the votes leaves: the report holds no votes, a checkpoint holds none (a resumed run reports no data-dependent
  epsilon rather than a wrong one);
- an end-to-end audit on neighbouring data sets (replace-one, as in tests/test_audit.py): tiny teachers trained on D and on
  D' (record 0 replaced), the run's own calibrated mechanism released a million times at the query whose top count moves,
  a Clopper-Pearson lower bound on epsilon of the released (answered, label) at or below the claim; above it when the
  threshold check runs without its noise (the claim unchanged).

Power: at this query the bound is about 0.26 against the claim of 1, and 11 without the check's noise. A sigma1 a tenth of
the calibrated one is not caught (0.64): the check is a small part of the claim (sigma1 = 3.75 sigma2), and the accounting
tests above check its charge directly.
"""
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import TensorDataset

from dpsd_nb.accountant import Accountant
from dpsd_nb.data import Data, load_dataset
from dpsd_nb.distill import Callback, Distiller, DistillConfig, PrivacyConfig
from dpsd_nb.mechanisms import ConfidentLabels, GaussianEvent, noise_generator, vote_counts
from dpsd_nb.pate_analysis import NOT_PRIVATE, pate_epsilon, worst_case_epsilon
from dpsd_nb.teachers import TeacherConfig, teacher_logits, train_teachers

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')
CFG = TeacherConfig(teachers=10, epochs=10, width=8, hidden=32)
DELTA, ALPHA = 1e-5, 1e-3  # bounds hold with confidence 1 - ALPHA, one-sided
DRAWS = 1_000_000  # released answers per data set: half to pick the event, half to bound it
AUDIT_SEED = 2121  # reproducible noise: an audit is a test
SMALL = DistillConfig(steps=6, query_batch=10, student_steps=2, generator_batch=20, final_steps=5)


@pytest.fixture(scope='module')
def digits(): return load_dataset('digits')

@pytest.fixture(scope='module')
def base(digits): return train_teachers(digits, CFG, 'cpu', progress=False)


class Asked(Callback):
    "Counts the queries asked and answered, from the released `Answer` of each query step."
    def __init__(self): self.asked, self.answered = 0, 0
    def after_query(self, d): self.asked, self.answered = self.asked + len(d.answer.answered), self.answered + int(d.answer.answered.sum())

def confident_run(digits, teachers, callbacks=(), **privacy):
    privacy = dict(mechanism='confident', epsilon=10., queries=60, noise_seed=0, **privacy)  # reproducible noise: a test
    return Distiller(digits.info, teachers, PrivacyConfig(**privacy), SMALL, list(callbacks), device='cpu')


def test_only_answered_and_label_leave_the_mechanism():
    tl = torch.randn(10, 64, 10, requires_grad=True)
    sp = torch.randn(64, 10).softmax(-1)
    a = ConfidentLabels(2., 5., 1., 4).answer(tl, sp, torch.Generator().manual_seed(0))
    assert set(vars(a)) == {'labels', 'soft', 'candidates', 'noisy', 'events'}  # `answered` is read off the labels
    assert a.answered.any() and (~a.answered).any()
    assert not any(t.requires_grad for t in (a.labels, a.soft, a.noisy))
    assert torch.equal(a.noisy.sum(1), a.answered.float()) and set(a.noisy.unique().tolist()) == {0., 1.}  # one-hot, or nothing
    assert torch.equal(a.candidates.gather(1, a.noisy.argmax(1, keepdim=True)).squeeze(1)[a.answered], a.labels[a.answered])


# ---------- accounting ----------
def check_every_query_charged(d, asked):
    "The accountant charged each of the `asked` queries the check and GNMax: the data-independent epsilon of them all."
    m, n = d.mechanism, asked.asked
    assert 0 < asked.answered < n, (asked.answered, n)  # some declined: the check is not vacuous
    assert d.accountant.ledger == {GaussianEvent(m.sigma1, 1., 1): n, GaussianEvent(m.sigma2, math.sqrt(2), 1): n}, d.accountant.ledger
    assert d.queries == n
    assert d.epsilon == pytest.approx(worst_case_epsilon(n, m.sigma1, m.sigma2, DELTA)[0], rel=1e-9)
    votes, answered = (torch.cat(t).numpy() for t in zip(*d.oracle._asked))
    assert d.epsilon == pytest.approx(pate_epsilon(votes, answered, m.threshold, m.sigma1, m.sigma2, DELTA).data_independent, rel=1e-9)

def test_every_query_asked_is_charged(digits, base):
    asked = Asked()
    d = confident_run(digits, base, [asked]).fit()
    check_every_query_charged(d, asked)
    assert d.epsilon == pytest.approx(10., rel=1e-6) and d.queries == 60  # the budget: asked, not answered
    assert d.released == asked.answered
    r = d.confident_report()
    assert (r.queries, r.answered, r.epsilon) == (60, asked.answered, d.epsilon)
    assert r.not_private.epsilon < r.epsilon and r.not_private.privacy == NOT_PRIVATE

def test_the_check_fails_when_only_answered_queries_are_charged(digits, base, monkeypatch):
    original = ConfidentLabels._run
    def broken(self, *args):  # a broken mechanism: its answer charges the answered queries only
        ex = original(self, *args)
        ex.answer.events = self.events(int(ex.answer.answered.sum()))
        return ex
    monkeypatch.setattr(ConfidentLabels, '_run', broken)
    asked = Asked()
    d = confident_run(digits, base, [asked]).fit()
    with pytest.raises(AssertionError): check_every_query_charged(d, asked)
    assert d.epsilon < worst_case_epsilon(asked.asked, d.mechanism.sigma1, d.mechanism.sigma2, DELTA)[0]  # it under-reports


# ---------- unanswered queries never reach the student ----------
def rows(x): return {r.numpy().tobytes() for r in x.flatten(1)}

def test_unanswered_queries_never_reach_the_student(digits, base, monkeypatch):
    seen, asked = [], []
    train = Distiller._train_student
    def spy(self, x, soft):
        seen.append((x.detach().clone(), soft.detach().clone())); return train(self, x, soft)
    monkeypatch.setattr(Distiller, '_train_student', spy)
    d = confident_run(digits, base)
    answer = d.oracle.answer
    def record(x, *args):
        a = answer(x, *args); asked.append((x.clone(), a)); return a
    d.oracle.answer = record
    d.fit()
    x = torch.cat([x for x, _ in asked]); a = torch.cat([ans.answered for _, ans in asked])
    assert a.any() and (~a).any()
    assert (torch.cat([ans.labels for _, ans in asked])[~a] == -1).all()  # an unanswered query has no label
    torch.testing.assert_close(torch.cat(d.buffer['x']), x[a], rtol=0, atol=0)  # the buffer: the answered queries, in order
    assert (torch.cat(d.buffer['labels']) >= 0).all()
    trained = torch.cat([x for x, _ in seen])
    assert rows(trained) <= rows(x[a]) and not rows(trained) & rows(x[~a])
    torch.testing.assert_close(torch.cat([s for _, s in seen]).sum(1), torch.ones(len(trained)))  # every target a label


# ---------- nothing of the votes leaves ----------
def tensors(obj):
    if isinstance(obj, torch.Tensor): yield obj
    elif isinstance(obj, dict): yield from (t for v in obj.values() for t in tensors(v))
    elif isinstance(obj, (list, tuple)): yield from (t for v in obj for t in tensors(v))

def test_no_votes_in_the_report_or_a_checkpoint(digits, base):
    d = confident_run(digits, base).fit()
    state = d.state_dict()
    counts = [t for t in tensors(state) if t.is_floating_point() and t.ndim and (t == t.round()).all() and t.max() >= 2]
    assert not counts, [t.shape for t in counts]  # vote counts (integers up to M) appear nowhere as floats; the one-hot answers are 0 or 1
    votes = {tuple(float(x) for x in v) for vs, _ in d.oracle._asked for v in vs.tolist()}  # the rows of candidate votes the run saw
    assert not any(tuple(float(x) for x in row) in votes for t in tensors(state) if t.ndim == 2 and t.shape[1] == d.mechanism.k
                   for row in t.tolist()), 'a recorded vote row is in the checkpoint'  # of any dtype: labels and RNG states are not rows of k
    assert not any('asked' in k for k in state), list(state)  # nothing of the oracle's record
    r = d.confident_report()
    assert all(not isinstance(v, (np.ndarray, torch.Tensor)) for v in vars(r).values())
    assert set(vars(r.not_private)) == {'epsilon', 'order', 'rdp', 'privacy'} and r.not_private.rdp.ndim == 1  # per order, not per query
    resumed = confident_run(digits, base).load_state_dict(state)
    again = resumed.confident_report()
    assert again.not_private is None and (again.queries, again.epsilon) == (r.queries, r.epsilon)
    with pytest.raises(ValueError, match='not saved'): resumed.confident_report(release=True)

def test_errors_come_before_training(digits, base):
    with pytest.raises(ValueError, match='threshold=0: a share'): PrivacyConfig(mechanism='confident', threshold=0)
    with pytest.raises(ValueError, match='release=True with k=3'): confident_run(digits, base, k=3).fit().confident_report(release=True)
    mid = confident_run(digits, base); assert mid.cfg.steps > 1
    mid._iterate()  # one step of a longer run
    with pytest.raises(ValueError, match='after the run'): mid.confident_report(release=True)
    with pytest.raises(ValueError, match="needs mechanism='confident'"):
        Distiller(digits.info, base, PrivacyConfig(queries=10), SMALL, device='cpu').confident_report()


# ---------- the audit, end to end: teachers on neighbouring data sets -> the run's mechanism -> (answered, label) ----------
def replaced(data, i=0):
    "`data` with record `i` replaced: a new label and a new image (the negative)."
    x, y = (t.clone() for t in data.train.tensors)
    y[i], x[i] = (y[i] + 5) % 10, -x[i]
    return Data(TensorDataset(x, y), data.test, data.info)

PROBS = torch.linspace(1, 0, 10).softmax(0)  # a fixed student prior: the candidates are the classes in order

@pytest.fixture(scope='module')
def neighbours(digits, base):
    "Teacher logits on random images for D and D', and the first image whose top candidate count moves between them."
    x = torch.rand(4000, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    a, b = teacher_logits(base, x), teacher_logits(train_teachers(replaced(digits), CFG, 'cpu', progress=False), x)
    cand = PROBS.topk(10).indices.expand(len(x), 10)
    top_a, top_b = vote_counts(a, cand).max(1).values, vote_counts(b, cand).max(1).values
    moved = (top_a != top_b).nonzero().flatten()
    assert len(moved), 'no query moves the top count: the audit would be vacuous'
    q = int(moved[0])
    return a[:, q:q + 1], b[:, q:q + 1], float(max(top_a[q], top_b[q]))

def cp_upper(k, n): return 1. if k >= n else float(stats.beta.ppf(1 - ALPHA, k + 1, n - k))
def cp_lower(k, n): return 0. if k <= 0 else float(stats.beta.ppf(ALPHA, k, n - k + 1))

def bound(k_d, k_d2, n=DRAWS // 2):
    "Clopper-Pearson lower bound on epsilon from an event seen k_d times on D and k_d2 times on D' (of n each)."
    tpr, fpr = cp_lower(k_d, n), cp_upper(k_d2, n)
    return math.log((tpr - DELTA) / fpr) if tpr > DELTA else 0.

def outcomes(mech, logits, seed):
    "Counts of the released outcome (unanswered, or the label) over DRAWS answers, for each half of the draws."
    out = mech.answer(logits.expand(-1, DRAWS, -1), PROBS.expand(DRAWS, 10), noise_generator(noise_seed=seed)).labels.numpy() + 1
    return np.bincount(out[:DRAWS // 2], minlength=11), np.bincount(out[DRAWS // 2:], minlength=11)

def audit(mech, a, b):
    "Lower bound on epsilon of one answer: the event (a union of outcomes, by likelihood ratio) picked on one half, bounded on the other."
    (a1, a2), (b1, b2) = outcomes(mech, a, AUDIT_SEED), outcomes(mech, b, AUDIT_SEED + 1)
    candidates = []
    for x1, x2, y1, y2 in ((a1, a2, b1, b2), (b1, b2, a1, a2)):
        by_ratio = np.argsort(-(x1 + .5) / (y1 + .5), kind='stable')
        for k in range(1, 6):
            ev = by_ratio[:k]
            candidates.append((bound(int(x1[ev].sum()), int(y1[ev].sum())), bound(int(x2[ev].sum()), int(y2[ev].sum()))))
    return candidates[int(np.argmax([sel for sel, _ in candidates]))][1]  # ties: the first, never the better hold-out value

@pytest.fixture(scope='module')
def calibrated(neighbours):
    "The run's own mechanism for one query at epsilon 1, its threshold at the larger top count (answered about half the time there)."
    mech = PrivacyConfig(mechanism='confident', epsilon=1., delta=DELTA, queries=1).build(10, CFG.teachers)
    return ConfidentLabels(mech.sigma1, neighbours[2], mech.sigma2, mech.k), Accountant(DELTA).epsilon_if(mech.events(1))

def test_audit_stays_below_the_claim(neighbours, calibrated):
    mech, claim = calibrated
    assert claim == pytest.approx(1., rel=1e-6)
    eps = audit(mech, *neighbours[:2])
    assert eps <= claim, (eps, claim)

def test_audit_exceeds_the_claim_with_a_tenth_of_gnmax_noise(neighbours, calibrated):
    mech, claim = calibrated
    eps = audit(ConfidentLabels(mech.sigma1, mech.threshold, mech.sigma2 / 10, mech.k), *neighbours[:2])  # GNMax too weak, the same claim
    assert eps > claim, (eps, claim)

def test_audit_exceeds_the_claim_without_noise_on_the_check(neighbours, calibrated):
    mech, claim = calibrated
    eps = audit(ConfidentLabels(0., mech.threshold, mech.sigma2, mech.k), *neighbours[:2])  # the check without its noise, the same claim
    assert eps > claim, (eps, claim)
