"""contrastive.torch on a GPU: every loss against a plain PyTorch implementation of it (values and
gradients, the temperature's and scale's included) in float32, float16 and bfloat16, the custom
operators' registrations (torch.library.opcheck), central differences in float32,
torch.compile(fullgraph=True), a learnable temperature, the caller's stream, input layouts and
errors.

Skipped without PyTorch, without a CUDA device PyTorch can see, or when the library finds no usable
GPU (the reason is in the skip message).
"""

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import contrastive  # noqa: E402


def _skip_reason():
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA device"
    if contrastive.gpu_available():
        return None
    try:
        contrastive.handle_for(0)
    except RuntimeError as error:
        return f"the library has no usable GPU: {error}"
    return "contrastive.gpu_available() is False"


_REASON = _skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

from contrastive import torch as ct  # noqa: E402  (registers the custom operators)

DEVICE = "cuda"
# float32 GPU results against float64 plain PyTorch.
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-5
GRAD_RTOL, GRAD_ATOL = 1e-3, 1e-4  # the absolute part scales with the gradient's largest entry
# Central differences in float32: step along a unit direction, and what they can resolve.
FD_STEP = 1e-2
FD_RTOL, FD_ATOL = 2e-2, 2e-3
SLEEP_CYCLES = 100_000_000  # ~0.05 s of GPU time: keeps a stream busy while work queues behind it


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randn(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=DEVICE, dtype=dtype)


def assert_close(actual, expected, rtol, atol, what):
    expected = expected.to(actual.device, torch.float64)
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual.double(), expected, rtol=rtol, atol=atol * scale,
                               msg=lambda message: f"{what}: {message}")


# ---- Plain PyTorch implementations (the definitions the library is checked against) ----------


def _reduce(losses, reduction):
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def plain_infonce(q, k, temperature, similarity="cosine", symmetric=False, reduction="mean",
                  positive_offset=0):
    if similarity == "cosine":
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    logits = q @ k.T / temperature
    batch = q.shape[0]
    targets = torch.arange(batch, device=q.device)
    losses = F.cross_entropy(logits, targets + positive_offset, reduction="none")
    if symmetric:  # the column direction over the positive columns
        columns = logits[:, positive_offset:positive_offset + batch].T
        losses = (losses + F.cross_entropy(columns, targets, reduction="none")) / 2
    return _reduce(losses, reduction)


def plain_mnr_per_anchor(anchors, positives, negatives, scale, similarity="dot",
                         reduction="mean"):
    candidates = torch.cat([positives.unsqueeze(1), negatives], dim=1)  # (B, 1 + n, D)
    if similarity == "cosine":
        anchors, candidates = F.normalize(anchors, dim=-1), F.normalize(candidates, dim=-1)
    logits = scale * torch.einsum("bd,bkd->bk", anchors, candidates)
    targets = torch.zeros(anchors.shape[0], dtype=torch.long, device=anchors.device)
    return _reduce(F.cross_entropy(logits, targets, reduction="none"), reduction)


def plain_mnr_in_batch(anchors, candidates, scale, similarity="cosine", symmetric=False,
                       reduction="mean"):
    """sentence-transformers' MultipleNegativesRankingLoss (and its symmetric variant)."""
    if similarity == "cosine":
        anchors, candidates = F.normalize(anchors, dim=-1), F.normalize(candidates, dim=-1)
    logits = scale * anchors @ candidates.T
    batch = anchors.shape[0]
    targets = torch.arange(batch, device=anchors.device)
    losses = F.cross_entropy(logits, targets, reduction="none")
    if symmetric:
        losses = (losses + F.cross_entropy(logits[:, :batch].T, targets, reduction="none")) / 2
    return _reduce(losses, reduction)


def plain_repel(user_embedding, neg_item_embeddings, margin=0.3, reduction="mean",
                mean_over_active=False):
    """Repel as a few lines of PyTorch compute it, with the library's other reductions."""
    user = F.normalize(user_embedding, dim=-1).unsqueeze(1)  # [B, 1, D]
    neg_items = F.normalize(neg_item_embeddings, dim=-1)  # [B, N, D]
    sim_scores = torch.bmm(user, neg_items.transpose(1, 2)).squeeze(1)  # [B, N]
    terms = torch.clamp(sim_scores - margin, min=0)
    if reduction != "mean" or not mean_over_active:
        return _reduce(terms, reduction)
    active = (sim_scores > margin).sum()
    return terms.sum() / active.clamp(min=1)  # 0 when no term is above the margin


# ---- Values and gradients against the plain implementations -----------------------------------


def check_against_plain(ours, plain, *tensors):
    """ours(*leaves) in float32 and plain(*leaves) in float64 from the same values: the losses, and
    the gradients of every leaf for a random upstream gradient (so grad_loss is not just 1). The
    float32 leaves keep the tensors' layouts (strides)."""
    ours_leaves = [t.detach().float().requires_grad_() for t in tensors]
    plain_leaves = [t.detach().double().clone().requires_grad_() for t in tensors]
    loss, expected = ours(*ours_leaves), plain(*plain_leaves)
    assert loss.dtype == torch.float32 and loss.shape == expected.shape
    assert_close(loss, expected, LOSS_RTOL, LOSS_ATOL, "loss")
    upstream = torch.rand_like(expected) + 0.5
    grads = torch.autograd.grad(loss, ours_leaves, upstream.float())
    expected_grads = torch.autograd.grad(expected, plain_leaves, upstream)
    for index, (grad, expected_grad) in enumerate(zip(grads, expected_grads)):
        assert grad.shape == tensors[index].shape
        assert_close(grad, expected_grad, GRAD_RTOL, GRAD_ATOL, f"gradient of input {index}")


