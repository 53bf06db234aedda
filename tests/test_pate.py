"""PATE's data-dependent accounting (dpsd_nb.pate) against values computed independently of it:

- the noise is the discrete Gaussian N_Z(0, sigma^2): closed forms (the two-class bound is the normal tail at the gap minus
  one; GNSS's RDP), exact sums of its pmf (the derivation's tail bounds for every gap up to 15 sigma, Pr[GNMax != top
  class], matched by draws, and Confident-GNMax's answer rate), exact Renyi divergences of the binary outputs (two-class
  GNMax, the threshold check) that the data-dependent bound must dominate;
- the reference's published test values (tensorflow/privacy research/pate_2018 smooth_sensitivity_test.py), for continuous
  noise, with the continuous q~ put back into the package's walks (monkeypatched);
- brute force over every histogram of 12 teachers in 3 classes: the smooth sensitivity bounds
  e^(-beta d) times the exact local sensitivity of every histogram d teachers away (where conditions
  C5/C6 hold, and a counter-example where they fail);
- brute force over every tuple of one or two queries' histograms of 3-12 teachers (one changed teacher moves a vote in every
  query at once): the release's A(d) of the summed RDP bounds its true local sensitivity within distance d, and the smooth
  sensitivity is beta-smooth; the queries' A(d) summed as they are (the reference's construction) is not (ratios 1.2-2.1
  against e^beta = 1.08 with sigma1 1-5);
- audits: Confident-GNMax on neighbouring histograms (one teacher's vote moved), a million draws with
  fixed noise seeds, the event picked on one half and bounded (Clopper-Pearson) on the other: a lower
  bound on epsilon at delta below the claimed data-independent epsilon, above it with half the noise;
  and lower bounds on the Renyi divergence of order 2 against the claimed RDP, with the threshold at
  the max count (the check's own loss) and with a tie (GNMax's sensitivity sqrt 2), each above the
  claim of a broken variant (sigma1 halved, the check not charged, sigma2 / sqrt 2, sensitivity 1);
- an end-to-end audit: two teacher ensembles that differ in one teacher (the one whose part holds the changed record, so
  it may change its vote on every image), their votes on 8 public images (`public_votes`), the whole release of
  Confident-GNMax's (answered, label) on all of them: a lower bound on epsilon below the claimed data-independent epsilon,
  above the claim of one answer (the answers compose) and above the claim when the check runs without its noise;
- the same release exactly: its two output distributions in closed form (fitted to a million releases of
  `confident_gnmax`), its exact epsilon on the audit's pair (3.38, discrete noise) and on the worst pair of that family, below the
  exact epsilon of the Gaussian noises composed and the claim; with half the noise (both sigmas, or either one) the
  exact epsilon exceeds the claim, which the draws' lower bound, at most 3.38 on its pair, could not show.
"""
import dataclasses
import functools
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, optimize, special, stats

from dpsd_nb.accountant import DEFAULT_ORDERS, eps_from_rdp, rdp_gaussian
from dpsd_nb.mechanisms import discrete_gaussian_pmf, noise_generator
import dpsd_nb.pate as pate
import dpsd_nb.pate_analysis as analysis
from dpsd_nb.pate import public_votes
from dpsd_nb.pate_analysis import (NOT_PRIVATE, PateEpsilon, confident_gnmax, log_pr_answered, log_q0, log_q_gnmax, ls_gnmax, ls_threshold,
                          pate_epsilon, rdp_gnmax, rdp_gnss, rdp_threshold, release_epsilon, smooth_conditions,
                          smooth_sensitivity)

torch.set_num_threads(1)
ORDERS = np.array(DEFAULT_ORDERS)
DELTA, ALPHA = 1e-5, 1e-3  # bounds hold with confidence 1 - ALPHA, one-sided
AUDIT_SEED = 1313  # reproducible noise: an audit is a test


def cp_upper(k, n): return 1. if k >= n else float(stats.beta.ppf(1 - ALPHA, k + 1, n - k))
def cp_lower(k, n): return 0. if k <= 0 else float(stats.beta.ppf(ALPHA, k, n - k + 1))


def renyi_bernoulli(log_p, log_1p, log_p2, log_1p2, order):
    "Exact D_order(Bern(p) || Bern(p2)) from the logs of p, 1 - p, p2, 1 - p2."
    return np.logaddexp(order * log_p + (1 - order) * log_p2, order * log_1p + (1 - order) * log_1p2) / (order - 1)


# ---------- exact probabilities of the discrete Gaussian (its pmf summed; independent of dpsd_nb.pate) ----------
def pmf_z(sigma, r):
    "Pr[Z = k], k = -r..r, Z ~ N_Z(0, sigma^2)."
    return discrete_gaussian_pmf(sigma, torch.arange(-r, r + 1)).numpy()

@functools.lru_cache(maxsize=None)
def _tail_z(sigma):
    r = int(60 * sigma) + 60
    with np.errstate(divide='ignore'): return r, np.log(pmf_z(sigma, r)[::-1].cumsum()[::-1])  # log Pr[Z >= k], k = -r..r

@functools.lru_cache(maxsize=None)
def _tail_diff(sigma):
    r = int(30 * sigma) + 30
    with np.errstate(divide='ignore'): return 2 * r, np.log(np.convolve(*[pmf_z(sigma, r)] * 2)[::-1].cumsum()[::-1])  # k = -2r..2r

def log_sf_z(m, sigma):
    "log Pr[Z >= m] for integers m, exact."
    r, tail = _tail_z(sigma)
    return tail[np.clip(np.asarray(m, dtype=int) + r, 0, 2 * r)]

def log_sf_diff(g, sigma):
    "log Pr[Z_1 - Z_0 >= g] for integers g, Z_0, Z_1 independent N_Z(0, sigma^2), exact."
    r, tail = _tail_diff(sigma)
    return tail[np.clip(np.asarray(g, dtype=int) + r, 0, 2 * r)]

def excess(sigma): return 2 * sum(math.exp(-(math.pi * sigma * k)**2) for k in range(1, 20))


# ---------- the bound q~ ----------
@pytest.mark.parametrize('sigma', [1., 3., 10., 40.])
def test_two_class_q_is_the_normal_tail_at_the_gap_minus_one(sigma):
    "Two classes: q~ = (1 + eps1) Pr[N(0, 2 sigma^2) >= gap - 1] (capped at 1/2), at or above the exact error Pr[Z_1 - Z_0 >= gap + 1] (ties to class 0)."
    gaps = np.arange(0, 250, 5.)
    votes = np.stack([125 + gaps / 2, 125 - gaps / 2], 1)
    got = log_q_gnmax(votes, sigma)
    np.testing.assert_allclose(got, np.minimum(math.log1p(excess(sigma)) + stats.norm.logsf(gaps - 1, scale=math.sqrt(2) * sigma), math.log(.5)), rtol=1e-10)
    exact = log_sf_diff(gaps + 1, sigma)
    ok = exact > -700  # where the exact tail is representable
    assert (exact[ok] <= got[ok] + 1e-12).all()

