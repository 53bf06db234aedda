"""The privacy core against independent computations: Opacus's RDP accountant, brute-force Renyi
divergences, dp-accounting (when installed), sampling frequencies, and sensitivity bounds."""
import json, math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from scipy import stats

from dpsd_nb.mechanisms import (DATA_GRID_BITS, discrete_gaussian_pmf, GaussianEvent, RREvent, GaussianLabels, GaussianData, RandomizedResponse, explain,
                                project_simplex, rr_keep_prob, top_k, vote_counts)
from dpsd_nb.accountant import (DEFAULT_ORDERS, Accountant, calibrate, calibrate_gaussian, calibrate_rr, epsilon_gaussian,
                                epsilon_rr, eps_from_rdp, privacy_unit, rdp, rdp_gaussian, rdp_rr)

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings('ignore:Optimal order is the')  # Opacus's note on the order grid
SEED = 20260  # every sampled test below is deterministic; its tolerance is stated where it is used


# ---------- Gaussian accounting = Opacus ----------
def opacus_epsilon(z, steps, delta):
    from opacus.accountants import RDPAccountant
    acc = RDPAccountant()
    acc.history = [(z, 1.0, steps)]  # exactly what `steps` calls of acc.step(noise_multiplier=z, sample_rate=1) leave
    return acc.get_epsilon(delta)

def test_opacus_history_shortcut_is_stepping():
    from opacus.accountants import RDPAccountant
    acc = RDPAccountant()
    for _ in range(300): acc.step(noise_multiplier=7.0, sample_rate=1.0)
    assert acc.get_epsilon(1e-5) == opacus_epsilon(7.0, 300, 1e-5)

@pytest.mark.parametrize('sigma', [0.8, 3.0, 17.0, 250.0])
@pytest.mark.parametrize('sensitivity', [1.0, math.sqrt(2), 2.0])
@pytest.mark.parametrize('queries', [1, 64, 10_000, 1_000_000])
@pytest.mark.parametrize('delta', [1e-3, 1e-5, 1e-9])
def test_gaussian_matches_opacus(sigma, sensitivity, queries, delta):
    ours, theirs = epsilon_gaussian(sigma, sensitivity, queries, delta), opacus_epsilon(sigma / sensitivity, queries, delta)
    if theirs < 0: assert ours == 0  # we report a negative conversion (large delta, tiny RDP) as 0
    else: assert ours == pytest.approx(theirs, rel=1e-9)

def test_accountant_matches_opacus_step_by_step():
    from opacus.accountants import RDPAccountant
    ref, acc = RDPAccountant(), Accountant()
    for sigma, n in [(5.0, 40), (9.0, 25)]:
        for _ in range(n):
            ref.step(noise_multiplier=sigma / 2.0, sample_rate=1.0)
            acc.charge(GaussianData(sigma, 3).events(1))
    assert acc.epsilon(1e-6) == pytest.approx(ref.get_epsilon(1e-6), rel=1e-9)

@pytest.mark.parametrize('target', [0.5, 1.0, 4.0, 10.0])
@pytest.mark.parametrize('queries', [10, 1000, 100_000])
@pytest.mark.parametrize('sensitivity', [math.sqrt(2), 2.0])
def test_calibration_round_trip_and_opacus(target, queries, sensitivity):
    from opacus.accountants.utils import get_noise_multiplier
    sigma = calibrate_gaussian(target, 1e-5, queries, sensitivity)
    eps = epsilon_gaussian(sigma, sensitivity, queries, 1e-5)
    assert eps <= target and eps == pytest.approx(target, rel=1e-9)
    theirs = get_noise_multiplier(target_epsilon=target, target_delta=1e-5, sample_rate=1.0, steps=queries, accountant='rdp') * sensitivity
    # Opacus bisects until its epsilon lies in [target - 0.01, target]: it is on the safe side of our exact answer
    assert sigma <= theirs * (1 + 1e-9) and target - 0.01 - 1e-9 <= epsilon_gaussian(theirs, sensitivity, queries, 1e-5) <= target
    assert theirs == pytest.approx(sigma, rel=0.02)