INFONCE_CASES = {
    "seed_shape": dict(batch=6, keys=6, dim=8),
    "dot_symmetric_offset_sum": dict(batch=5, keys=9, dim=16, similarity="dot", symmetric=True,
                                     reduction="sum", positive_offset=2, temperature=2.0),
    "symmetric_none": dict(batch=7, keys=7, dim=32, symmetric=True, reduction="none",
                           temperature=0.07),
    "tiled": dict(batch=33, keys=40, dim=24, symmetric=True, positive_offset=3, tile_rows=8,
                  tile_cols=16),
}


@pytest.mark.parametrize("case", INFONCE_CASES.values(), ids=INFONCE_CASES.keys())
def test_infonce_matches_plain_pytorch(case):
    case = dict(case)
    batch, keys, dim = case.pop("batch"), case.pop("keys"), case.pop("dim")
    temperature = case.pop("temperature", 0.1)
    tiles = dict(tile_rows=case.pop("tile_rows", 0), tile_cols=case.pop("tile_cols", 0))
    check_against_plain(lambda q, k, t: ct.infonce(q, k, temperature=t, **case, **tiles),
                        lambda q, k, t: plain_infonce(q, k, t, **case),
                        randn(batch, dim), randn(keys, dim),
                        torch.tensor(temperature, device=DEVICE))


PER_ANCHOR_CASES = {
    "seed_like": dict(batch=4, negatives=3, dim=8),
    "cosine_none": dict(batch=5, negatives=7, dim=33, similarity="cosine", scale=20.0,
                        reduction="none"),
    "one_negative_sum": dict(batch=3, negatives=1, dim=64, similarity="cosine", scale=5.0,
                             reduction="sum"),
}


@pytest.mark.parametrize("case", PER_ANCHOR_CASES.values(), ids=PER_ANCHOR_CASES.keys())
def test_mnr_per_anchor_matches_plain_pytorch(case):
    case = dict(case)
    batch, negatives, dim = case.pop("batch"), case.pop("negatives"), case.pop("dim")
    scale = case.pop("scale", 1.0)
    check_against_plain(lambda a, p, n, s: ct.mnr_per_anchor(a, p, n, scale=s, **case),
                        lambda a, p, n, s: plain_mnr_per_anchor(a, p, n, s, **case),
                        randn(batch, dim), randn(batch, dim), randn(batch, negatives, dim),
                        torch.tensor(scale, device=DEVICE))


IN_BATCH_CASES = {
    "no_hard_negatives": dict(batch=4, hard_negatives=0, dim=8),
    "symmetric_two_blocks_none": dict(batch=6, hard_negatives=2, dim=16, symmetric=True,
                                      reduction="none"),
    "dot_sum": dict(batch=5, hard_negatives=1, dim=12, similarity="dot", scale=0.5,
                    reduction="sum"),
}


@pytest.mark.parametrize("case", IN_BATCH_CASES.values(), ids=IN_BATCH_CASES.keys())
def test_mnr_in_batch_matches_plain_pytorch(case):
    case = dict(case)
    batch, blocks, dim = case.pop("batch"), case.pop("hard_negatives"), case.pop("dim")
    scale = case.pop("scale", 20.0)
    check_against_plain(lambda a, c, s: ct.mnr_in_batch(a, c, scale=s, **case),
                        lambda a, c, s: plain_mnr_in_batch(a, c, s, **case),
                        randn(batch, dim), randn((1 + blocks) * batch, dim),
                        torch.tensor(scale, device=DEVICE))


REPEL_CASES = {
    "seed_shape": dict(batch=2, negatives=3, dim=4),
    "sum": dict(batch=4, negatives=5, dim=16, margin=0.1, reduction="sum"),
    "none": dict(batch=3, negatives=4, dim=8, margin=0.0, reduction="none"),
    "mean_over_active": dict(batch=6, negatives=3, dim=8, margin=0.2, mean_over_active=True),
}


@pytest.mark.parametrize("case", REPEL_CASES.values(), ids=REPEL_CASES.keys())
def test_repel_matches_plain_pytorch(case):
    case = dict(case)
    batch, negatives, dim = case.pop("batch"), case.pop("negatives"), case.pop("dim")
    check_against_plain(lambda a, n: ct.repel(a, n, **case),
                        lambda a, n: plain_repel(a, n, **case),
                        randn(batch, dim), randn(batch, negatives, dim))


def test_a_float_temperature_and_the_defaults():
    q, k = randn(6, 8), randn(6, 8)
    loss = ct.infonce(q, k)
    assert loss.shape == () and loss.device.type == "cuda"
    assert_close(loss, plain_infonce(q.double(), k.double(), 0.1), LOSS_RTOL, LOSS_ATOL, "loss")


