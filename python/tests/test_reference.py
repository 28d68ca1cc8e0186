"""contrastive.reference against independent NumPy implementations written here: the losses
directly from their definitions, the gradients by central differences of those definitions."""

import numpy as np
import pytest

from contrastive import reference

TIGHT = 1e-12
rng = np.random.default_rng()


def normalize(x, eps=1e-12):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def log_softmax_rows(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def reduce(values, reduction):
    return {"mean": np.mean, "sum": np.sum}[reduction](values) if reduction != "none" else values


# ---- NumPy definitions ---------------------------------------------------------------------------

def numpy_infonce(q, k, temperature, similarity, symmetric, reduction, offset=0):
    qh, kh = (normalize(q), normalize(k)) if similarity == "cosine" else (q, k)
    logits = qh @ kh.T / temperature
    rows = np.arange(q.shape[0])
    row_loss = -log_softmax_rows(logits)[rows, rows + offset]
    if symmetric:
        positive_columns = logits[:, offset:offset + q.shape[0]].T
        row_loss = 0.5 * (row_loss - log_softmax_rows(positive_columns)[rows, rows])
    return reduce(row_loss, reduction)


def numpy_mnr_per_anchor(a, p, n, scale, similarity, reduction):
    if similarity == "cosine":
        a, p, n = normalize(a), normalize(p), normalize(n)
    candidates = np.concatenate([p[:, None, :], n], axis=1)  # (B, 1 + n, D)
    logits = scale * np.einsum("bd,btd->bt", a, candidates)
    return reduce(-log_softmax_rows(logits)[:, 0], reduction)


def numpy_repel(u, x, margin, reduction, mean_over_active=False):
    s = np.einsum("bd,bnd->bn", normalize(u), normalize(x))
    terms = np.maximum(s - margin, 0.0)
    if mean_over_active:
        active = np.count_nonzero(s - margin > 0)
        return terms.sum() / active if active else 0.0
    return reduce(terms, reduction)


def central_differences(f, x, step=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + step
        plus = f()
        x[index] = saved - step
        minus = f()
        x[index] = saved
        grad[index] = (plus - minus) / (2 * step)
    return grad


def weighted(values, upstream):
    return float(np.sum(np.atleast_1d(values) * upstream))


# ---- InfoNCE -------------------------------------------------------------------------------------

@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_infonce(similarity, symmetric, reduction):
    b, m, d, offset, t = 3, 7, 4, 2, 0.5
    q, k = rng.normal(size=(b, d)), rng.normal(size=(m, d))
    upstream = rng.normal(size=b if reduction == "none" else 1)
    out = reference.infonce(q, k, temperature=t, similarity=similarity, symmetric=symmetric,
                            reduction=reduction, positive_offset=offset, grad_loss=upstream)
    expected = numpy_infonce(q, k, t, similarity, symmetric, reduction, offset)
    np.testing.assert_allclose(out["loss"], np.atleast_1d(expected), rtol=TIGHT, atol=TIGHT)

    def objective():
        return weighted(numpy_infonce(q, k, t, similarity, symmetric, reduction, offset), upstream)

    np.testing.assert_allclose(out["grad_q"], central_differences(objective, q), atol=1e-6)
    np.testing.assert_allclose(out["grad_k"], central_differences(objective, k), atol=1e-6)


def test_infonce_demo_example():
    np.random.seed(0)  # the demo's InfoNCE inputs
    z1 = np.random.randn(6, 8)
    z2 = z1 + 0.1 * np.random.randn(6, 8)
    out = reference.infonce(z1, z2, temperature=0.1)
    # The library takes the temperature as a float32: compare at that value.
    expected = numpy_infonce(z1, z2, float(np.float32(0.1)), "cosine", False, "mean")
    assert out["loss"][0] == pytest.approx(expected, abs=TIGHT)
    assert out["loss"][0] == pytest.approx(0.0287133, abs=1e-7)


# ---- MNR -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mnr_per_anchor(similarity, reduction):
    b, n, d, scale = 3, 4, 5, 2.0
    a, p, neg = rng.normal(size=(b, d)), rng.normal(size=(b, d)), rng.normal(size=(b, n, d))
    upstream = rng.normal(size=b if reduction == "none" else 1)
    out = reference.mnr_per_anchor(a, p, neg, scale=scale, similarity=similarity,
                                   reduction=reduction, grad_loss=upstream)
    expected = numpy_mnr_per_anchor(a, p, neg, scale, similarity, reduction)
    np.testing.assert_allclose(out["loss"], np.atleast_1d(expected), rtol=TIGHT, atol=TIGHT)

    def objective():
        return weighted(numpy_mnr_per_anchor(a, p, neg, scale, similarity, reduction), upstream)

    np.testing.assert_allclose(out["grad_anchors"], central_differences(objective, a), atol=1e-6)
    np.testing.assert_allclose(out["grad_positives"], central_differences(objective, p), atol=1e-6)
    np.testing.assert_allclose(out["grad_negatives"],
                               central_differences(objective, neg).reshape(b * n, d), atol=1e-6)


def test_mnr_demo_example():
    np.random.seed(42)  # the demo's MNR inputs
    anchor, positive, negatives = np.random.rand(4), np.random.rand(4), np.random.rand(3, 4)
    out = reference.mnr_per_anchor(anchor[None], positive[None], negatives[None])
    assert f"MNR Loss = {out['loss'][0]:.4f}" == "MNR Loss = 1.6965"


@pytest.mark.parametrize("hard_negatives", [0, 1, 3])
@pytest.mark.parametrize("symmetric", [False, True])
def test_mnr_in_batch(hard_negatives, symmetric):
    b, d, scale = 4, 3, 20.0
    a = rng.normal(size=(b, d))
    candidates = rng.normal(size=((1 + hard_negatives) * b, d))
    out = reference.mnr_in_batch(a, candidates, scale=scale, symmetric=symmetric)
    expected = numpy_infonce(a, candidates, 1.0 / scale, "cosine", symmetric, "mean")
    assert out["loss"][0] == pytest.approx(expected, abs=1e-9)
    assert out["grad_candidates"].shape == candidates.shape


# ---- Repel ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction,mean_over_active", [("mean", False), ("sum", False),
                                                        ("none", False), ("mean", True)])
def test_repel(reduction, mean_over_active):
    b, n, d, margin = 3, 4, 5, 0.0
    u, x = rng.normal(size=(b, d)), rng.normal(size=(b, n, d))
    out = reference.repel(u, x, margin=margin, reduction=reduction,
                          mean_over_active=mean_over_active)
    expected = numpy_repel(u, x, np.float32(margin), reduction, mean_over_active)
    np.testing.assert_allclose(out["loss"], np.atleast_1d(expected).ravel(), rtol=TIGHT, atol=TIGHT)
    assert out["similarities"].shape == (b, n)


def test_repel_seed_shapes():
    np.random.seed(0)
    u, x = np.random.randn(2, 4), np.random.randn(2, 3, 4)
    out = reference.repel(u, x)
    assert out["loss"][0] == pytest.approx(numpy_repel(u, x, float(np.float32(0.3)), "mean"),
                                           abs=TIGHT)


def test_nan_is_not_laundered():
    u, x = rng.normal(size=(2, 3)), rng.normal(size=(2, 2, 3))
    x[1, 0, 2] = np.nan
    assert np.isnan(reference.repel(u, x)["loss"][0])
    q = rng.normal(size=(3, 3))
    q[0, 0] = np.nan
    assert np.isnan(reference.infonce(q, rng.normal(size=(3, 3)))["loss"][0])