# ---------- randomized response = brute force, dp-accounting ----------
def brute_force_rr(eps0, k, orders=DEFAULT_ORDERS):
    "Max over every ordered pair of inputs (each candidate, and a label outside them) of D_alpha, from its definition."
    p = rr_keep_prob(eps0, k)
    dists = [np.where(np.arange(k) == y, p, (1 - p) / (k - 1)) for y in range(k)] + [np.full(k, 1 / k)]
    out = []
    for a in orders:
        out.append(max(np.log(np.sum(P**a * Q**(1 - a))) / (a - 1) for P in dists for Q in dists))
    return np.array(out)

@pytest.mark.parametrize('k', [2, 3, 5, 10, 40])
@pytest.mark.parametrize('eps0', [0.01, 0.3, 1.0, 3.0, 8.0])
def test_rr_rdp_is_brute_force(eps0, k):
    np.testing.assert_allclose(rdp_rr(eps0, k), brute_force_rr(eps0, k), rtol=1e-9, atol=1e-13)

@given(st.floats(1e-3, 300.0), st.integers(2, 1000))
@settings(max_examples=200, deadline=None)
def test_rr_never_above_pure_dp(eps0, k):
    r = rdp_rr(eps0, k)
    assert np.isfinite(r).all() and (r >= 0).all() and (r <= eps0 * (1 + 1e-12)).all()
    assert (np.diff(r) >= -1e-12 * eps0).all()  # RDP grows with the order

def test_rr_matches_dp_accounting():
    import dp_accounting as dpa  # a dependency of the package: no skip
    from dp_accounting.rdp import rdp_privacy_accountant as R
    for k, eps0, q in [(2, 0.3, 10), (3, 1.0, 1000), (10, 2.5, 100_000)]:
        acc = R.RdpAccountant(list(DEFAULT_ORDERS), neighboring_relation=dpa.NeighboringRelation.REPLACE_ONE)
        acc.compose(dpa.RandomizedResponseDpEvent(noise_parameter=k / (math.exp(eps0) + k - 1), num_buckets=k), q)
        np.testing.assert_allclose(rdp(RREvent(eps0, k, q)), np.asarray(acc._rdp), rtol=1e-9)
        assert epsilon_rr(eps0, k, q, 1e-5) == pytest.approx(min(acc.get_epsilon(1e-5), q * eps0), rel=1e-9)

@pytest.mark.parametrize('target,queries,k', [(0.5, 1, 2), (1.0, 1000, 3), (3.0, 50, 10), (8.0, 1_000_000, 4)])
def test_rr_calibration_round_trip(target, queries, k):
    eps0 = calibrate_rr(target, 1e-5, queries, k)
    assert epsilon_rr(eps0, k, queries, 1e-5) <= target
    assert epsilon_rr(eps0 * (1 + 1e-8), k, queries, 1e-5) > target * (1 - 1e-9)  # the largest such eps0


# ---------- sampling: the mechanisms do what their events say ----------
def ensemble(votes, C):
    "Teacher logits (M, B, C) whose argmax are `votes` (M, B)."
    return F.one_hot(torch.as_tensor(votes), C).float()

def chi2_pvalue(labels, probs):
    counts = torch.bincount(labels, minlength=len(probs)).numpy()
    return stats.chisquare(counts, np.asarray(probs) * counts.sum()).pvalue

@pytest.mark.parametrize('eps0,k', [(0.5, 2), (1.0, 4), (3.0, 5)])
def test_rr_frequencies(eps0, k):
    n, C = 40_000, 8
    sp = torch.linspace(1, 0.1, C).softmax(0).expand(n, C)  # candidates 0..k-1
    p = rr_keep_prob(eps0, k)
    for votes, true in [([[1] * n], 1), ([[1] * n] * 3 + [[0] * n] * 2, 1), ([[C - 1] * n], None)]:  # one teacher; plurality 3-2; outside
        labels = RandomizedResponse(eps0, k).answer(ensemble(votes, C), sp, torch.Generator().manual_seed(SEED)).labels
        probs = [1 / k] * k if true is None else [p if c == true else (1 - p) / (k - 1) for c in range(k)]
        assert chi2_pvalue(labels, probs) > 1e-4, (votes[0][0], true)  # false alarm rate 1e-4 per check, fixed seed