def test_the_demos_mnr_example_gives_1_6965():
    anchor = torch.tensor([[0.37454012, 0.95071431, 0.73199394, 0.59865848]], device=DEVICE)
    positive = torch.tensor([[0.15601864, 0.15599452, 0.05808361, 0.86617615]], device=DEVICE)
    negatives = torch.tensor([[[0.60111501, 0.70807258, 0.02058449, 0.96990985],
                               [0.83244264, 0.21233911, 0.18182497, 0.18340451],
                               [0.30424224, 0.52475643, 0.43194502, 0.29122914]]], device=DEVICE)
    assert f"{float(ct.PerAnchorMNRLoss()(anchor, positive, negatives)):.4f}" == "1.6965"


# ---- Modules -------------------------------------------------------------------------------------


def test_multiple_negatives_ranking_loss_concatenates_the_hard_negatives():
    module = ct.MultipleNegativesRankingLoss()  # scale 20, cosine
    assert module.scale == 20.0 and module.similarity == "cosine"
    check_against_plain(
        lambda a, p, n1, n2: module(a, p, n1, n2),
        lambda a, p, n1, n2: plain_mnr_in_batch(a, torch.cat([p, n1, n2]), 20.0),
        randn(5, 16), randn(5, 16), randn(5, 16), randn(5, 16))
    check_against_plain(lambda a, p: module(a, p), lambda a, p: plain_mnr_in_batch(a, p, 20.0),
                        randn(5, 16), randn(5, 16))


def test_per_anchor_and_repel_modules():
    check_against_plain(lambda a, p, n: ct.PerAnchorMNRLoss()(a, p, n),
                        lambda a, p, n: plain_mnr_per_anchor(a, p, n, 1.0),
                        randn(4, 8), randn(4, 8), randn(4, 3, 8))
    check_against_plain(lambda a, n: ct.RepelLoss(margin=0.3)(a, n),
                        lambda a, n: plain_repel(a, n, margin=0.3), randn(2, 4), randn(2, 3, 4))


def test_a_learnable_temperature_receives_its_gradient():
    module = ct.InfoNCELoss(temperature=0.1, symmetric=True, learnable_temperature=True).to(DEVICE)
    parameters = list(module.parameters())
    assert len(parameters) == 1 and parameters[0] is module.temperature
    q, k = randn(8, 16), randn(8, 16)
    module(q, k).backward()
    t = torch.tensor(0.1, dtype=torch.float64, device=DEVICE, requires_grad=True)
    plain_infonce(q.double(), k.double(), t, symmetric=True).backward()
    assert module.temperature.grad is not None and module.temperature.grad.shape == ()
    assert_close(module.temperature.grad, t.grad, GRAD_RTOL, GRAD_ATOL, "temperature gradient")

    # One optimizer step moves it (the gradient reaches the optimizer).
    before = float(module.temperature)
    torch.optim.SGD(module.parameters(), lr=1e-3).step()
    assert float(module.temperature) != before


def test_a_temperature_on_the_cpu_gets_its_gradient_on_the_cpu():
    t = torch.tensor(0.2, requires_grad=True)  # CPU: reading it is no device synchronization
    q, k = randn(6, 8), randn(6, 8)
    ct.infonce(q, k, temperature=t).backward()
    assert t.grad.device.type == "cpu" and t.grad.shape == ()
    t64 = torch.tensor(0.2, dtype=torch.float64, device=DEVICE, requires_grad=True)
    plain_infonce(q.double(), k.double(), t64).backward()
    assert_close(t.grad, t64.grad, GRAD_RTOL, GRAD_ATOL, "temperature gradient")


def test_a_clip_logit_scale_through_the_function():
    logit_scale = torch.tensor(2.0, device=DEVICE, requires_grad=True)  # temperature 1 / e^s
    q, k = randn(6, 8), randn(6, 8)
    ct.infonce(q, k, temperature=1 / logit_scale.exp(), symmetric=True).backward()
    s64 = torch.tensor(2.0, dtype=torch.float64, device=DEVICE, requires_grad=True)
    plain_infonce(q.double(), k.double(), 1 / s64.exp(), symmetric=True).backward()
    assert_close(logit_scale.grad, s64.grad, GRAD_RTOL, GRAD_ATOL, "logit scale gradient")


def test_a_learnable_temperature_needs_no_synchronization_and_a_graph_captures_the_step():
    # The temperature is read on the device: a whole training step (forward, backward, an
    # optimizer update of q and of the temperature) is captured once as a CUDA graph, and each
    # replay follows the temperature the previous replay's update wrote.
    q = randn(16, 32).requires_grad_()
    k = randn(16, 32)
    t = torch.tensor(0.1, device=DEVICE, requires_grad=True)
    optimizer = torch.optim.SGD([q, t], lr=1e-2)

    def step():
        optimizer.zero_grad(set_to_none=False)
        loss = ct.infonce(q, k, temperature=t, symmetric=True)
        loss.backward()
        optimizer.step()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # warm up (the handle's GEMM plans, the optimizer's state)
            step()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured_loss = step()
    for _ in range(3):
        q_before, t_before = q.detach().clone(), t.detach().clone()
        graph.replay()
        torch.cuda.synchronize()
        q64 = q_before.double().requires_grad_()
        t64 = t_before.double().requires_grad_()
        expected = plain_infonce(q64, k.double(), t64, symmetric=True)
        expected.backward()
        assert_close(captured_loss, expected.detach(), LOSS_RTOL, LOSS_ATOL, "captured loss")
        assert_close(t, t_before.double() - 1e-2 * t64.grad, GRAD_RTOL, GRAD_ATOL,
                     "temperature after the captured update")


