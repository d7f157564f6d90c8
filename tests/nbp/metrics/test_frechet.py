import numpy as np
import pytest
import scipy.linalg

from nbp.metrics.frechet import frechet_distance, gaussian_from_sums, trace_sqrt_product


def _random_spd(rng, dim):
    a = rng.standard_normal((dim, dim))
    return a @ a.T + 0.1 * np.eye(dim)


def _psd_sqrt(m):
    vals, vecs = np.linalg.eigh(m)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def _independent_frechet(mu1, s1, mu2, s2):
    # Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2), a symmetric PSD root computed by eigh instead of Schur.
    r1 = _psd_sqrt(s1)
    cross = np.trace(_psd_sqrt(r1 @ s2 @ r1))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross)


def test_one_dimensional_closed_form():
    # W2 between N(m1, a^2) and N(m2, b^2) is (m1 - m2)^2 + (a - b)^2.
    d = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert d == pytest.approx(9.0 + 1.0, rel=1e-12)


def test_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    v1, v2 = rng.uniform(0.5, 3, 6), rng.uniform(0.5, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_scaled_covariance_closed_form():
    # S2 = c^2 S1 commutes with S1: distance = |dmu|^2 + (1 - c)^2 Tr(S1).
    rng = np.random.default_rng(1)
    s1 = _random_spd(rng, 5)
    mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
    expected = np.sum((mu1 - mu2) ** 2) + (1 - 3.0) ** 2 * np.trace(s1)
    assert frechet_distance(mu1, s1, mu2, 9.0 * s1) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dim", [3, 32])
def test_matches_independent_numpy(dim):
    rng = np.random.default_rng(dim)
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    s1, s2 = _random_spd(rng, dim), _random_spd(rng, dim)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_independent_frechet(mu1, s1, mu2, s2), rel=1e-8)


def test_identical_gaussians_are_zero_distance():
    rng = np.random.default_rng(2)
    s = _random_spd(rng, 10)
    mu = rng.standard_normal(10)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-8


@pytest.mark.parametrize("ddof", [0, 1])
def test_sums_give_numpy_mean_and_cov(ddof):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 7)) * 3 + 5
    mean, cov = gaussian_from_sums(len(x), x.sum(0), x.T @ x, ddof)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False, ddof=ddof), rtol=1e-9, atol=1e-12)


def test_incompatible_statistics_raise():
    with pytest.raises(ValueError, match="incompatible"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="need more than 1"):
        gaussian_from_sums(1, np.zeros(2), np.zeros((2, 2)), ddof=1)


def test_trace_of_root_by_eigenvalues_matches_sqrtm():
    rng = np.random.default_rng(3)
    for dim in (2, 7, 24):
        s1, s2 = _random_spd(rng, dim), _random_spd(rng, dim)
        expected = np.trace(np.real(scipy.linalg.sqrtm(s1 @ s2)))
        assert trace_sqrt_product(s1, s2) == pytest.approx(expected, rel=1e-6)
    # rank one each: (a a^T)(b b^T) = (a.b) a b^T has one eigenvalue (a.b)^2, so the trace is |a.b|
    a, b = rng.standard_normal(24), rng.standard_normal(24)
    assert trace_sqrt_product(np.outer(a, a), np.outer(b, b)) == pytest.approx(abs(a @ b), rel=1e-6)


def test_distance_survives_a_failed_matrix_root(monkeypatch):
    """Covariances of two or three clips can make sqrtm return all-NaN; the distance must not."""
    rng = np.random.default_rng(4)
    feats1, feats2 = rng.standard_normal((3, 24)), rng.standard_normal((2, 24))
    (mu1, s1), (mu2, s2) = [(f.mean(0), np.cov(f, rowvar=False)) for f in (feats1, feats2)]
    expected = frechet_distance(mu1, s1, mu2, s2)
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda m, *args, **kwargs: np.full_like(m, np.nan))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