@pytest.mark.parametrize('margin,sigma', [(1, 1.0), (1, 5.0), (4, 3.0), (10, 4.0)])
def test_gnmax_two_candidates(margin, sigma):
    n = 40_000
    votes = [[0] * n] * (margin + 2) + [[1] * n] * 2
    sp = torch.tensor([0.5, 0.4, 0.1]).expand(n, 3)
    labels = GaussianLabels(sigma, 2).answer(ensemble(votes, 3), sp, torch.Generator().manual_seed(SEED)).labels
    r = int(40 * sigma + 40); z = torch.arange(-r, r + 1); p = discrete_gaussian_pmf(sigma, z)
    expected = (p[:, None] * p[None] * (z[None] - z[:, None] <= margin)).sum().item()  # Pr[Z1 - Z0 <= margin]: a tie goes to candidate 0
    assert abs((labels == 0).float().mean().item() - expected) < 4.5 * math.sqrt(expected * (1 - expected) / n)

@pytest.mark.parametrize('mech', [GaussianLabels(2.5, 4), GaussianData(0.7, 3)])
def test_noise_is_the_discrete_gaussian_with_parameter_sigma(mech):
    g = torch.Generator().manual_seed(SEED)
    ex = explain(mech, torch.randn(7, 30_000, 10, generator=g), torch.randn(30_000, 10, generator=g).softmax(-1), g)
    noise = (ex.answer.noisy - ex.clean).flatten().double()
    assert noise.std().item() == pytest.approx(mech.sigma, rel=0.02) and abs(noise.mean().item()) < 0.02 * mech.sigma
    unit = 1. if isinstance(mech, GaussianLabels) else 2.**-DATA_GRID_BITS  # integers, or multiples of data mode's grid
    steps = (noise / unit).round().long()
    assert torch.equal(steps.double() * unit, noise)
    s = mech.sigma / unit; support = torch.arange(-int(4 * s), int(4 * s) + 1)  # bins of about sigma / 4 (data mode), one per integer (labels)
    width = max(1, int(s // 4)); bins = torch.div(support, width, rounding_mode='floor')
    expected = torch.zeros(int(bins.max() - bins.min()) + 1, dtype=torch.float64).index_add_(0, bins - bins.min(), discrete_gaussian_pmf(s, support))
    inside = (steps >= support[0]) & (steps <= support[-1])
    observed = torch.bincount(torch.div(steps[inside], width, rounding_mode='floor') - bins.min(), minlength=len(expected)).double()
    observed, expected = torch.cat([observed, (~inside).sum().double()[None]]), torch.cat([expected, (1 - expected.sum())[None]]) * len(noise)
    assert stats.chisquare(observed.numpy(), expected.numpy() * observed.sum().item() / expected.sum().item()).pvalue > 1e-4


# ---------- sensitivity: replacing one teacher moves the clean scores by at most the stated amount ----------
@given(st.integers(1, 12), st.integers(1, 6), st.integers(2, 9), st.data())
@settings(max_examples=60, deadline=None)
def test_sensitivity_of_one_teacher(M, B, C, data):
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31)))
    k = data.draw(st.integers(1, C))
    tl = torch.randn(M, B, C, generator=g) * data.draw(st.sampled_from([0.1, 1.0, 30.0]))
    sp = torch.randn(B, C, generator=g).softmax(-1)
    tl2 = tl.clone(); tl2[data.draw(st.integers(0, M - 1))] = torch.randn(B, C, generator=g) * 10
    for mech in (GaussianLabels(1.0, k), GaussianData(1.0, k)):
        d = (explain(mech, tl, sp, torch.Generator()).clean - explain(mech, tl2, sp, torch.Generator()).clean).norm(dim=-1)
        assert (d <= mech.sensitivity + 1e-6).all()