@pytest.mark.parametrize('sigma', [1., 1.3, 2., 3., 5., 10., 40.])
def test_discrete_tail_bounds(sigma):
    "The derivation's three bounds against exact sums of the pmf, every gap up to 15 sigma."
    k = np.arange(int(15 * sigma) + 1)
    assert 1 / pmf_z(sigma, 0)[0] >= sigma * math.sqrt(2 * math.pi) * (1 - 1e-12)  # S = 1 / Pr[Z = 0]
    assert (log_sf_z(k[1:], sigma) <= stats.norm.logsf(k[1:] - 1, scale=sigma) + 1e-12).all()  # one draw, m >= 1
    assert (log_sf_diff(k, sigma) <= math.log1p(excess(sigma)) + stats.norm.logsf(k - 1, scale=math.sqrt(2) * sigma) + 1e-12).all()  # g >= 0
    m = np.arange(-int(15 * sigma), int(15 * sigma) + 1)
    least = np.minimum(log_sf_z(m, sigma), log_sf_z(1 - m, sigma))  # min(p, 1 - p) of the check, answered iff Z >= m
    assert (least <= stats.norm.logcdf(-np.maximum(m - 1, -m) / sigma) + 1e-12).all()

def test_below_sigma_one_q_is_the_cap():
    assert log_q_gnmax([[9, 1], [5, 0]], .5).tolist() == [math.log(.5)] * 2

def exact_log_right(votes, sigma):
    "log Pr[GNMax with N_Z noise answers class 0] (class 0 the top, ties to the first index): sum_z p(z) prod_i Pr[Z_i <= n_0 - n_i + z]."
    r = int(40 * sigma) + 40
    z, p = np.arange(-r, r + 1), pmf_z(sigma, r)
    cdf = p.cumsum()  # Pr[Z <= k], k = -r..r
    F = lambda k: np.where(k < -r, 0., cdf[np.clip(k + r, 0, 2 * r)])
    return math.log(float((p * np.prod([F(votes[0] - n + z) for n in votes[1:]], 0)).sum()))

@pytest.mark.parametrize('votes', [[30, 20, 10], [50, 45, 30, 25, 0], [120, 100] + [3] * 10])
def test_q_bounds_the_exact_error_rate(votes):
    sigma = 10.
    wrong = -math.expm1(exact_log_right(votes, sigma))
    q = math.exp(log_q_gnmax(votes, sigma))
    assert wrong <= q <= 1.6 * wrong  # a bound, and not a vacuous one

def test_gnmax_draws_match_the_exact_error_rate():
    n, votes, sigma = 100_000, [30, 20, 10], 10.
    out = confident_gnmax(torch.tensor([votes], dtype=torch.float64).expand(n, -1), -math.inf, 1., sigma, noise_generator(noise_seed=5))
    wrong = int((out.labels != 0).sum())
    assert cp_lower(wrong, n) <= -math.expm1(exact_log_right(votes, sigma)) <= cp_upper(wrong, n)


# ---------- the data-dependent RDP against exact divergences ----------
def test_gnmax_bound_dominates_the_exact_two_class_divergence():
    "Two classes: the output is binary, Pr[label 1] = Pr[Z_1 - Z_0 >= gap + 1] (ties to class 0); a neighbour moves the gap by 2."
    sigma, M = 3., 100
    dep, ind = rdp_gnmax(np.stack([np.arange(50, 101.), 100 - np.arange(50, 101.)], 1), sigma), rdp_gaussian(sigma, math.sqrt(2))
    logp = lambda g: (float(log_sf_diff(-g, sigma)), float(log_sf_diff(g + 1, sigma)))  # (label 0, label 1); D symmetric
    gaps = 2 * np.arange(50, 101.) - M
    for i, g in enumerate(gaps):
        for g2 in (g - 2, g + 2):
            exact = renyi_bernoulli(*logp(g), *logp(g2), ORDERS)
            assert (exact <= dep[i] * (1 + 1e-9) + 1e-12).all(), (g, g2)
            assert (exact <= ind * (1 + 1e-9)).all()
    low = ORDERS <= 20  # above, Theorem 6 needs mu1 = sigma sqrt(log 1/q) + 1 >= order, which fails
    assert (dep[-1, low] < ind[low] / 10).all()  # a unanimous vote is much cheaper: the check is not vacuous
    assert dep[-1, 30] < dep[20, 30]


def exact_output_probs(votes, sigma):
    "Pr[GNMax answers i] for each class i, N_Z noise, ties to the first index: sum_z p(z) prod_j Pr[n_j + Z_j < (j < i) or <= (j > i) n_i + z]."
    r = int(40 * sigma) + 40
    z, p = np.arange(-r, r + 1), pmf_z(sigma, r)
    cdf = p.cumsum()
    F = lambda k: np.where(k < -r, 0., cdf[np.clip(k + r, 0, 2 * r)])
    return np.array([(p * np.prod([F(votes[i] - votes[j] + z - (j < i)) for j in range(len(votes)) if j != i], 0)).sum() for i in range(len(votes))])

def test_the_data_dependent_bound_is_one_sided():
    "It bounds D(M(D) || M(D')) at the actual D; the reverse D(M(D') || M(D)) can exceed it (exact 3-class output probabilities)."
    sigma = 2.
    p, q = exact_output_probs([29, 12, 0], sigma), exact_output_probs([28, 13, 0], sigma)
    assert p.sum() == pytest.approx(1, abs=1e-12) and q.sum() == pytest.approx(1, abs=1e-12)
    dep = float(rdp_gnmax([29, 12, 0], sigma, [2.])[0])
    assert np.log((p**2 / q).sum()) <= dep < np.log((q**2 / p).sum()), (np.log((p**2 / q).sum()), dep, np.log((q**2 / p).sum()))  # 1.8e-8 <= 1.18e-6 < 1.28e-6