def test_only_the_needed_gradients():
    q, k = randn(6, 8, dtype=torch.float32).requires_grad_(), randn(6, 8)  # a frozen key tower
    ct.infonce(q, k).backward()
    assert q.grad is not None and k.grad is None
    t = torch.tensor(0.3, device=DEVICE, requires_grad=True)  # only the temperature
    ct.infonce(randn(6, 8), randn(6, 8), temperature=t).backward()
    assert t.grad is not None


# ---- float16 and bfloat16 inputs ----------------------------------------------------------------
# 16-bit inputs against plain PyTorch in float64 on the same, already rounded, values. The library
# accumulates in float32 but stores normalized rows, dLoss/dlogits and the gradients in the inputs'
# dtype (and the logits in bfloat16 with logits_dtype="bf16"), so the tolerances are those of
# 16-bit values, the absolute part a fraction of the largest expected magnitude. A naive
# same-precision emulation (the C++ tests' naive_infonce.hpp, in PyTorch on the CPU) of the cases
# below, on these inputs, used at most a fifth of them.
HALF_DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16}
HALF_TOLERANCES = {  # (rtol, atol as a fraction of the largest expected magnitude)
    torch.float16: dict(loss=(2e-3, 2e-3), grad=(5e-3, 5e-3)),
    torch.bfloat16: dict(loss=(1e-2, 1e-2), grad=(2e-2, 2e-2)),
}
BF16_LOGITS_FACTOR = 2  # a bfloat16 logits tile rounds every logit once more