# ---------- properties ----------
@given(st.floats(0.5, 500.0), st.floats(0.5, 3.0), st.integers(1, 10**6), st.floats(1e-10, 1e-2))
@settings(max_examples=150, deadline=None)
def test_epsilon_monotone(sigma, sens, q, delta):
    e = epsilon_gaussian(sigma, sens, q, delta)
    assert epsilon_gaussian(sigma, sens, q + 1 + q // 3, delta) >= e
    assert epsilon_gaussian(sigma * 1.3, sens, q, delta) <= e
    assert epsilon_gaussian(sigma, sens, q, delta / 10) >= e

@given(st.floats(0.01, 10.0), st.integers(2, 50), st.integers(1, 10**5))
@settings(max_examples=100, deadline=None)
def test_epsilon_rr_monotone(eps0, k, q):
    e = epsilon_rr(eps0, k, q, 1e-5)
    assert epsilon_rr(eps0, k, q + 1, 1e-5) >= e and epsilon_rr(eps0 * 1.2, k, q, 1e-5) >= e and e <= q * eps0

@given(st.integers(1, 6), st.integers(1, 20), st.integers(1, 12), st.data())
@settings(max_examples=60, deadline=None)
def test_answers_shapes_and_candidates(M, B, C, data):
    k = data.draw(st.integers(1, C))
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31)))
    tl, sp = torch.randn(M, B, C, generator=g), torch.randn(B, C, generator=g).softmax(-1)
    for mech in (GaussianLabels(data.draw(st.floats(0, 50)), k), RandomizedResponse(data.draw(st.floats(0.01, 20)), k),
                 GaussianData(data.draw(st.floats(0, 50)), k)):
        a = mech.answer(tl, sp, g)
        assert a.labels.shape == (B,) and a.labels.dtype == torch.long and a.soft.shape == (B, C)
        assert a.candidates.shape == (B, k) and a.noisy.shape == (B, k)
        torch.testing.assert_close(a.candidates, top_k(sp, k))
        assert (a.labels.unsqueeze(1) == a.candidates).any(1).all()  # within the candidates
        assert (a.soft >= 0).all() and torch.allclose(a.soft.sum(1), torch.ones(B))
        outside = torch.ones(B, C, dtype=torch.bool).scatter(1, a.candidates, False)
        assert (a.soft[outside] == 0).all()
        assert sum(e.count for e in a.events) == B

def test_seed_reproduces_every_draw():
    tl, sp = torch.randn(5, 50, 10), torch.randn(50, 10).softmax(-1)
    for mech in (GaussianLabels(2.0, 3), RandomizedResponse(1.0, 3), GaussianData(1.0, 3)):
        a, b = (mech.answer(tl, sp, torch.Generator().manual_seed(3)) for _ in range(2))
        c = mech.answer(tl, sp, torch.Generator().manual_seed(4))
        assert torch.equal(a.noisy, b.noisy) and torch.equal(a.labels, b.labels) and not torch.equal(a.noisy, c.noisy)

def test_nothing_of_the_teachers_leaves_but_dp_answers():
    tl = torch.randn(4, 16, 10, requires_grad=True)
    sp = torch.randn(16, 10).softmax(-1)
    for mech in (GaussianLabels(2.0, 3), RandomizedResponse(1.0, 3), GaussianData(1.0, 3)):
        a = mech.answer(tl, sp, torch.Generator().manual_seed(0))
        assert set(vars(a)) == {'labels', 'soft', 'candidates', 'noisy', 'events'}
        assert not any(t.requires_grad for t in (a.labels, a.soft, a.noisy))  # no gradient path back to the teachers
        assert all(isinstance(e, (GaussianEvent, RREvent)) for e in a.events)

@given(st.lists(st.lists(st.floats(-5, 5), min_size=4, max_size=4), min_size=1, max_size=30))
@settings(max_examples=100, deadline=None)
def test_project_simplex_is_the_projection(rows):
    v = torch.tensor(rows, dtype=torch.float64)
    w = project_simplex(v)
    assert (w >= 0).all() and torch.allclose(w.sum(-1), torch.ones(len(v), dtype=torch.float64))
    # optimality: <v - w, y - w> <= 0 for every vertex y of the simplex
    assert ((v - w).unsqueeze(1) * (torch.eye(4, dtype=v.dtype) - w.unsqueeze(1))).sum(-1).max() <= 1e-9