@pytest.mark.parametrize('T', [10, 40, 70])
def test_threshold_bound_dominates_the_exact_divergence(T):
    "The check is binary, Pr[answered] = Pr[Z >= T - max] (N_Z noise); a neighbour moves the max by 1."
    sigma1, M = 4., 80
    tops = np.arange(M // 2, M + 1.)
    dep = rdp_threshold(np.stack([tops, M - tops], 1), T, sigma1)
    logp = lambda v: (float(log_sf_z(T - v, sigma1)), float(log_sf_z(v - T + 1, sigma1)))  # Pr[Z <= T - v - 1] = Pr[Z >= v - T + 1]
    for i, v in enumerate(tops):
        for v2 in (v - 1, v + 1):
            exact = renyi_bernoulli(*logp(v), *logp(v2), ORDERS)
            assert (exact <= dep[i] * (1 + 1e-9) + 1e-12).all(), (v, v2)
    assert (dep <= rdp_gaussian(sigma1, 1.) * (1 + 1e-12)).all()
    assert dep.min() < rdp_gaussian(sigma1, 1.)[0] / 10


def test_never_above_data_independent_and_monotone_in_the_margin():
    rng = np.random.default_rng(0)
    votes = np.stack([rng.multinomial(250, rng.dirichlet(np.ones(10) * a)) for a in np.geomspace(.01, 10, 300)])
    for sigma in (5., 40., 150.):
        assert (rdp_gnmax(votes, sigma) <= rdp_gaussian(sigma, math.sqrt(2)) * (1 + 1e-12)).all()
        margins = np.arange(0, 251, 2.)
        dep = rdp_gnmax(np.stack([125 + margins / 2, 125 - margins / 2] + [0 * margins] * 8, 1), sigma)
        assert (np.diff(dep, axis=0) <= 1e-15).all()


def test_q0_is_where_the_bounds_meet():
    "Below q0 the data-dependent bound is strictly better, at q0 (a crossing found by Brent's method) they are equal."
    for sigma, order in ((15., 2.5), (15., 32.), (1500., 250.)):
        lq0 = log_q0(sigma, order)
        ind = order / sigma**2
        above, at, below = (rdp_gnmax_from(lq, sigma, order) for lq in (lq0 + .01, lq0 - 1e-9, lq0 - 1))
        assert above == ind and below < at <= ind and at == pytest.approx(ind, rel=1e-6)

def rdp_gnmax_from(log_q, sigma, order):
    from dpsd_nb.pate_analysis import rdp_from_log_q
    return float(rdp_from_log_q(log_q, sigma, [order])[0])


# ---------- the reference's published values (continuous noise, put back) ----------
def continuous_log_q(votes, sigma):
    "The reference's q~ for continuous Gaussian noise (Prop. 7): the normal tail at every gap, capped at 1 - 1/m."
    v = np.asarray(votes, dtype=np.float64)
    others = np.ones(v.shape, dtype=bool)
    np.put_along_axis(others, v.argmax(-1)[..., None], False, -1)
    log_terms = np.where(others, special.log_ndtr(-(v.max(-1, keepdims=True) - v) / (math.sqrt(2) * sigma)), -np.inf)
    return np.minimum(special.logsumexp(log_terms, -1), math.log1p(-1 / v.shape[-1]))

@pytest.fixture
def continuous(monkeypatch):
    "The package's walks with the reference's continuous q~ put back: no shift of the gaps, no 1 + eps1, |max - T| for the check."
    monkeypatch.setattr(analysis, 'log_q_gnmax', continuous_log_q)
    monkeypatch.setattr(analysis, '_log_excess', lambda sigma: 0.)
    monkeypatch.setattr(analysis, '_log_q_check', lambda top, T, sigma1: special.log_ndtr(-np.abs(np.round(top) - T) / sigma1))

def test_reference_local_sensitivity_gnmax(continuous):
    np.testing.assert_allclose(ls_gnmax([10, 0, 0], .5, 1.5)[0], [3.13503646e-17, 1.60178280e-08, 5.90681786e-03] + [5.99981308] * 7, rtol=1e-8)
    np.testing.assert_allclose(ls_gnmax([1000, 500, 300, 200, 0], 250., 10.)[0],
                               [0.] * 298 + [2.77693450548e-7, 2.10853979548e-6] + [2.73113623988e-6] * 1700, rtol=1e-8)


def test_reference_local_sensitivity_threshold(continuous):
    votes = [20, 10, 0]
    a1 = [0] * 3 + [1.48454129e-04, 1.47826870e-02, 3.94153241e-02, 6.45775697e-02, 9.01543247e-02, 1.16054002e-01, 1.42180452e-01,
                    1.42180452e-01, 1.48454129e-04, 1.47826870e-02, 3.94153241e-02, 6.45775697e-02, 9.01543266e-02, 1.16054000e-01,
                    1.42180452e-01, 1.68302106e-01, 1.93127860e-01] + [0] * 10
    a3 = [1.35750725752e-19, 1.88990500499e-17, 2.05403154065e-15, 1.74298153642e-13, 1.15489723995e-11, 5.97584949325e-10,
          2.41486826748e-08, 7.62150641922e-07, 1.87846248741e-05, 0.000360973025976, 0.000360973025976, 2.76377015215e-50,
          1.00904975276e-53, 2.87254164748e-57, 6.37583360761e-61, 1.10331620211e-64, 1.48844393335e-68, 1.56535552444e-72,
          1.28328011060e-76, 8.20047697109e-81] + [0] * 10
    np.testing.assert_allclose(ls_threshold(votes, 16, 2., 10.)[0], a1, rtol=3e-8)  # the published digits differ by 2e-8 between equal entries
    np.testing.assert_allclose(ls_threshold(votes, 50, 2., 10.)[0], a3, rtol=1e-8)


def test_discrete_walks_are_the_continuous_ones_shifted():
    "Discrete noise: q~ is the continuous one at every gap minus one (eps1 = 0 at sigma 250); above an integer T the check is unchanged."
    np.testing.assert_allclose(log_q_gnmax([1000, 500, 300, 200, 0], 250.), continuous_log_q([1000, 501, 301, 201, 1], 250.), rtol=1e-12)
    np.testing.assert_allclose(ls_threshold([20, 10, 0], 2, 2., 10.)[0][:12], [1.60212079e-01, 2.07021132e-01, 2.07021132e-01, 1.93127860e-01,
                               1.68302106e-01, 1.42180452e-01, 1.16054002e-01, 9.01543247e-02, 6.45775697e-02, 3.94153241e-02,
                               1.47826870e-02, 1.48454129e-04], rtol=3e-8)  # the reference's, T = 2: every max count at or above T


def test_reference_conditions():
    assert smooth_conditions(20., 10, 25.) == (True, False)
    assert smooth_conditions(30., 10, 25.) == (True, True)


def test_conditions_reach_the_far_tail(monkeypatch):
    "Real histograms reach log q~ ~ -3878 (250 unanimous votes at sigma 2): C5/C6 are checked far below it, where b_l, b_u are finite."
    lq = float(log_q_gnmax([250] + [0] * 9, 2.))
    assert lq < -3870
    b_l, b_u = (float(analysis._log_b(lq, 2., 10, sign)) for sign in (1, -1))
    assert -math.inf < b_l < lq < b_u < 0  # exp(log q~) underflowed to 0 here, and both were -inf
    seen, rdp = [], analysis.rdp_from_log_q
    monkeypatch.setattr(analysis, 'rdp_from_log_q', lambda lq, *a, **k: seen.append(np.min(lq)) or rdp(lq, *a, **k))
    assert smooth_conditions(40., 10, 20.) == (True, True)
    assert min(seen) <= -1e6  # the grid stopped at 100 log q0, about -300


# ---------- the number of teachers ----------
SHORT_ROW = np.array([[3., 0, 0], [40, 0, 0]])  # row 0 holds 3 votes of 40 teachers (abstentions, top-k counts)

@pytest.mark.parametrize('f', [lambda v, **k: ls_gnmax(v, 2., 2., **k), lambda v, **k: ls_threshold(v, 30, 2., 2., **k),
                               lambda v, **k: release_epsilon(v, [True] * len(v), 30, 2., 2., DELTA, order=2., sigma_ss=10., **k)],
                         ids=['ls_gnmax', 'ls_threshold', 'release_epsilon'])
def test_rows_must_hold_every_teachers_vote(f):
    "M was read from row 0: the output held 3 distances and row 1's smooth sensitivity fell ~1e28-fold, so did the release's noise."
    with pytest.raises(ValueError, match=r'rows \[0\] \(of 1\) hold \[3.0\] votes, not M=40'): f(SHORT_ROW)
    with pytest.raises(ValueError, match=r'rows \[0\] \(of 1\) hold \[40.0\] votes, not M=41'): f(SHORT_ROW[1:], num_teachers=41)
    with pytest.raises(ValueError, match=r'rows \[0\]'): f(np.array([[41., -1, 0]]))
    with pytest.raises(ValueError, match=r'rows \[0\]'): f(np.array([[39.5, .5, 0]]))

def test_rows_of_all_teachers_are_walked_over_all_distances():
    votes = np.array([[40., 0, 0], [30, 10, 0]])
    for f in (lambda v, **k: ls_gnmax(v, 2., 2., **k), lambda v, **k: ls_threshold(v, 30, 2., 2., **k)):
        got = f(votes)
        assert got.shape == (2, 40)
        np.testing.assert_array_equal(got[0], f(votes[:1])[0])  # each row as if alone
        np.testing.assert_array_equal(got, f(votes, num_teachers=40))


# ---------- the smooth sensitivity, by brute force ----------
HISTOGRAMS = np.array([h for h in itertools.product(range(13), repeat=3) if sum(h) == 12], dtype=float)  # 12 teachers, 3 classes
DISTANCE = np.maximum(HISTOGRAMS[:, None] - HISTOGRAMS[None], 0).sum(-1)  # teachers that must change their vote

def exact_local_sensitivity(f):
    "max |f(D') - f(D)| over the neighbours D' of each histogram D."
    return np.array([np.abs(f[DISTANCE[i] == 1] - f[i]).max() for i in range(len(f))])

def ss_shortfall(ls_exact, ls_bound, beta):
    "How far the smooth sensitivity falls short of max over D' of e^(-beta d(D, D')) LS(D') (<= 0: it covers it)."
    return ((np.exp(-beta * DISTANCE) * ls_exact[None]).max(1) - smooth_sensitivity(ls_bound, beta)).max()

@pytest.mark.parametrize('sigma,order', [(1., 2.), (1.5, 2.), (3., 2.), (1., 1.5)])
def test_smooth_sensitivity_gnmax_covers_brute_force(sigma, order):
    assert smooth_conditions(sigma, 3, order) == (True, True)
    ls = exact_local_sensitivity(rdp_gnmax(HISTOGRAMS, sigma, [order])[:, 0])
    assert ls.max() > .05  # the data-dependent bound does move: not vacuous
    bound = ls_gnmax(HISTOGRAMS, sigma, order)
    assert (ls <= bound[:, 0] * (1 + 1e-9)).all()
    for beta in (.05, .3, 1.): assert ss_shortfall(ls, bound, beta) <= 1e-12, beta

def test_smooth_sensitivity_gnmax_fails_where_the_conditions_fail():
    "sigma 1, order 4, 3 classes: C6 fails, and indeed the smooth sensitivity misses a histogram; `release_epsilon` refuses it."
    assert smooth_conditions(1., 3, 4.) == (True, False)
    ls = exact_local_sensitivity(rdp_gnmax(HISTOGRAMS, 1., [4.])[:, 0])
    assert ss_shortfall(ls, ls_gnmax(HISTOGRAMS, 1., 4.), .05) > .1
    with pytest.raises(ValueError, match='conditions C5/C6 fail'):
        release_epsilon(HISTOGRAMS, np.ones(len(HISTOGRAMS), bool), None, None, 1., DELTA, order=4., sigma_ss=10., beta=.05)

@pytest.mark.parametrize('T', [3, 8, 11])
def test_smooth_sensitivity_threshold_covers_brute_force(T):
    ls = exact_local_sensitivity(rdp_threshold(HISTOGRAMS, T, 1., [3.])[:, 0])
    bound = ls_threshold(HISTOGRAMS, T, 1., 3.)
    assert ls.max() > .05
    for beta in (.05, .3, 1.): assert ss_shortfall(ls, bound, beta) <= 1e-12, beta


# ---------- the smooth sensitivity of the whole sum over queries, by brute force ----------
# A record changes one teacher, which may change its vote on every query at once. A data set is here the tuple of the
# queries' histograms; its neighbours are every tuple reached by moving at most one vote in each query (any teacher can
# hold any pair of votes whose classes have a vote). The release needs A(d) of the sum to bound the local sensitivity
# within distance d, and its smooth sensitivity to change by at most e^beta between neighbours.

def query_tuples(M, C, K):
    "Every K-tuple of histograms of M teachers in C classes (n, K, C), which are neighbours, and their distance (changed teachers)."
    H = np.array([h for h in itertools.product(range(M + 1), repeat=C) if sum(h) == M], dtype=float)
    one = np.maximum(H[:, None] - H[None], 0).sum(-1) <= 1
    idx = np.array(list(itertools.product(range(len(H)), repeat=K)))
    adj = np.logical_and.reduce([one[idx[:, k]][:, idx[:, k]] for k in range(K)])
    dist, reach = np.where(np.eye(len(idx), dtype=bool), 0, M + 1), np.eye(len(idx), dtype=bool)
    for d in range(1, M + 1):  # breadth-first, all sources at once
        reach = reach.astype(np.int64) @ adj.astype(np.int64) > 0
        dist[(dist > M) & reach] = d
    return H[idx], adj, dist

SUM_ORDER, SUM_BETA, SUM_SIGMA2 = 2., .08, 1.

def summed_at_d(V, answered, T, sigma1):
    "The construction before the fix (and the reference's): each query's A(d) at distance exactly d, summed as it is."
    M = int(V[0, 0].sum())
    return (sum(ls_threshold(V[:, k], T, sigma1, SUM_ORDER, M) for k in range(V.shape[1]))
            + sum(ls_gnmax(V[:, k], SUM_SIGMA2, SUM_ORDER, M) for k in np.flatnonzero(answered)))

def package_total(V, answered, T, sigma1):
    "The package's A(d) of the sum, one tuple at a time."
    M = int(V[0, 0].sum())
    return np.stack([analysis._ls_total(v, np.asarray(answered), T, sigma1, SUM_SIGMA2, SUM_ORDER, M) for v in V])

def sum_brute_force(M, C, K, T, sigma1, answered, total):
    """How far A(d) falls short of the true local sensitivity within d, how far the smooth sensitivity falls short of the true
    one (both <= 0 when covered, relative to the bound), and the worst S(x) / S(x') over neighbours."""
    V, adj, dist = query_tuples(M, C, K)
    f = (sum(rdp_threshold(V[:, k], T, sigma1, [SUM_ORDER])[:, 0] for k in range(K))
         + sum(rdp_gnmax(V[:, k], SUM_SIGMA2, [SUM_ORDER])[:, 0] for k in np.flatnonzero(answered)))
    ls = np.array([np.abs(f[adj[i]] - f[i]).max() for i in range(len(f))])
    A = total(V, answered, T, sigma1)
    within = np.stack([np.where(dist <= d, ls[None], 0.).max(1) for d in range(A.shape[1])], 1)
    ss = smooth_sensitivity(A, SUM_BETA)
    true_ss = (np.exp(-SUM_BETA * dist) * ls[None]).max(1)
    worst = max(float(ss[i] / ss[adj[i]].min()) if ss[adj[i]].min() > 0 else (math.inf if ss[i] > 0 else 1.) for i in range(len(f)))
    return float((within - A * (1 + 1e-9)).max()), float((true_ss - ss * (1 + 1e-9)).max()), worst

SUM_CASES = {  # M, C, K, T, sigma1, answered
    'two checks, sigma1 2': (6, 2, 2, 2, 2., (False, False)),
    'two checks, sigma1 1': (4, 2, 2, 3, 1., (False, False)),
    'two checks, one answered': (3, 3, 2, 3, 1., (True, False)),
    'two answered, sigma1 5': (3, 3, 2, 3, 5., (True, True)),
    'one query, its check and GNMax': (3, 3, 1, 3, 5., (True,)),
    '12 teachers, one query': (12, 3, 1, 7, 5., (True,)),
}

def assert_covers_and_smooth(case):
    shortfall, ss_shortfall, worst = sum_brute_force(*case, package_total)
    assert shortfall <= 1e-12, (case, shortfall)  # (a) A(d) bounds the local sensitivity of the sum anywhere within d teachers
    assert ss_shortfall <= 1e-12, (case, ss_shortfall)  # so S bounds the true smooth sensitivity
    assert worst <= math.exp(SUM_BETA) * (1 + 1e-9), (case, worst)  # (b) beta-smooth: S(x) <= e^beta S(x') for neighbours

@pytest.mark.parametrize('case', SUM_CASES)
def test_summed_smooth_sensitivity_covers_and_is_smooth(case): assert_covers_and_smooth(SUM_CASES[case])

def test_summed_smooth_sensitivity_on_every_small_setting():
    "Two queries of 4 teachers in 2 classes: every threshold, every answered pattern, sigma1 1, 2, 5 (and 3 classes at sigma1 1)."
    for C, sigma1 in ((2, 1.), (2, 2.), (2, 5.), (3, 1.)):
        for T in range(1, 5):
            for answered in itertools.product((False, True), repeat=2): assert_covers_and_smooth((4, C, 2, T, sigma1, answered))

@pytest.mark.parametrize('case', list(SUM_CASES)[:5])
def test_summed_at_distance_d_is_not_smooth(case):
    """The queries' A(d) summed as they are, at d = 0..M-1: S(x) / S(x') reaches 1.7-2.1 here (1.2-2.1 over 378 settings of 3-12
    teachers) against e^beta = 1.08, and can miss the true smooth sensitivity."""
    shortfall, ss_shortfall, worst = sum_brute_force(*SUM_CASES[case], summed_at_d)
    assert worst > 1.5 * math.exp(SUM_BETA), worst
    if case == 'two checks, sigma1 2': assert shortfall > .2 and ss_shortfall > .05, (shortfall, ss_shortfall)


def test_gnss_rdp_closed_form():
    beta, s = .02, 15.
    o = np.array([2., 10., 24.9, 25., 30.])
    got = rdp_gnss(beta, s, o)
    for a, r in zip(o[:3], got): assert r == pytest.approx(a * math.exp(2 * beta) / s**2 + (beta * a - .5 * math.log(1 - 2 * a * beta)) / (a - 1), rel=1e-12)
    assert np.isinf(got[3:]).all()  # defined only below 1 / (2 beta)


# ---------- Confident-GNMax and its report ----------
def test_confident_gnmax_answer_rate_and_labels():
    for seed, votes in enumerate(([60., 40, 0], [30, 30, 40])):
        out = confident_gnmax(torch.tensor([votes]).expand(100_000, -1), 55, 5., 8., noise_generator(noise_seed=seed))
        a, p = int(out.answered.sum()), float(np.exp(log_pr_answered([votes], 55, 5.))[0])
        assert cp_lower(a, 100_000) <= p <= cp_upper(a, 100_000)
        assert set(out.labels[~out.answered].tolist()) == {-1}
        wrong = int((out.labels[out.answered] != int(np.argmax(votes))).sum())
        assert cp_lower(wrong, a) <= math.exp(log_q_gnmax(votes, 8.))


def test_noise_is_secret_by_default():
    votes = torch.tensor([[5., 5.]] * 1000)
    a, b = confident_gnmax(votes, 5, 2., 2.), confident_gnmax(votes, 5, 2., 2.)
    assert not torch.equal(a.answered, b.answered)
    c, d = (confident_gnmax(votes, 5, 2., 2., noise_generator(noise_seed=7)) for _ in range(2))
    assert torch.equal(c.labels, d.labels)


def test_the_guarantee_does_not_depend_on_which_queries_were_answered():
    votes = np.array([[240, 10] + [0] * 8] * 50 + [[130, 120] + [0] * 8] * 50)
    some, every = np.arange(100) % 2 > 0, np.ones(100, dtype=bool)
    a, b = (pate_epsilon(votes, x, 150, 50., 40., DELTA) for x in (some, every))
    assert a.data_independent == b.data_independent  # fixed before the first query, whatever the private votes decide
    assert a.epsilon_answered < b.epsilon_answered == pytest.approx(b.data_independent, rel=1e-12)
    r1, r2 = (release_epsilon(votes, x, 150, 50., 40., DELTA, order=20., sigma_ss=15., generator=noise_generator(noise_seed=1)) for x in (some, every))
    assert r1.data_independent_total == r2.data_independent_total


def test_report_labels_what_is_not_private():
    votes = np.array([[240, 10] + [0] * 8] * 200 + [[130, 120] + [0] * 8] * 200)
    answered = np.arange(400) % 3 > 0
    pe = pate_epsilon(votes, answered, 150, 50., 40., DELTA)
    assert pe.not_private.privacy == NOT_PRIVATE
    assert pe.not_private.epsilon < pe.data_independent
    assert 'order=' in repr(pe.not_private) and 'order_data_dependent' not in repr(pe)  # the order is chosen by the votes too
    assert not [f.name for f in dataclasses.fields(PateEpsilon) if 'data_dependent' in f.name]  # nothing data-dependent outside not_private
    ind = 400 * rdp_gaussian(40., math.sqrt(2)) + 400 * rdp_gaussian(50., 1.)  # any query may be answered: fixed in advance
    assert pe.data_independent == pytest.approx(eps_from_rdp(ind, DELTA)[0], rel=1e-12)
    np.testing.assert_allclose(pe.rdp_data_independent, ind, rtol=1e-12)
    read = answered.sum() * rdp_gaussian(40., math.sqrt(2)) + 400 * rdp_gaussian(50., 1.)  # GNMax on the answered only: a reading
    assert pe.epsilon_answered == pytest.approx(eps_from_rdp(read, DELTA)[0], rel=1e-12) and pe.epsilon_answered < pe.data_independent
    rel = release_epsilon(votes, answered, 150, 50., 40., DELTA, order=20., sigma_ss=15., generator=noise_generator(noise_seed=1))
    assert 'NOT private' in rel.not_private['privacy'] and 'NOT private' in rel.privacy
    assert rel.data_independent_total > pe.data_independent  # the release costs something
    exact = rel.not_private['rdp_data_dependent']
    assert exact == pytest.approx(float(pe.not_private.rdp[list(DEFAULT_ORDERS).index(20)]), rel=1e-12)


@pytest.mark.parametrize('f', [log_q_gnmax, log_pr_answered, ls_gnmax, ls_threshold, smooth_sensitivity, rdp_gnmax, rdp_threshold, public_votes])
def test_functions_of_the_votes_say_so(f):
    assert 'NOT private' in f.__doc__


def test_worked_example_reference_conventions():
    "250 teachers, 1,000 answers, sigma 40, delta 1e-5, Mironov's conversion over the reference's orders: the issue's 6.00."
    orders = np.concatenate((np.arange(2, 100.5, .5), np.logspace(2, np.log10(500), 100)))
    mironov = lambda rdp: float((rdp + math.log(1 / DELTA) / (orders - 1)).min())
    assert round(mironov(1000 * orders / 40**2), 2) == 6.00
    low = rdp_gnmax([162.5, 87.5] + [0] * 8, 40., orders)  # margin 0.3 M
    assert round(mironov(1000 * low), 2) == 6.00


# ---------- the audit ----------
DRAWS = 1_000_000  # per histogram; half to pick the event, half to bound

def outcomes(votes, T, sigma1, sigma2, seed):
    "Counts of the released outcome (abstain, label 0, label 1) over DRAWS runs, for each half of the draws."
    out = confident_gnmax(torch.tensor([votes], dtype=torch.float64).expand(DRAWS, -1), T, sigma1, sigma2, noise_generator(noise_seed=seed))
    lab = out.labels.numpy() + 1
    return np.bincount(lab[:DRAWS // 2], minlength=3), np.bincount(lab[DRAWS // 2:], minlength=3)

def pick(candidates):
    "The hold-out value of the candidate best on the selection half: ties go to the first, never to the better hold-out value."
    return candidates[int(np.argmax([sel for sel, _ in candidates]))][1]

def test_pick_ignores_the_hold_out_on_ties():
    assert pick([(1., 0.), (1., 5.), (.5, 9.)]) == 0.  # max(candidates)[1], used before, gave 5.

def bound(k_d, k_d2):
    "Clopper-Pearson lower bound on epsilon from an event seen k_d times on D and k_d2 times on D' (of DRAWS / 2 each)."
    n = DRAWS // 2
    tpr, fpr = cp_lower(k_d, n), cp_upper(k_d2, n)
    return math.log((tpr - DELTA) / fpr) if tpr > DELTA else 0.

def audit(sigma1, sigma2, claim_sigma1, gaps=(4, 6, 8, 10, 12), M=100):
    """Lower bound on epsilon of one Confident-GNMax answer: for each gap, D has the top class `gap` votes ahead and D' moves one
    vote from the top to the runner-up (the max count and the gap both fall); the threshold sits 3 claimed sigma1 below the max.
    On the first half of the draws, pick the histogram, direction and event (a union of outcomes, by likelihood ratio);
    bound it on the second half."""
    candidates = []
    for g in gaps:
        D = [(M + g) // 2, (M - g) // 2]
        D2 = [D[0] - 1, D[1] + 1]
        T = D[0] - 3 * claim_sigma1
        (a1, a2), (b1, b2) = outcomes(D, T, sigma1, sigma2, AUDIT_SEED + g), outcomes(D2, T, sigma1, sigma2, AUDIT_SEED + 100 + g)
        for x1, x2, y1, y2 in ((a1, a2, b1, b2), (b1, b2, a1, a2)):
            by_ratio = np.argsort(-(x1 + .5) / (y1 + .5))
            for k in (1, 2):
                ev = by_ratio[:k]
                candidates.append((bound(int(x1[ev].sum()), int(y1[ev].sum())), bound(int(x2[ev].sum()), int(y2[ev].sum()))))
    return pick(candidates)

SIGMA2 = 2.
SIGMA1 = 2 * SIGMA2

def claimed():
    "The data-independent epsilon of one answered query (the threshold check and GNMax), at DELTA."
    return pate_epsilon(np.array([[52, 48]]), [True], 40, SIGMA1, SIGMA2, DELTA).data_independent

def test_audit_stays_below_the_claim():
    eps, claim = audit(SIGMA1, SIGMA2, SIGMA1), claimed()
    assert .4 * claim < eps <= claim, (eps, claim)  # tight enough to mean something, never above

def test_audit_exceeds_the_claim_at_half_the_sigma():
    eps, claim = audit(SIGMA1 / 2, SIGMA2 / 2, SIGMA1), claimed()
    assert eps > claim, (eps, claim)


# ---------- audits of the Renyi divergence: the check at its threshold, GNMax at a tie ----------
ORDER = 2.

def renyi_lower(k_p, k_q, order=ORDER):
    "Lower bound on D_order(Bern(p) || Bern(q)) from k_p and k_q hits of DRAWS / 2: it grows in p and falls in q where p > q."
    p, q = cp_lower(k_p, DRAWS // 2), cp_upper(k_q, DRAWS // 2)
    return float(renyi_bernoulli(math.log(p), math.log1p(-p), math.log(q), math.log1p(-q), order)) if p > q else 0.

def renyi_audit(D, D2, T, sigma1, sigma2, seed):
    "Lower bound on the order-2 Renyi divergence of Confident-GNMax's outcomes between D and D2, either way: event picked on one half."
    (a1, a2), (b1, b2) = outcomes(D, T, sigma1, sigma2, seed), outcomes(D2, T, sigma1, sigma2, seed + 1)
    candidates = []
    for x1, x2, y1, y2 in ((a1, a2, b1, b2), (b1, b2, a1, a2)):
        by_ratio = np.argsort(-(x1 + .5) / (y1 + .5), kind='stable')
        for k in (1, 2):
            ev = by_ratio[:k]
            candidates.append((renyi_lower(int(x1[ev].sum()), int(y1[ev].sum())), renyi_lower(int(x2[ev].sum()), int(y2[ev].sum()))))
    return pick(candidates)

def claimed_rdp(threshold, sigma1, sigma2):
    "The package's data-independent RDP at ORDER of one answered query (threshold None: GNMax alone, the check not charged)."
    pe = pate_epsilon(np.array([[60, 40]]), [True], threshold, sigma1, sigma2, DELTA)
    return float(pe.rdp_data_independent[list(DEFAULT_ORDERS).index(ORDER)])

CHECK = dict(D=[60, 40], D2=[59, 41], T=60, sigma2=8.)  # T at the max count: answered with probability 1/2; GNMax almost sure
CHECK_SIGMA1 = 2.

@pytest.fixture(scope='module')
def check_audit(): return renyi_audit(**CHECK, sigma1=CHECK_SIGMA1, seed=AUDIT_SEED + 500)

def test_threshold_audit_stays_below_the_claim(check_audit):
    claim = claimed_rdp(60, CHECK_SIGMA1, CHECK['sigma2'])
    assert .4 * claim < check_audit <= claim, (check_audit, claim)

def test_threshold_audit_catches_an_uncharged_check(check_audit):
    claim = claimed_rdp(None, None, CHECK['sigma2'])
    assert check_audit > claim, (check_audit, claim)

def test_threshold_audit_catches_half_sigma1():
    eps, claim = renyi_audit(**CHECK, sigma1=CHECK_SIGMA1 / 2, seed=AUDIT_SEED + 600), claimed_rdp(60, CHECK_SIGMA1, CHECK['sigma2'])
    assert eps > claim, (eps, claim)

TIE = dict(D=[50, 50], D2=[49, 51], T=-math.inf, sigma1=1.)  # always answered; one vote moves the gap by 2
TIE_SIGMA2 = 1.

@pytest.fixture(scope='module')
def tie_audit(): return renyi_audit(**TIE, sigma2=TIE_SIGMA2, seed=AUDIT_SEED + 700)

def test_gnmax_audit_stays_below_the_claim(tie_audit):
    claim = claimed_rdp(None, None, TIE_SIGMA2)
    assert .4 * claim < tie_audit <= claim, (tie_audit, claim)

def test_gnmax_audit_catches_sensitivity_one(tie_audit):
    assert tie_audit > float(rdp_gaussian(TIE_SIGMA2, 1., [ORDER])[0]), tie_audit  # the gap moves by 2: sensitivity sqrt 2, not 1

def test_gnmax_audit_catches_sigma2_over_sqrt2():
    eps, claim = renyi_audit(**TIE, sigma2=TIE_SIGMA2 / math.sqrt(2), seed=AUDIT_SEED + 800), claimed_rdp(None, None, TIE_SIGMA2)
    assert eps > claim, (eps, claim)


# ---------- the audit, end to end: teachers -> votes on public images -> every (answered, label) released ----------
class Voter(torch.nn.Module):
    "Teacher j: it gives public image i (whose first pixel holds i) the class votes[i]."
    def __init__(self, j, votes):
        super().__init__()
        self.register_buffer('who', torch.tensor(j)); self.register_buffer('votes', votes)  # `who`: teachers with equal votes stay distinct
    def forward(self, x): return F.one_hot(self.votes[x.flatten(1)[:, 0].long()], 2).float()

E2E = dict(T=6, sigma1=4., sigma2=4.)  # the check at D's max count: answered half the time, its own loss at its largest
E2E_IMAGES, E2E_TEACHERS, E2E_TOP = 8, 10, 6  # 8 public images, each voted 6-4 by 10 teachers

def neighbouring_votes():
    "Votes on the public images of two ensembles that differ in teacher 0 only: on D it votes class 0 on every image, on D' class 1."
    x = torch.arange(E2E_IMAGES, dtype=torch.float32).view(-1, 1, 1, 1)
    ensemble = lambda vote0: [Voter(j, torch.full((E2E_IMAGES,), vote0 if j == 0 else int(j >= E2E_TOP))) for j in range(E2E_TEACHERS)]
    return public_votes(ensemble(0), x), public_votes(ensemble(1), x)

def release_outcomes(votes, T, sigma1, sigma2, seed):
    """Counts over DRAWS releases of Confident-GNMax on every image, for each half, by (abstentions, answers 0): a function of
    the released (answered, label) vector, so a lower bound for it is one for the release."""
    K = len(votes)
    lab = confident_gnmax(votes.repeat(DRAWS, 1), T, sigma1, sigma2, noise_generator(noise_seed=seed)).labels.view(DRAWS, K)
    code = ((lab == -1).sum(1) * (K + 1) + (lab == 0).sum(1)).numpy()
    return np.bincount(code[:DRAWS // 2], minlength=(K + 1)**2), np.bincount(code[DRAWS // 2:], minlength=(K + 1)**2)

def audit_release(T, sigma1, sigma2, seed, events=12):
    "Lower bound on epsilon of the whole release between D and D': the event (a union of outcomes) picked on one half, bounded on the other."
    D, D2 = neighbouring_votes()
    (a1, a2), (b1, b2) = release_outcomes(D, T, sigma1, sigma2, seed), release_outcomes(D2, T, sigma1, sigma2, seed + 1)
    candidates = []
    for x1, x2, y1, y2 in ((a1, a2, b1, b2), (b1, b2, a1, a2)):
        by_ratio = np.argsort(-(x1 + .5) / (y1 + .5), kind='stable')
        for k in range(1, events):
            ev = by_ratio[:k]
            candidates.append((bound(int(x1[ev].sum()), int(y1[ev].sum())), bound(int(x2[ev].sum()), int(y2[ev].sum()))))
    return pick(candidates)

def claimed_release(images=E2E_IMAGES):
    "The data-independent epsilon the package reports for `images` queries, all answered: the most `pate_epsilon` (and `pate_student`) report."
    D, _ = neighbouring_votes()
    return pate_epsilon(D[:images], [True] * images, E2E['T'], E2E['sigma1'], E2E['sigma2'], DELTA).data_independent

@pytest.fixture(scope='module')
def release_audit(): return audit_release(**E2E, seed=AUDIT_SEED + 900)

def test_neighbouring_ensembles_move_one_vote_on_every_image():
    D, D2 = neighbouring_votes()
    assert D.tolist() == [[6, 4]] * E2E_IMAGES and D2.tolist() == [[5, 5]] * E2E_IMAGES

def test_release_audit_stays_below_the_claim(release_audit):
    claim = claimed_release()
    assert .3 * claim < release_audit <= claim, (release_audit, claim)

def test_release_audit_catches_a_claim_per_answer(release_audit):
    "One record changes teacher 0's vote on every image: charging one answer's epsilon (no composition) is broken."
    assert release_audit > claimed_release(1), (release_audit, claimed_release(1))

def test_release_audit_catches_a_noiseless_check():
    "The check run without its noise, while the claim counts sigma1: D (max 6 = T) is always answered, D' (max 5) never."
    eps, claim = audit_release(E2E['T'], 1e-9, E2E['sigma2'], seed=AUDIT_SEED + 1000), claimed_release()
    assert eps > claim, (eps, claim)


# ---------- the end-to-end release, exactly: its epsilon from the two output distributions ----------
# The audit above bounds epsilon from below with draws; its power cannot exceed the true epsilon of its pair (D, D'),
# 3.38, so a broken claim between that and the claim, 5.98, would pass it. Here the release's two distributions are
# computed exactly: one image's outcome (abstain, label 0, label 1) has exact probabilities (sums of the pmf; the check's noise and
# GNMax's are independent), the 8 images are independent, and the privacy loss depends only on the counts of each outcome.

def log_outcome_probs(votes, T, sigma1, sigma2):
    "Log Pr of one image's outcome (abstain, label 0, label 1) under Confident-GNMax with N_Z noise on two-class votes (ties to class 0)."
    n0, n1 = (int(n) for n in votes)
    m = math.ceil(T - max(n0, n1))  # answered iff Z >= m; not iff Z <= m - 1, i.e. -Z >= 1 - m
    answered, declined = float(log_sf_z(m, sigma1)), float(log_sf_z(1 - m, sigma1))
    zero, one = float(log_sf_diff(n1 - n0, sigma2)), float(log_sf_diff(n0 - n1 + 1, sigma2))  # label 0 iff Z_1 - Z_0 <= n0 - n1
    return np.array([declined, answered + zero, answered + one])

def release_cells(K=E2E_IMAGES):
    "Every (abstentions, answers 0, answers 1) of K images, with its code in `release_outcomes` and its log multinomial coefficient."
    counts = np.array([(a, z, K - a - z) for a in range(K + 1) for z in range(K + 1 - a)])
    return counts, counts[:, 0] * (K + 1) + counts[:, 1], special.gammaln(K + 1) - special.gammaln(counts + 1).sum(1)

def log_release_probs(votes, T, sigma1, sigma2, K=E2E_IMAGES):
    "Log Pr of each cell of `release_cells` when every one of the K images has these votes."
    counts, _, log_coef = release_cells(K)
    return log_coef + counts @ log_outcome_probs(votes, T, sigma1, sigma2)

def hockey_stick(log_p, log_q, eps):
    "delta(eps) = sum over outcomes of max(0, P - e^eps Q): exact, since the counts are a sufficient statistic of the privacy loss."
    return float(np.sum(np.exp(log_p) * -np.expm1(-np.maximum(log_p - log_q - eps, 0.))))

def exact_epsilon(log_p, log_q, delta=DELTA):
    "The smallest epsilon >= 0 at which P and Q are (epsilon, delta)-indistinguishable, both ways (delta(eps) falls in eps)."
    def one(lp, lq):
        f = lambda e: hockey_stick(lp, lq, e) - delta
        return 0. if f(0.) <= 0 else optimize.brentq(f, 0., float(np.max(lp - lq)), xtol=1e-12)
    return max(one(log_p, log_q), one(log_q, log_p))

def exact_release(D, D2, T, sigma1, sigma2):
    "Exact epsilon at DELTA of Confident-GNMax's whole release on E2E_IMAGES images with votes D on one data set and D2 on its neighbour."
    return exact_epsilon(log_release_probs(D, T, sigma1, sigma2), log_release_probs(D2, T, sigma1, sigma2))

def worst_exact(sigma1, sigma2, M=E2E_TEACHERS, thresholds=np.arange(-2, 12.01, .25)):
    "The largest exact epsilon over pairs of the audit's family: D votes (t, M - t) on every image, D' moves one teacher (t - 1, M - t + 1)."
    return max(exact_release([t, M - t], [t - 1, M - t + 1], T, sigma1, sigma2) for t in range(M // 2, M + 1) for T in thresholds)

def gdp_epsilon(mu, delta=DELTA):
    "Exact epsilon of mu-GDP (Dong, Roth & Su 2019): the composed Gaussian noises of which the release is a post-processing."
    return optimize.brentq(lambda e: stats.norm.cdf(-e / mu + mu / 2) - math.exp(e) * stats.norm.cdf(-e / mu - mu / 2) - delta, 0., 100.)

def assert_claim_covers(claim, exact):
    assert claim >= exact, f"the exact epsilon {exact:.4f} exceeds the claim {claim:.4f}: the claim is broken"

def chi2_pvalue(observed, log_probs, pool=5.):
    "Pearson's goodness of fit of counts to the exact cell probabilities, cells expected below `pool` times merged into one."
    expected = observed.sum() * np.exp(log_probs)
    small = expected < pool
    o, e = np.r_[observed[~small], observed[small].sum()], np.r_[expected[~small], expected[small].sum()]
    return float(stats.chi2.sf(((o - e)**2 / e).sum(), len(o) - 1))

def test_the_exact_cells_are_every_outcome():
    for votes in ([6, 4], [5, 5], [10, 0]):
        assert np.exp(log_outcome_probs(votes, E2E['T'], E2E['sigma1'], E2E['sigma2'])).sum() == pytest.approx(1, abs=1e-12)
        assert np.exp(log_release_probs(votes, **E2E)).sum() == pytest.approx(1, abs=1e-12)
    _, code, _ = release_cells()
    assert sorted(code) == sorted(set(code)) and code.max() < (E2E_IMAGES + 1)**2

@pytest.mark.parametrize('which', [0, 1])
def test_the_exact_distribution_is_what_confident_gnmax_releases(which):
    "A million releases of `confident_gnmax` on D and on D' fit the exact cell probabilities."
    votes = neighbouring_votes()[which]
    _, code, _ = release_cells()
    observed = sum(release_outcomes(votes, **E2E, seed=AUDIT_SEED + 1100 + which))[code]
    assert chi2_pvalue(observed, log_release_probs(votes[0].tolist(), **E2E)) > ALPHA

def test_the_exact_distribution_rejects_an_implementation_with_half_the_noise():
    "The same fit fails for releases drawn with both sigmas halved: the exact model is tied to the implementation."
    D, _ = neighbouring_votes()
    _, code, _ = release_cells()
    observed = sum(release_outcomes(D, E2E['T'], E2E['sigma1'] / 2, E2E['sigma2'] / 2, seed=AUDIT_SEED + 1200))[code]
    assert chi2_pvalue(observed, log_release_probs(D[0].tolist(), **E2E)) < 1e-12

@pytest.fixture(scope='module')
def exact_audited(): return exact_release([6, 4], [5, 5], **E2E)

def test_the_claim_covers_the_exact_epsilon_of_the_audited_pair(exact_audited, release_audit):
    "3.38 on the audit's own pair: below the claim, and above the draws' lower bound, which can only approach it."
    assert_claim_covers(claimed_release(), exact_audited)
    assert release_audit <= exact_audited < .7 * claimed_release(), (release_audit, exact_audited, claimed_release())

def test_the_counts_hold_the_whole_privacy_loss():
    "Over 3 images the hockey stick summed over the counts equals the sum over all 27 outcome vectors, at every epsilon."
    lp, lq = log_outcome_probs([6, 4], **E2E), log_outcome_probs([5, 5], **E2E)
    every = [list(o) for o in itertools.product(range(3), repeat=3)]
    full_p, full_q = (np.array([p[o].sum() for o in every]) for p in (lp, lq))
    for eps in (0., .3, 1., 2.):
        assert hockey_stick(log_release_probs([6, 4], **E2E, K=3), log_release_probs([5, 5], **E2E, K=3), eps) == pytest.approx(
            hockey_stick(full_p, full_q, eps), rel=1e-10)
    assert hockey_stick(lp, lq, 0.) == pytest.approx(.5 * np.abs(np.exp(lp) - np.exp(lq)).sum(), rel=1e-12)  # total variation

def test_the_exact_epsilon_lies_between_the_family_and_the_gaussians():
    """The worst pair of the family is exact (a lower bound on the mechanism's epsilon); the 16 Gaussian noises composed
    (checks: sensitivity 1, answers: sqrt 2) are an upper bound; the claim converts their RDP, so it must lie above both."""
    worst = worst_exact(E2E['sigma1'], E2E['sigma2'])
    gaussians = gdp_epsilon(math.sqrt(E2E_IMAGES * (1 / E2E['sigma1']**2 + 2 / E2E['sigma2']**2)))
    assert worst <= gaussians <= claimed_release(), (worst, gaussians, claimed_release())

BROKEN = {'as claimed': (1, 1), 'both noises halved': (.5, .5), 'sigma1 halved': (.5, 1), 'sigma2 halved': (1, .5)}

@pytest.mark.parametrize('variant', BROKEN)
def test_the_exact_epsilon_catches_half_the_noise(variant):
    """Each variant releases with its own noise but is claimed at E2E's sigmas. The claim covers the exact epsilon as
    claimed, and the same check fails for every broken variant (exact, so no statistical slack): both noises halved
    already on the audit's own pair, one of them on the family's worst pair."""
    f1, f2 = BROKEN[variant]
    exact = worst_exact(f1 * E2E['sigma1'], f2 * E2E['sigma2'])
    if variant == 'as claimed': return assert_claim_covers(claimed_release(), exact)
    with pytest.raises(AssertionError, match='exceeds the claim'): assert_claim_covers(claimed_release(), exact)
    if variant == 'both noises halved':
        assert exact_release([6, 4], [5, 5], E2E['T'], E2E['sigma1'] / 2, E2E['sigma2'] / 2) > claimed_release()


def test_pate_student_trains_on_the_answered_images_and_their_noisy_labels_only(monkeypatch):
    "The student sees the answered public images with the released labels: never the clean votes, never the unanswered images."
    from dpsd_nb.data import DataInfo
    n = 40
    info = DataInfo('toy', (1, 8, 8), ('a', 'b'))
    x = torch.zeros(n, 1, 8, 8); x[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32)  # the first pixel says which image
    votes = torch.arange(n) % 2  # image i: all ten teachers vote i % 2 ...
    teachers = [Voter(j, torch.where(torch.arange(n) < n // 2, votes, 1 - votes) if j < 3 else votes.clone()) for j in range(10)]  # ... 3 disagree on half
    seen = {}
    def spy(model, ds, *args, **kwargs):
        seen['x'], seen['y'] = ds.tensors
        return model
    monkeypatch.setattr(pate, 'fit_classifier', spy)
    p = pate.pate_student(teachers, info, x, 8, 3., 6., DELTA, release=False, device='cpu', generator=noise_generator(noise_seed=3))
    a = p.answers.answered
    assert 0 < a.sum() < n  # some answered, some not: the check bit
    assert torch.equal(seen['x'], x[a]) and torch.equal(seen['y'], p.answers.labels[a])
    clean = public_votes(teachers, x).argmax(1)
    assert not torch.equal(p.answers.labels[a], clean[a])  # noisy labels, not the plurality (sigma2 = 6 flips some)
    every = pate_epsilon(public_votes(teachers, x), torch.ones(n, dtype=bool), 8, 3., 6., DELTA)
    assert p.epsilon == pytest.approx(every.data_independent, rel=1e-12)  # charged as if every image were answered
    q = pate.pate_student(teachers, info, x, 8, 3., 6., DELTA, release=False, device='cpu')  # secret noise by default
    r = pate.pate_student(teachers, info, x, 8, 3., 6., DELTA, release=False, device='cpu')
    assert not (torch.equal(q.answers.answered, r.answers.answered) and torch.equal(q.answers.labels, r.answers.labels))
