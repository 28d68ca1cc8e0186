"""contrastive.reference with ids against NumPy transcriptions, written here from their published
formulas, of three losses that contrast one set of rows with itself under labels:

- pytorch-metric-learning's SupConLoss (embeddings (N, D) + labels (N)),
- the SupCon authors' SupConLoss (losses.py: features (B, V, D) + labels (B), contrast_mode "all"),
- lightly's NTXentLoss (two views (B, D) each, memory bank off).

Each maps onto Q = K = the rows, ids = the labels (the sample index for NT-Xent), multi_positive and
exclude_self: L_out_i = lse_{j != i} S_ij - mean_{p in P(i)} S_ip with P(i) the other rows with i's
label. Where the real packages are installed, they are compared too (those tests skip otherwise).
"""

import numpy as np
import pytest

from contrastive import reference

TIGHT = 1e-12
rng = np.random.default_rng()


def normalize(x, eps=1e-12):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def logsumexp(values, axis):
    top = values.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(values - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def f32(value):
    """The library takes the temperature as a float: the transcriptions use the same number."""
    return float(np.float32(value))


def ids_loss(x, labels, temperature, similarity="cosine", reduction="mean", grad_loss=None):
    """The library's multi-positive, self-excluding InfoNCE of the rows x against themselves."""
    return reference.infonce(x, x, temperature=temperature, similarity=similarity,
                             reduction=reduction, query_ids=labels, key_ids=labels,
                             multi_positive=True, exclude_self=True, grad_loss=grad_loss)


# ---- Transcriptions --------------------------------------------------------------------------

def pml_supcon(embeddings, labels, temperature):
    """pytorch-metric-learning's SupConLoss: cosine similarity (its default distance) over
    temperature; the denominator runs over every other row (positives and negatives); each
    anchor's loss is -sum(pos * log_prob) / (|P(i)| + tiny); AvgNonZeroReducer averages the
    anchors whose loss is > 0. A batch without a positive pair or without a negative pair gives
    0."""
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(n, dtype=bool)
    pos_mask, neg_mask = same & off_diagonal, ~same
    if not pos_mask.any() or not neg_mask.any():
        return 0.0
    x = normalize(embeddings)
    mat = x @ x.T / temperature
    mat = mat - mat.max(axis=1, keepdims=True)
    denominator = logsumexp(np.where(pos_mask | neg_mask, mat, -np.inf), axis=1)
    log_prob = mat - denominator[:, None]
    tiny = np.finfo(np.float64).tiny
    losses = -(pos_mask * log_prob).sum(axis=1) / (pos_mask.sum(axis=1) + tiny)
    nonzero = losses > 0
    return losses[nonzero].mean() if nonzero.any() else 0.0


def supcon_authors(features, labels, temperature, base_temperature=None):
    """The SupCon authors' SupConLoss (losses.py), contrast_mode "all": features (B, V, D) are
    used as given (the authors normalize them beforehand), stacked view-major (row v * B + b),
    logits = dot / temperature; the self-contrast is masked from both the positives and the
    denominator; anchors without a positive divide by 1 (so they give 0) and the loss is
    -(temperature / base_temperature) * mean over all V * B anchors."""
    base_temperature = temperature if base_temperature is None else base_temperature
    b, v, _ = features.shape
    contrast = np.concatenate([features[:, view] for view in range(v)], axis=0)
    logits = contrast @ contrast.T / temperature
    logits = logits - logits.max(axis=1, keepdims=True)
    tiled = np.tile(labels, v)
    logits_mask = 1.0 - np.eye(b * v)
    mask = (tiled[:, None] == tiled[None, :]) * logits_mask
    log_prob = logits - np.log((np.exp(logits) * logits_mask).sum(axis=1, keepdims=True))
    pairs = mask.sum(axis=1)
    pairs = np.where(pairs < 1e-6, 1.0, pairs)
    mean_log_prob_pos = (mask * log_prob).sum(axis=1) / pairs
    return (-(temperature / base_temperature) * mean_log_prob_pos).mean()


def lightly_ntxent(out0, out1, temperature):
    """lightly's NTXentLoss without a memory bank: both views normalized; the logits of view-0 row
    i are [out0_i . out1 (B), out0_i . out0 without itself (B - 1)] / temperature with label i, and
    those of view-1 row i likewise with the views swapped; cross-entropy averaged over the 2B
    rows."""
    out0, out1 = normalize(out0), normalize(out1)
    b = out0.shape[0]
    keep = ~np.eye(b, dtype=bool)
    rows = []
    for first, second in ((out0, out1), (out1, out0)):
        cross = first @ second.T / temperature
        same = (first @ first.T / temperature)[keep].reshape(b, b - 1)
        rows.append(np.concatenate([cross, same], axis=1))
    logits = np.concatenate(rows, axis=0)
    labels = np.tile(np.arange(b), 2)
    log_softmax = logits - logsumexp(logits, axis=1)[:, None]
    return -log_softmax[np.arange(2 * b), labels].mean()


def central_differences(function, x, step=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + step
        plus = function(x)
        x[index] = saved - step
        minus = function(x)
        x[index] = saved
        grad[index] = (plus - minus) / (2 * step)
    return grad


def stacked(features):
    """(B, V, D) -> the V B rows, view-major as the SupCon authors stack them."""
    return np.concatenate([features[:, view] for view in range(features.shape[1])], axis=0)


# ---- The SupCon authors' loss ------------------------------------------------------------------

@pytest.mark.parametrize("views", [2, 3])
def test_supcon_authors_equals_multi_positive_with_self_exclusion(views):
    batch, dim = 6, 5
    features = normalize(rng.normal(size=(batch, views, dim)))
    labels = np.array([0, 1, 0, 2, 1, 3])
    temperature = f32(0.07)
    expected = supcon_authors(features, labels, temperature)
    rows = stacked(features)
    ours = ids_loss(rows, np.tile(labels, views), temperature, similarity="dot")
    # With V >= 2 every anchor has a positive (its other views): both means run over all V B rows.
    assert ours["positive_rows"] == batch * views
    np.testing.assert_allclose(ours["loss"][0], expected, rtol=1e-12)
    # The gradient of the rows: as Q and as K (one tensor), against central differences of the
    # transcription (its features are taken as given, as with similarity="dot").
    numeric = central_differences(
        lambda x: supcon_authors(np.stack(np.split(x, views), axis=1), labels, temperature),
        rows.copy())
    np.testing.assert_allclose(ours["grad_q"] + ours["grad_k"], numeric, atol=1e-6)


def test_supcon_authors_mean_runs_over_every_anchor():
    # One view, singleton classes: the authors divide by all V B anchors (those without a
    # positive give 0), the library by the anchors that have one, and reports that count.
    batch = 7
    features = normalize(rng.normal(size=(batch, 1, 4)))
    labels = np.array([0, 1, 0, 2, 1, 3, 4])  # 2, 3, 4: no positive
    temperature = f32(0.1)
    ours = ids_loss(stacked(features), labels, temperature, similarity="dot")
    assert ours["positive_rows"] == 4
    np.testing.assert_allclose(ours["loss"][0] * 4 / batch,
                               supcon_authors(features, labels, temperature), rtol=1e-12)
    summed = ids_loss(stacked(features), labels, temperature, similarity="dot", reduction="sum")
    np.testing.assert_allclose(summed["loss"][0] / batch,
                               supcon_authors(features, labels, temperature), rtol=1e-12)


def test_supcon_authors_base_temperature_scales_the_loss():
    # base_temperature != temperature multiplies the loss by temperature / base_temperature.
    features = normalize(rng.normal(size=(5, 2, 3)))
    labels = np.array([0, 0, 1, 1, 2])
    temperature = f32(0.1)
    ours = ids_loss(stacked(features), np.tile(labels, 2), temperature, similarity="dot")
    np.testing.assert_allclose(ours["loss"][0] * temperature / 0.07,
                               supcon_authors(features, labels, temperature, 0.07), rtol=1e-12)


# ---- pytorch-metric-learning's SupConLoss -----------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_pml_supcon_equals_multi_positive_with_self_exclusion(reduction):
    embeddings = rng.normal(size=(9, 4))  # PML normalizes (cosine); the library does too
    labels = np.array([3, 1, 3, 0, 1, 3, 5, 6, 0])  # 5, 6: no positive, left out of both means
    temperature = f32(0.1)
    ours = ids_loss(embeddings, labels, temperature, reduction=reduction)
    expected = pml_supcon(embeddings, labels, temperature)
    if reduction == "sum":  # PML averages over the 7 anchors with a positive
        expected *= ours["positive_rows"]
    assert ours["positive_rows"] == 7
    np.testing.assert_allclose(ours["loss"][0], expected, rtol=1e-12)
    numeric = central_differences(lambda x: pml_supcon(x, labels, temperature), embeddings.copy())
    if reduction == "mean":
        np.testing.assert_allclose(ours["grad_q"] + ours["grad_k"], numeric, atol=1e-6)


def test_pml_supcon_conventions_on_degenerate_batches():
    embeddings = rng.normal(size=(4, 3))
    temperature = f32(0.1)
    # No positive pair: both give 0 (the library with zero gradients).
    distinct = np.arange(4)
    ours = ids_loss(embeddings, distinct, temperature)
    assert ours["loss"][0] == 0.0 and pml_supcon(embeddings, distinct, temperature) == 0.0
    assert ours["positive_rows"] == 0
    assert not ours["grad_q"].any() and not ours["grad_k"].any()
    # No negative pair (one class): PML returns 0; the library's L_out is log(N - 1) or more
    # (every other row is a positive and in the denominator), with its gradient.
    same = np.zeros(4, dtype=np.int64)
    assert pml_supcon(embeddings, same, temperature) == 0.0
    assert ids_loss(embeddings, same, temperature)["loss"][0] >= np.log(3) - TIGHT


# ---- lightly's NTXentLoss ----------------------------------------------------------------------

@pytest.mark.parametrize("batch", [2, 5])
def test_lightly_ntxent_equals_two_views_with_sample_ids(batch):
    out0, out1 = rng.normal(size=(batch, 6)), rng.normal(size=(batch, 6))
    temperature = f32(0.5)
    rows = np.concatenate([out0, out1])
    ids = np.tile(np.arange(batch), 2)  # the id of a row is its sample
    ours = ids_loss(rows, ids, temperature)
    assert ours["positive_rows"] == 2 * batch
    np.testing.assert_allclose(ours["loss"][0], lightly_ntxent(out0, out1, temperature),
                               rtol=1e-12)
    numeric = central_differences(
        lambda x: lightly_ntxent(x[:batch], x[batch:], temperature), rows.copy())
    np.testing.assert_allclose(ours["grad_q"] + ours["grad_k"], numeric, atol=1e-6)


def test_ntxent_gradient_of_the_temperature():
    # d/dt of lightly's loss by central differences (in t), against the library's.
    batch = 4
    out0, out1 = rng.normal(size=(batch, 3)), rng.normal(size=(batch, 3))
    temperature = f32(0.5)
    ours = ids_loss(np.concatenate([out0, out1]), np.tile(np.arange(batch), 2), temperature)
    step = 1e-6
    numeric = (lightly_ntxent(out0, out1, temperature + step)
               - lightly_ntxent(out0, out1, temperature - step)) / (2 * step)
    np.testing.assert_allclose(ours["grad_temperature"], numeric, rtol=1e-6)


# ---- The real packages, where installed --------------------------------------------------------

def test_against_pytorch_metric_learning():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    losses = pytest.importorskip("pytorch_metric_learning.losses",
                                 reason="pytorch-metric-learning is not installed")
    embeddings = rng.normal(size=(10, 4))
    labels = np.array([0, 1, 0, 2, 1, 0, 3, 4, 2, 5])
    temperature = f32(0.1)
    x = torch.tensor(embeddings, dtype=torch.float64, requires_grad=True)
    loss = losses.SupConLoss(temperature=temperature)(x, torch.tensor(labels))
    loss.backward()
    ours = ids_loss(embeddings, labels, temperature)
    np.testing.assert_allclose(ours["loss"][0], loss.item(), rtol=1e-10)
    np.testing.assert_allclose(ours["grad_q"] + ours["grad_k"], x.grad.numpy(), atol=1e-10)


def test_against_lightly():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    lightly_loss = pytest.importorskip("lightly.loss", reason="lightly is not installed")
    batch = 6
    out0, out1 = rng.normal(size=(batch, 5)), rng.normal(size=(batch, 5))
    temperature = f32(0.5)
    a = torch.tensor(out0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(out1, dtype=torch.float64, requires_grad=True)
    loss = lightly_loss.NTXentLoss(temperature=temperature, memory_bank_size=0)(a, b)
    loss.backward()
    ours = ids_loss(np.concatenate([out0, out1]), np.tile(np.arange(batch), 2), temperature)
    np.testing.assert_allclose(ours["loss"][0], loss.item(), rtol=1e-10)
    grad = ours["grad_q"] + ours["grad_k"]
    np.testing.assert_allclose(grad[:batch], a.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(grad[batch:], b.grad.numpy(), atol=1e-10)


# ---- The other options through Python ---------------------------------------------------------

def test_masking_and_threshold_through_python():
    q, k = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    # Distinct ids change nothing; a duplicate of row 0's id leaves row 0's denominator.
    plain = reference.infonce(q, k, positive_offset=1, reduction="none")
    distinct = reference.infonce(q, k, positive_offset=1, reduction="none",
                                 query_ids=[0, 1, 2], key_ids=[9, 0, 1, 2, 8])
    np.testing.assert_allclose(distinct["loss"], plain["loss"], rtol=1e-12)
    masked = reference.infonce(q, k, positive_offset=1, reduction="none",
                               query_ids=[0, 1, 2], key_ids=[0, 0, 1, 2, 8])
    assert not masked["kept"][0, 0] and masked["kept"][1:, 0].all()
    removed = reference.infonce(q[:1], k[1:], reduction="none")  # row 0 without key 0
    np.testing.assert_allclose(masked["loss"][0], removed["loss"][0], rtol=1e-12)
    # The threshold, without ids: keys more similar than the positive by over 0.1 leave.
    sim = normalize(q) @ normalize(k).T
    out = reference.infonce(q, k, positive_offset=1, false_negative_margin=-0.1)
    positive = sim[np.arange(3), np.arange(3) + 1]
    expected = ~(sim > positive[:, None] + f32(0.1))
    expected[np.arange(3), np.arange(3) + 1] = True
    np.testing.assert_array_equal(out["kept"], expected)


def test_mnr_in_batch_with_ids_is_infonce_with_the_scale():
    anchors, candidates = rng.normal(size=(3, 4)), rng.normal(size=(6, 4))
    kwargs = dict(query_ids=[0, 1, 0], key_ids=[0, 1, 0, 2, 1, 3], multi_positive=True)
    mnr = reference.mnr_in_batch(anchors, candidates, scale=4.0, **kwargs)
    infonce = reference.infonce(anchors, candidates, temperature=0.25, **kwargs)
    np.testing.assert_allclose(mnr["loss"], infonce["loss"], rtol=1e-12)
    np.testing.assert_allclose(mnr["grad_candidates"], infonce["grad_k"], atol=TIGHT)
    assert mnr["positive_rows"] == infonce["positive_rows"] == 3


def test_bad_ids_are_refused_with_the_argument_named():
    x = rng.normal(size=(4, 3))
    with pytest.raises(TypeError, match="query_ids"):
        reference.infonce(x, x, query_ids=[0.5, 1, 2, 3], key_ids=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="key_ids"):
        reference.infonce(x, x, query_ids=[0, 1, 2, 3], key_ids=[0, 1, 2])
    with pytest.raises(ValueError, match="key_ids"):
        reference.infonce(x, x, query_ids=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="multi_positive needs ids"):
        reference.infonce(x, x, multi_positive=True)
    with pytest.raises(ValueError, match="exclude_self needs multi_positive"):
        reference.infonce(x, x, query_ids=[0, 1, 2, 3], key_ids=[0, 1, 2, 3], exclude_self=True)
    with pytest.raises(ValueError, match="symmetric with multi_positive"):
        reference.infonce(x, x, query_ids=[0, 1, 2, 3], key_ids=[0, 1, 2, 3], symmetric=True,
                          multi_positive=True)
    with pytest.raises(ValueError, match="query_ids"):
        reference.mnr_in_batch(x, x, query_ids=[[0, 1, 2, 3]], key_ids=[0, 1, 2, 3])