@given(st.lists(st.tuples(st.sampled_from(['g', 'r']), st.floats(0.1, 100.0), st.integers(0, 500)), min_size=1, max_size=8))
@settings(max_examples=50, deadline=None)
def test_accountant_composes_and_restores(charges):
    acc = Accountant(delta=1e-6)
    events = [GaussianEvent(x, 2.0, n) if kind == 'g' else RREvent(x / 20, 3, n) for kind, x, n in charges]
    for e in events: acc.charge(e)
    rho = sum(rdp(e) for e in events)
    pure = sum(e.count * e.eps0 if isinstance(e, RREvent) else (math.inf if e.count else 0.) for e in events)
    expected = 0. if not (rho > 0).any() else min(eps_from_rdp(rho, 1e-6)[0], pure)
    assert acc.epsilon() == pytest.approx(expected, rel=1e-12)
    assert [h[1] for h in acc.history] == list(np.cumsum([e.count for e in events]))
    restored = Accountant().load_state_dict(json.loads(json.dumps(acc.state_dict())))
    assert restored.epsilon(1e-8) == acc.epsilon(1e-8) and restored.state_dict() == acc.state_dict()


# ---------- bad input: clear errors naming the value ----------
@pytest.mark.parametrize('call,message', [
    (lambda: epsilon_gaussian(0.0, 1.0, 10, 1e-5), 'sigma=0.0'),
    (lambda: epsilon_gaussian(-2.0, 1.0, 10, 1e-5), 'sigma=-2.0'),
    (lambda: calibrate_gaussian(1.0, 1e-5, 10, 0.0), 'sensitivity=0.0'),
    (lambda: epsilon_gaussian(1.0, 1.0, 10, 0.0), 'delta=0.0: must be a number in (0, 1)'),
    (lambda: epsilon_rr(1.0, 3, 10, 1.5), 'delta=1.5'),
    (lambda: calibrate_gaussian(0.0, 1e-5, 10, 1.0), 'target_epsilon=0.0'),
    (lambda: calibrate_rr(-1.0, 1e-5, 10, 3), 'target_epsilon=-1.0'),
    (lambda: calibrate_gaussian(0.1, 1e-12, 10, 1.0), 'target_epsilon=0.1 cannot be met at delta=1e-12'),
    (lambda: calibrate_rr(1.0, 1e-5, 10, 1), 'k=1'),
    (lambda: calibrate_gaussian(1.0, 1e-5, 0, 1.0), 'queries=0'),
    (lambda: GaussianLabels(-1.0, 3), 'sigma=-1.0'),
    (lambda: GaussianLabels(float('nan'), 3), 'sigma=nan'),
    (lambda: RandomizedResponse(0.0, 3), 'eps0=0.0'),
    (lambda: RandomizedResponse(math.inf, 3), 'eps0=inf'),
    (lambda: GaussianData(1.0, 3, gamma=0.0), 'gamma=0.0'),
    (lambda: GaussianData(1.0, 0), 'k=0'),
    (lambda: top_k(torch.rand(2, 5), 6), 'k=6: the number of candidates must be an integer in 1..5'),
    (lambda: GaussianLabels(1.0, 6).answer(torch.rand(2, 3, 5), torch.rand(3, 5), torch.Generator()), 'k=6'),
    (lambda: privacy_unit(0), 'M=0'),
    (lambda: Accountant(delta=2.0), 'delta=2.0'),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError) as e: call()
    assert message in str(e.value), str(e.value)

def test_non_private_mode_is_infinite_epsilon():
    acc = Accountant()
    acc.charge(GaussianLabels(0.0, 3).events(10))
    assert acc.epsilon() == math.inf and acc.epsilon(1e-2) == math.inf
    assert 'replace-one' in privacy_unit(1) and 'disjoint' in privacy_unit(5)

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_runs_on_the_data_device():
    tl, sp = torch.randn(3, 8, 10, device='cuda'), torch.randn(8, 10, device='cuda').softmax(-1)
    a = GaussianData(1.0, 3).answer(tl, sp, torch.Generator(device='cuda').manual_seed(0))
    assert a.soft.device.type == 'cuda'
    with pytest.raises(ValueError, match='generator is on cpu'): GaussianData(1.0, 3).answer(tl, sp, torch.Generator())


# ---------- DP-SGD under replace-one: the numerical RDP of the Poisson-subsampled Gaussian ----------
from dpsd_nb.accountant import calibrate_dpsgd, epsilon_dpsgd, rdp_sampled_gaussian

@pytest.mark.parametrize('q, z', [(1 / 469, 0.96), (1 / 469, 0.45), (1 / 12, 1.12), (1 / 12, 6.6), (0.3, 2.0)])
def test_sampled_gaussian_replace_one_above_add_remove(q, z):
    "Replace-one is at least as strong a relation as add/remove: our RDP is at or above Opacus's at every order."
    from opacus.accountants.analysis.rdp import compute_rdp
    theirs = compute_rdp(q=q, noise_multiplier=z, steps=1, orders=list(DEFAULT_ORDERS))
    assert (rdp_sampled_gaussian(q, z) >= np.asarray(theirs) * (1 - 1e-9)).all()

@pytest.mark.parametrize('q, z, steps', [(1 / 469, 0.96, 2345), (1 / 469, 0.45, 2345), (1 / 12, 6.56, 360), (1 / 12, 1.12, 360)])
def test_sampled_gaussian_replace_one_against_dp_accounting(q, z, steps):
    "dp-accounting's PLD accountant under REPLACE_ONE is tight: our RDP bound lies above it, and not far."
    import dp_accounting as dpa
    from dp_accounting.pld import pld_privacy_accountant
    acc = pld_privacy_accountant.PLDAccountant(dpa.NeighboringRelation.REPLACE_ONE)
    acc.compose(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(z)), steps)
    tight, ours = acc.get_epsilon(1e-5), epsilon_dpsgd(q, z, steps, 1e-5, 'rdp')
    assert tight <= ours <= 1.45 * tight, (tight, ours)
    assert epsilon_dpsgd(q, z, steps, 1e-5) == pytest.approx(tight, rel=2e-3)  # the default is that PLD (a finer grid)