def half_inputs(dtype, *shapes, seed=0):
    """Random normal inputs drawn on the CPU (the same values on every machine), in dtype."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=generator).to(dtype).to(DEVICE) for shape in shapes]


def assert_close_16(actual, expected, rtol, atol, what):
    """|actual - expected| <= atol * max|expected| + rtol * |expected|, element by element."""
    expected = expected.detach().to(actual.device, torch.float64)
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual.detach().double(), expected, rtol=rtol, atol=atol * scale,
                               msg=lambda message: f"{what}: {message}")


def check_half_against_plain(ours, plain, tensors, scalar, tolerances):
    """ours(*tensors[, s]) on the 16-bit tensors and plain(...) in float64 on the same values: a
    float32 loss, gradients in the inputs' dtype, and the float32 temperature's or scale's gradient
    when `scalar` (its value) is given; for a random upstream gradient."""
    dtype = tensors[0].dtype
    ours_leaves = [t.detach().clone().requires_grad_() for t in tensors]
    plain_leaves = [t.detach().double().requires_grad_() for t in tensors]
    if scalar is not None:
        ours_leaves.append(torch.tensor(scalar, device=DEVICE, requires_grad=True))
        plain_leaves.append(torch.tensor(scalar, dtype=torch.float64, device=DEVICE,
                                         requires_grad=True))
    loss, expected = ours(*ours_leaves), plain(*plain_leaves)
    assert loss.dtype == torch.float32 and loss.shape == expected.shape
    assert torch.isfinite(loss).all()
    assert_close_16(loss, expected, *tolerances["loss"], "loss")
    generator = torch.Generator().manual_seed(1)
    upstream = (torch.rand(expected.shape, generator=generator, dtype=torch.float64) + 0.5)
    upstream = upstream.to(DEVICE)
    grads = torch.autograd.grad(loss, ours_leaves, upstream.float())
    expected_grads = torch.autograd.grad(expected, plain_leaves, upstream)
    for index, (grad, expected_grad) in enumerate(zip(grads, expected_grads)):
        what = f"gradient of input {index}"
        if index < len(tensors):
            assert grad.dtype == dtype and grad.shape == tensors[index].shape, what
        else:
            assert grad.dtype == torch.float32 and grad.shape == (), what
        assert_close_16(grad, expected_grad, *tolerances["grad"], what)


# name: (ours, plain, input shapes, temperature or scale (None: no scalar input)).
HALF_CASES = {
    "infonce_symmetric_offset": (
        lambda q, k, t: ct.infonce(q, k, temperature=t, symmetric=True, positive_offset=2),
        lambda q, k, t: plain_infonce(q, k, t, symmetric=True, positive_offset=2),
        [(16, 64), (20, 64)], 0.1),
    "infonce_none": (
        lambda q, k, t: ct.infonce(q, k, temperature=t, reduction="none"),
        lambda q, k, t: plain_infonce(q, k, t, reduction="none"),
        [(16, 64), (16, 64)], 0.05),
    "infonce_dot_sum": (
        lambda q, k, t: ct.infonce(q, k, temperature=t, similarity="dot", reduction="sum"),
        lambda q, k, t: plain_infonce(q, k, t, similarity="dot", reduction="sum"),
        [(8, 16), (8, 16)], 2.0),
    "mnr_per_anchor_cosine": (
        lambda a, p, n, s: ct.mnr_per_anchor(a, p, n, scale=s, similarity="cosine"),
        lambda a, p, n, s: plain_mnr_per_anchor(a, p, n, s, similarity="cosine"),
        [(8, 64), (8, 64), (8, 5, 64)], 20.0),
    "mnr_per_anchor_dot": (
        lambda a, p, n, s: ct.mnr_per_anchor(a, p, n, scale=s),
        lambda a, p, n, s: plain_mnr_per_anchor(a, p, n, s),
        [(6, 16), (6, 16), (6, 3, 16)], 0.5),
    "mnr_in_batch_symmetric": (
        lambda a, c, s: ct.mnr_in_batch(a, c, scale=s, symmetric=True),
        lambda a, c, s: plain_mnr_in_batch(a, c, s, symmetric=True),
        [(12, 32), (36, 32)], 20.0),
    "repel": (
        lambda a, n: ct.repel(a, n, margin=0.1),
        lambda a, n: plain_repel(a, n, margin=0.1),
        [(6, 32), (6, 4, 32)], None),
    "repel_mean_over_active": (
        lambda a, n: ct.repel(a, n, margin=0.1, mean_over_active=True),
        lambda a, n: plain_repel(a, n, margin=0.1, mean_over_active=True),
        [(6, 32), (6, 4, 32)], None),
}
# No similarity this close to the margin, so 16-bit rounding cannot switch a Repel term on or off.
REPEL_MARGIN_GAP = 1e-2


def _repel_gap(anchors, negatives, margin):
    cos = F.cosine_similarity(anchors.double().unsqueeze(1), negatives.double(), dim=-1)
    return float((cos - margin).abs().min())


@pytest.mark.parametrize("dtype", HALF_DTYPES.values(), ids=HALF_DTYPES.keys())
@pytest.mark.parametrize("case", HALF_CASES.values(), ids=HALF_CASES.keys())
def test_half_precision_matches_plain_pytorch(case, dtype):
    ours, plain, shapes, scalar = case
    tensors = half_inputs(dtype, *shapes)
    if scalar is None:  # Repel: the terms' activity must not depend on rounding
        assert _repel_gap(*tensors, 0.1) > REPEL_MARGIN_GAP, "inputs too close to the margin"
    check_half_against_plain(ours, plain, tensors, scalar, HALF_TOLERANCES[dtype])


@pytest.mark.parametrize("function", ["infonce", "mnr_in_batch"])
def test_a_bf16_logits_tile(function):
    """bfloat16 inputs with logits_dtype="bf16": the logits tile in bfloat16 too."""
    tolerances = {key: tuple(BF16_LOGITS_FACTOR * value for value in pair)
                  for key, pair in HALF_TOLERANCES[torch.bfloat16].items()}
    if function == "infonce":
        check_half_against_plain(
            lambda q, k, t: ct.infonce(q, k, temperature=t, symmetric=True, logits_dtype="bf16"),
            lambda q, k, t: plain_infonce(q, k, t, symmetric=True),
            half_inputs(torch.bfloat16, (16, 64), (24, 64)), 0.1, tolerances)
    else:  # through the module, which passes logits_dtype on
        check_half_against_plain(
            lambda a, p, n, s: ct.MultipleNegativesRankingLoss(scale=s, logits_dtype="bf16")(
                a, p, n),
            lambda a, p, n, s: plain_mnr_in_batch(a, torch.cat([p, n]), s),
            half_inputs(torch.bfloat16, (12, 32), (12, 32), (12, 32)), 20.0, tolerances)


@pytest.mark.parametrize("logits_dtype", ["f32", "bf16"])
def test_bf16_with_a_small_temperature_and_a_large_scale_is_finite(logits_dtype):
    """Temperature 0.01 and scale 100 put logits near +-100: still a finite loss and gradients (and,
    with float32 logits, the loss within bfloat16's tolerance)."""
    q, k, a, p, n = half_inputs(torch.bfloat16, (16, 64), (16, 64), (8, 64), (8, 64), (8, 4, 64))
    cases = [
        (lambda q, k: ct.infonce(q, k, temperature=0.01, symmetric=True,
                                 logits_dtype=logits_dtype),
         lambda q, k: plain_infonce(q, k, 0.01, symmetric=True), (q, k)),
        (lambda a, c: ct.mnr_in_batch(a, c, scale=100.0, logits_dtype=logits_dtype),
         lambda a, c: plain_mnr_in_batch(a, c, 100.0), (a, torch.cat([p, n[:, 0]]))),
        (lambda a, p, n: ct.mnr_per_anchor(a, p, n, scale=100.0, similarity="cosine"),
         lambda a, p, n: plain_mnr_per_anchor(a, p, n, 100.0, similarity="cosine"), (a, p, n)),
    ]
    for ours, plain, tensors in cases:
        leaves = [t.detach().clone().requires_grad_() for t in tensors]
        loss = ours(*leaves)
        grads = torch.autograd.grad(loss, leaves)
        assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
        for grad in grads:
            assert grad.dtype == torch.bfloat16 and torch.isfinite(grad).all()
        if logits_dtype == "f32":
            expected = plain(*[t.double() for t in tensors])
            assert_close_16(loss, expected, *HALF_TOLERANCES[torch.bfloat16]["loss"], "loss")


# ---- The custom operators' registrations ------------------------------------------------------


def _opcheck_cases():
    """(operator, args) for every operator, forward ones with inputs that require grad."""
    ops = torch.ops.contrastive
    q, k = randn(6, 8).requires_grad_(), randn(9, 8).requires_grad_()
    t_cuda = torch.tensor(0.5, device=DEVICE, requires_grad=True)
    t_cpu = torch.tensor(0.5, requires_grad=True)
    infonce = ("cosine", True, "mean", 2, 1e-12, False, 0, 0, "f32", False, 0.0)
    yield "infonce_forward", ops.infonce_forward.default, (q, k, 1.0, t_cuda, *infonce)
    yield "infonce_forward_cpu_t", ops.infonce_forward.default, (q, k, 1.0, t_cpu, *infonce)
    yield ("infonce_forward_none", ops.infonce_forward.default,
           (q, k, 0.2, None, "dot", False, "none", 0, 1e-12, False, 4, 4, "f32", False, 0.0))
    q16, k16 = q.detach().bfloat16().requires_grad_(), k.detach().bfloat16().requires_grad_()
    infonce_bf16 = ("cosine", True, "mean", 2, 1e-12, False, 0, 0, "bf16")
    yield ("infonce_forward_bf16", ops.infonce_forward.default,
           (q16, k16, 0.5, t_cuda, *infonce_bf16))
    loss, saved = ops.infonce_forward(q.detach(), k.detach(), 0.5, None, *infonce)
    yield ("infonce_backward", ops.infonce_backward.default,
           (q.detach(), k.detach(), saved, torch.ones_like(loss), 0.5, None, *infonce, True, True,
            True))
    yield ("infonce_backward_q_only", ops.infonce_backward.default,
           (q.detach(), k.detach(), saved, torch.ones_like(loss), 0.5, None, *infonce, True, False,
            False))
    yield ("infonce_forward_backward", ops.infonce_forward_backward.default,
           (q, k, 1.0, t_cuda, *infonce, True, True, True))
    yield ("infonce_forward_backward_q_only", ops.infonce_forward_backward.default,
           (q, k.detach(), 0.1, None, *infonce, True, False, False))

    a, p, n = randn(4, 8).requires_grad_(), randn(4, 8).requires_grad_(), randn(4, 3, 8)
    s = torch.tensor(2.0, device=DEVICE, requires_grad=True)
    per_anchor = ("cosine", "mean", 1e-12)
    yield ("mnr_per_anchor_forward", ops.mnr_per_anchor_forward.default,
           (a, p, n.requires_grad_(), 1.0, s, *per_anchor))
    loss, saved = ops.mnr_per_anchor_forward(a.detach(), p.detach(), n.detach(), 2.0, None,
                                             *per_anchor)
    yield ("mnr_per_anchor_backward", ops.mnr_per_anchor_backward.default,
           (a.detach(), p.detach(), n.detach(), saved, torch.ones_like(loss), 2.0, None,
            *per_anchor, True, True, True, True))

    c = randn(12, 8).requires_grad_()
    in_batch = ("cosine", True, "mean", 1e-12, False, 0, 0, "f32", False, 0.0)
    yield ("mnr_in_batch_forward", ops.mnr_in_batch_forward.default,
           (a, c, 2, 1.0, s, *in_batch))
    loss, saved = ops.mnr_in_batch_forward(a.detach(), c.detach(), 2, 20.0, None, *in_batch)
    yield ("mnr_in_batch_backward", ops.mnr_in_batch_backward.default,
           (a.detach(), c.detach(), saved, torch.ones_like(loss), 2, 20.0, None, *in_batch, True,
            True, True))
    a16, c16 = a.detach().half(), c.detach().half()
    loss, saved = ops.mnr_in_batch_forward(a16, c16, 2, 20.0, None, *in_batch)
    yield ("mnr_in_batch_backward_f16", ops.mnr_in_batch_backward.default,
           (a16, c16, saved, torch.ones_like(loss), 2, 20.0, None, *in_batch, True, True, True))
    yield ("mnr_in_batch_forward_backward_f16", ops.mnr_in_batch_forward_backward.default,
           (a16.requires_grad_(), c16.requires_grad_(), 2, 20.0, None, *in_batch, True, True,
            False))
    yield ("mnr_per_anchor_forward_backward", ops.mnr_per_anchor_forward_backward.default,
           (a, p, n, 1.0, s, *per_anchor, True, True, True, True))

    u, x = randn(2, 4).requires_grad_(), randn(2, 3, 4).requires_grad_()
    repel = (0.3, "mean", False, 1e-12)
    yield "repel_forward", ops.repel_forward.default, (u, x, *repel)
    yield ("repel_forward_none", ops.repel_forward.default, (u, x, 0.0, "none", False, 1e-12))
    loss, saved = ops.repel_forward(u.detach(), x.detach(), *repel)
    yield ("repel_backward", ops.repel_backward.default,
           (u.detach(), x.detach(), saved, torch.ones_like(loss), *repel, True, True))
    yield ("repel_forward_backward", ops.repel_forward_backward.default,
           (u, x, -1.5, "sum", False, 1e-12, True, True))


def test_opcheck_every_operator():
    torch.manual_seed(0)
    for name, op, args in _opcheck_cases():
        try:
            torch.library.opcheck(op, args)
        except Exception as error:  # name the operator and variant that failed
            raise AssertionError(f"opcheck failed for {name}: {error}") from error


# ---- The two training paths ---------------------------------------------------------------------


def _operators_of_a_step(function, *leaves):
    """The contrastive operators one forward and backward run, by name."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Calls(TorchDispatchMode):
        names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if str(func).startswith("contrastive."):
                self.names.append(str(func).split(".")[1])
            return func(*args, **(kwargs or {}))

    with Calls() as calls:
        function(*leaves).backward()
    return calls.names


def test_a_training_step_runs_forward_backward_once_unless_tiled():
    """With inputs that require grad: forward_backward in forward, backward a scaling; the tiled
    walk and fused_backward=False recompute the gradients in backward, with the same result."""
    q, k, t = randn(33, 24), randn(40, 24), torch.tensor(0.1, device=DEVICE)
    results = {}
    for name, options in {"fused": {}, "recomputed": dict(fused_backward=False),
                          "tiled": dict(tile_rows=8, tile_cols=16)}.items():
        leaves = [q.clone().requires_grad_(), k.clone().requires_grad_(),
                  t.clone().requires_grad_()]
        names = _operators_of_a_step(
            lambda q, k, t: 2.5 * ct.infonce(q, k, temperature=t, symmetric=True, **options),
            *leaves)
        expected = (["infonce_forward_backward"] if name == "fused"
                    else ["infonce_forward", "infonce_backward"])
        assert names == expected, name
        results[name] = [leaf.grad for leaf in leaves]
    for name in ("recomputed", "tiled"):
        for grad, fused in zip(results[name], results["fused"]):
            assert_close(grad, fused, GRAD_RTOL, GRAD_ATOL, f"{name} against fused")


# ---- Central differences (float32: the library has no float64 path) ----------------------------


def check_central_differences(f, *tensors):
    """(f(x + h v) - f(x - h v)) / 2h against <grad f, v> along a random unit direction v over
    all inputs: the gradients are those of the forward."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    grads = torch.autograd.grad(f(*leaves), leaves)
    directions = [torch.randn_like(t) for t in tensors]
    norm = torch.sqrt(sum((d * d).sum() for d in directions))
    directions = [d / norm for d in directions]
    with torch.no_grad():
        plus = f(*[t + FD_STEP * d for t, d in zip(tensors, directions)])
        minus = f(*[t - FD_STEP * d for t, d in zip(tensors, directions)])
    numeric = float((plus - minus) / (2 * FD_STEP))
    analytic = float(sum((g * d).sum() for g, d in zip(grads, directions)))
    assert abs(numeric - analytic) <= FD_ATOL + FD_RTOL * abs(analytic), (numeric, analytic)


def test_central_differences_infonce():
    check_central_differences(
        lambda q, k, t: ct.infonce(q, k, temperature=t, symmetric=True, positive_offset=1),
        randn(5, 8), randn(7, 8), torch.tensor(0.5, device=DEVICE))


def test_central_differences_mnr_per_anchor():
    check_central_differences(
        lambda a, p, n, s: ct.mnr_per_anchor(a, p, n, scale=s, similarity="cosine"),
        randn(4, 8), randn(4, 8), randn(4, 3, 8), torch.tensor(2.0, device=DEVICE))


def test_central_differences_mnr_in_batch():
    check_central_differences(
        lambda a, c, s: ct.mnr_in_batch(a, c, scale=s, symmetric=True),
        randn(4, 8), randn(8, 8), torch.tensor(3.0, device=DEVICE))


def test_central_differences_repel():
    # A margin below -1 keeps every term active: the loss is smooth along the whole step.
    check_central_differences(lambda a, n: ct.repel(a, n, margin=-1.5), randn(3, 8),
                              randn(3, 4, 8))


# ---- torch.compile ---------------------------------------------------------------------------


def _eager_and_compiled(fn, compiled, *tensors):
    results = []
    for f in (fn, compiled):
        leaves = [t.detach().clone().requires_grad_() for t in tensors]
        loss = f(*leaves)
        results.append((loss.detach(), torch.autograd.grad(loss, leaves)))
    (eager, eager_grads), (loss, grads) = results
    assert_close(loss, eager, LOSS_RTOL, LOSS_ATOL, "compiled loss")
    for grad, eager_grad in zip(grads, eager_grads):
        assert_close(grad, eager_grad, GRAD_RTOL, GRAD_ATOL, "compiled gradient")


def test_compile_fullgraph():
    torch._dynamo.reset()
    mnr = ct.MultipleNegativesRankingLoss()
    repel = ct.RepelLoss()

    def step(q, k, t, a, p, n, u, x):  # every loss, the temperature learnable, in one graph
        return (ct.infonce(q, k, temperature=t, symmetric=True) + mnr(a, p, n)
                + ct.mnr_per_anchor(a, p, x[:, :3]) + repel(u, x))

    compiled = torch.compile(step, fullgraph=True)
    inputs = (randn(6, 8), randn(6, 8), torch.tensor(0.1, device=DEVICE), randn(4, 8),
              randn(4, 8), randn(4, 8), randn(4, 8), randn(4, 5, 8))
    _eager_and_compiled(step, compiled, *inputs)
    _eager_and_compiled(step, compiled, *(t + 1 for t in inputs))  # the same graph, new values


def test_compile_fullgraph_dynamic_shapes():
    torch._dynamo.reset()

    def step(q, k):
        return ct.infonce(q, k, symmetric=True)

    compiled = torch.compile(step, fullgraph=True, dynamic=True)
    for batch in (6, 10):  # sizes are symbols: `saved` gets a length the real call fixes
        _eager_and_compiled(step, compiled, randn(batch, 8), randn(batch, 8))


# ---- Streams, layouts, dtypes and errors ------------------------------------------------------


def test_runs_on_the_current_stream():
    q_old, q_new, k = randn(6, 8), randn(6, 8), randn(6, 8)
    q = q_old.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(SLEEP_CYCLES)  # keeps `side` busy: the copy below lands late
        q.copy_(q_new)
        loss = ct.infonce(q, k)  # on `side`, so after the copy; another stream would see q_old
    torch.cuda.synchronize()
    assert_close(loss, plain_infonce(q_new.double(), k.double(), 0.1), LOSS_RTOL, LOSS_ATOL,
                 "loss on a side stream")


def test_layouts_are_passed_or_copied():
    wide = randn(6, 20)
    q_view = wide[:, 4:12]  # row-sliced: strided rows, read in place
    k_transposed = randn(8, 6).T  # last dimension not contiguous: copied
    check_against_plain(lambda q, k: ct.infonce(q, k), lambda q, k: plain_infonce(q, k, 0.1),
                        q_view, k_transposed)
    ours = ct.infonce(q_view, k_transposed)
    assert_close(ours, ct.infonce(q_view.contiguous(), k_transposed.contiguous()), LOSS_RTOL,
                 LOSS_ATOL, "strided against contiguous")
    negatives = randn(4, 5, 8)[:, 1:4]  # (4, 3, 8) with stride(0) = 5 rows: copied
    assert not negatives.is_contiguous() and not k_transposed.is_contiguous()
    check_against_plain(lambda a, p, n: ct.mnr_per_anchor(a, p, n),
                        lambda a, p, n: plain_mnr_per_anchor(a, p, n, 1.0),
                        randn(4, 8), randn(4, 8), negatives)


def test_float64_is_a_type_error():
    with pytest.raises(TypeError, match="float32, float16 or bfloat16, got torch.float64"):
        ct.infonce(randn(4, 8, dtype=torch.float64), randn(4, 8, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_precision_is_never_cast(dtype):
    """Every function and module: a float32 loss, gradients in the inputs' own dtype."""
    calls = [(ct.InfoNCELoss(symmetric=True), [(6, 8), (6, 8)]),
             (ct.MultipleNegativesRankingLoss(), [(4, 8), (4, 8), (4, 8)]),
             (ct.PerAnchorMNRLoss(), [(4, 8), (4, 8), (4, 3, 8)]),
             (ct.RepelLoss(margin=-1.5), [(2, 8), (2, 3, 8)])]
    for module, shapes in calls:
        leaves = [randn(*shape, dtype=dtype).requires_grad_() for shape in shapes]
        loss = module(*leaves)
        assert loss.dtype == torch.float32, type(module).__name__
        loss.backward()
        for leaf in leaves:
            assert leaf.grad.dtype == dtype, type(module).__name__


def test_mixed_dtypes_are_a_type_error():
    """Checked in Python before the library is called; nothing is cast."""
    f32, f16 = randn(4, 8), randn(4, 8, dtype=torch.float16)
    bf16 = randn(4, 8, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match=r"^infonce: inputs must all have one dtype, got "
                                        r"torch\.float16 for q and torch\.bfloat16 for k$"):
        ct.infonce(f16, bf16)
    with pytest.raises(TypeError, match="^mnr_in_batch: inputs must all have one dtype"):
        ct.mnr_in_batch(f32, f16)
    with pytest.raises(TypeError, match="^mnr_per_anchor: inputs must all have one dtype"):
        ct.mnr_per_anchor(bf16, bf16, f32.reshape(4, 1, 8))
    with pytest.raises(TypeError, match="^repel: inputs must all have one dtype"):
        ct.repel(f32, bf16.reshape(4, 1, 8))
    # The module checks before torch.cat, which would promote the hard negatives (a cast).
    with pytest.raises(TypeError, match=r"^MultipleNegativesRankingLoss: .* torch\.float16 for "
                                        r"hard_negatives\[0\]$"):
        ct.MultipleNegativesRankingLoss()(f32, f32, f16)


def test_unsupported_logits_dtype_is_the_librarys_type_error():
    with pytest.raises(TypeError, match="^infonce: logits_dtype must be f32 or bf16, got f16$"):
        ct.infonce(randn(4, 8), randn(4, 8), logits_dtype="f16")
    with pytest.raises(ValueError, match="logits_dtype must be one of"):
        ct.mnr_in_batch(randn(4, 8), randn(4, 8), logits_dtype="fp8")


def test_bad_inputs():
    with pytest.raises(ValueError, match="one device"):
        ct.infonce(torch.randn(4, 8), randn(4, 8))
    with pytest.raises(ValueError, match="temperature"):
        ct.infonce(randn(4, 8), randn(4, 8), temperature=-1.0)
    with pytest.raises(ValueError, match="one-element"):
        ct.infonce(randn(4, 8), randn(4, 8), temperature=torch.ones(2, device=DEVICE))
    with pytest.raises(ValueError, match="2-D"):
        ct.infonce(randn(4, 8, 1), randn(4, 8))
    with pytest.raises(ValueError, match="rows"):
        ct.mnr_in_batch(randn(4, 8), randn(10, 8))
    with pytest.raises(ValueError, match="3-D"):
        ct.repel(randn(2, 4), randn(6, 4))
    with pytest.raises(ValueError):
        ct.infonce(randn(4, 8), randn(4, 9))  # the binding's shape check