def renyi_2d(q, z, a, b, alpha, n=1201, half=None):
    "D_alpha between (1-q)N(0, z^2 I) + qN(a, .) and (1-q)N(0, .) + qN(b, .) in the plane, on a grid."
    half = half or (2 * alpha + 2 + 12 * z)
    t = np.linspace(-half, half, n)
    X, Y = np.meshgrid(t, t)
    lphi = lambda m: -((X - m[0])**2 + (Y - m[1])**2) / (2 * z**2) - np.log(2 * np.pi * z**2)
    mix = lambda m: np.logaddexp(np.log1p(-q) + lphi((0, 0)), np.log(q) + lphi(m))
    e = alpha * mix(a) + (1 - alpha) * mix(b)
    return (e.max() + np.log(np.exp(e - e.max()).sum() * (t[1] - t[0])**2)) / (alpha - 1)

def test_sampled_gaussian_worst_pair_is_antipodal():
    "Any two clipped gradients a, b (|a|, |b| <= 1) give a Renyi divergence at most the antipodal pair's, which we account."
    g = np.random.default_rng(SEED)
    q, z, orders = 0.2, 1.5, [2., 4., 8.]
    ours = rdp_sampled_gaussian(q, z, orders)
    pairs = [((1, 0), (-1, 0)), ((1, 0), (0, 1)), ((1, 0), (0, 0)), ((0, 0), (1, 0))]
    pairs += [tuple(tuple(v / max(1, np.linalg.norm(v))) for v in g.normal(size=(2, 2))) for _ in range(4)]
    for a, b in pairs:
        for i, alpha in enumerate(orders):
            assert renyi_2d(q, z, a, b, alpha) <= ours[i] * (1 + 1e-4), (a, b, alpha)
    np.testing.assert_allclose(renyi_2d(q, z, (-1, 0), (1, 0), 4.), ours[1], rtol=1e-4)  # the grids agree where they should

def hockey_stick_2d(q, z, a, b, eps, n=1201, half=None):
    "H_{e^eps} of (1-q)N(0, z^2 I) + qN(a, .) against (1-q)N(0, .) + qN(b, .) in the plane, on a grid: delta(eps) of one step."
    half = half or (2 + 12 * z)
    t = np.linspace(-half, half, n)
    X, Y = np.meshgrid(t, t)
    phi = lambda m: np.exp(-((X - m[0])**2 + (Y - m[1])**2) / (2 * z**2)) / (2 * np.pi * z**2)
    mix = lambda m: (1 - q) * phi((0, 0)) + q * phi(m)
    return np.clip(mix(a) - math.exp(eps) * mix(b), 0, None).sum() * (t[1] - t[0])**2

def test_sampled_gaussian_worst_pair_is_antipodal_in_delta():
    "The PLD accounts the antipodal pair, so it must dominate every pair of clipped gradients in the hockey-stick divergence\n"
    "too (the RDP test above is another order of the same claim), checked at several epsilons, on a grid in the plane."
    g = np.random.default_rng(SEED)
    q, z = 0.2, 1.5
    pairs = [((1, 0), (0, 1)), ((1, 0), (0, 0)), ((0, 0), (1, 0)), ((0.6, 0), (-0.6, 0))]
    pairs += [tuple(tuple(v / max(1, np.linalg.norm(v))) for v in g.normal(size=(2, 2))) for _ in range(4)]
    for eps in (0.05, 0.3, 1.):
        worst = hockey_stick_2d(q, z, (-1, 0), (1, 0), eps)
        assert worst > 1e-4
        for a, b in pairs: assert hockey_stick_2d(q, z, a, b, eps) <= worst * (1 + 1e-6), (a, b, eps)
        assert worst > 1.5 * hockey_stick_2d(q, z, (1, 0), (0, 0), eps)  # had we accounted a one-sided pair, the check would fail

@pytest.mark.parametrize('accounting', ['pld', 'rdp'])
@pytest.mark.parametrize('target, q, steps', [(1., 1 / 469, 2345), (10., 1 / 469, 2345), (1., 1 / 12, 360), (3., 0.05, 100)])
def test_dpsgd_calibration_round_trip(target, q, steps, accounting):
    z = calibrate_dpsgd(target, 1e-5, q, steps, accounting)
    assert epsilon_dpsgd(q, z, steps, 1e-5, accounting) <= target < epsilon_dpsgd(q, z * (1 - 2e-4), steps, 1e-5, accounting)

def dpsgd_delta_monte_carlo(q, z, steps, epsilon, n=400_000, seed=SEED):
    "The true delta at `epsilon` of `steps` steps of the accounted pair (the differing record's clipped gradient -1 against +1,\n"
    "in units of C), by simulation rather than by any accountant: Poisson sampling of the record, the Gaussian noise, and the\n"
    "optimal attack (the exact log-likelihood ratio of the whole transcript). Returns (delta, its s.e.). That Opacus adds\n"
    "this noise at this rate is checked in test_audit.py (test_opacus_adds_the_noise_we_account_for)."
    g = np.random.default_rng(seed)
    y = -g.binomial(1, q, size=(n, steps)) + z * g.standard_normal((n, steps))  # the others' gradients cancel out
    lphi = lambda m: -(y - m)**2 / (2 * z**2)
    loss = (np.logaddexp(np.log1p(-q) + lphi(0.), np.log(q) + lphi(-1.)) - np.logaddexp(np.log1p(-q) + lphi(0.), np.log(q) + lphi(1.))).sum(1)
    h = np.clip(1 - np.exp(epsilon - loss), 0, None)  # delta(eps) = E_P[(1 - e^(eps - L))_+]: exact for the pair, whatever the accountant
    return h.mean(), h.std() / math.sqrt(n)

def test_dpsgd_accountant_against_simulation():
    "At the epsilon the PLD (and RDP) claim for delta = 1e-2, the simulated pair has no larger delta (to 5 s.e., about 5%\n"
    "of delta); an accountant of the wrong relation (dp-accounting's add/remove-one, half the sensitivity) is caught at once."
    import dp_accounting as dpa  # a dependency of the package: no skip
    from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
    q, z, steps, delta = 0.2, 1.5, 20, 1e-2
    for accounting in ('pld', 'rdp'):
        eps = epsilon_dpsgd(q, z, steps, delta, accounting)
        d, se = dpsgd_delta_monte_carlo(q, z, steps, eps)
        assert d <= delta + 5 * se, (accounting, eps, d, se)
    d_tight, se = dpsgd_delta_monte_carlo(q, z, steps, epsilon_dpsgd(q, z, steps, delta))
    assert d_tight >= 0.8 * delta, (d_tight, se)  # and the PLD is tight: the audit would see a looser claim's slack too
    broken = PLDAccountant(dpa.NeighboringRelation.ADD_OR_REMOVE_ONE)
    broken.compose(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(z)), steps)
    d, se = dpsgd_delta_monte_carlo(q, z, steps, broken.get_epsilon(delta))
    assert d > delta + 5 * se and d > 2 * delta, (d, se)
