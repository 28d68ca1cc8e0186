"""contrastive.torch_distributed over gloo: 2 and 4 processes on the CPU, each mode against one
process's call on the concatenated batch, and against sentence-transformers and open_clip run in
the same process group; ranks that disagree; the bytes sent and rows held; and the float64
reference split into key shards and merged by the running log-sum-exp.

Tolerances (float32, CPU kernels): the loss within rtol 1e-5, atol 1e-6 of the single-process
loss; every gradient within rtol 1e-4, atol 1e-6 (the ranks' partial sums are added in another
order than one process adds them). The reference split is float64: the log-sum-exp and loss
within 1e-12, the gradients within rtol 1e-10.

Each world size is one group of spawned processes that runs every check (processes start slowly:
each imports PyTorch); a group that does not finish within its timeout fails the test instead of
hanging. `python python/tests/test_distributed.py --measure 2 4 8` prints the bytes sent and rows
held per rank per step, and each rank's peak memory growth, for docs/distributed.md.
"""

from __future__ import annotations

import datetime
import importlib.util
import math
import os
import socket
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import contrastive.reference as ref  # noqa: E402

LOSS_TOL = dict(rtol=1e-5, atol=1e-6)
GRAD_TOL = dict(rtol=1e-4, atol=1e-6)
GROUP_TIMEOUT_S = 150  # a whole group of processes, imports included
COLLECTIVE_TIMEOUT_S = 60  # one collective that waits for a rank that never comes


# ---- Running a function on W gloo ranks ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, name: str, args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world,
                            timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    try:
        globals()[name](rank, world, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()


# Modules the fork server imports once: its processes start with them (importing PyTorch and
# sentence-transformers in every process would take seconds each).
_PRELOAD = ["torch", "torch.distributed", "contrastive.torch_distributed", "contrastive.reference",
            "sentence_transformers.sentence_transformer.losses.multiple_negatives_ranking"]


def _start_fork_server() -> None:
    """Processes are forked from a server that imported the modules above and this file, before
    any thread ran (a fork of this process, whose PyTorch may have started threads, could hang)."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload([*_PRELOAD, __name__])


def run_ranks(world: int, name: str, *args, timeout: float = GROUP_TIMEOUT_S) -> None:
    """Runs the module function `name`(rank, world, *args) on `world` gloo processes; an exception
    on any rank fails the call with its traceback, and so does a group still running after
    `timeout` seconds."""
    _start_fork_server()
    context = mp.start_processes(_entry, args=(world, _free_port(), name, args), nprocs=world,
                                 join=False, start_method="forkserver")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=max(0.1, deadline - time.monotonic())):
        if time.monotonic() >= deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            pytest.fail(f"{name} on {world} ranks did not finish within {timeout} s")


# ---- Checks, run on every rank -------------------------------------------------------------


def _close(actual, expected, tol, what):
    torch.testing.assert_close(actual, expected, **tol, msg=lambda m: f"{what}: {m}")


def _leaf(x):
    return x.detach().clone().requires_grad_(True)


def _scalar(value):
    return torch.tensor(value, dtype=torch.float32, requires_grad=True)


def _compare(rank, world, single, distributed, inputs, scalars, reduction, rows, what,
             average=True):
    """single(*inputs, *scalars) on the concatenated batch against distributed(*local inputs,
    *scalars) on this rank's rows (`rows(x, rank)` slices an input); loss, gradients of every
    input and scalar. reduction="none" is back-propagated with random per-row weights.
    average: the gradients are made for ranks that average them (DDP: an input's rows of the
    single-process gradient times W, a scalar's whole gradient), else for ranks that sum them
    (the rows themselves, the scalar's share); with reduction="none" both are the latter."""
    gen = torch.Generator().manual_seed(99)
    full_in = [_leaf(x) for x in inputs]
    full_sc = [_scalar(s) if isinstance(s, float) else s for s in scalars]
    loss_s = single(*full_in, *full_sc)
    if reduction == "none":
        weights = torch.randn(loss_s.shape, generator=gen)
        (loss_s * weights).sum().backward()
    else:
        loss_s.backward()
    local_in = [_leaf(rows(x, rank)) for x in inputs]
    local_sc = [_scalar(s) if isinstance(s, float) else s for s in scalars]
    loss_d = distributed(*local_in, *local_sc)
    batch = loss_d.shape[0] if reduction == "none" else None
    if reduction == "none":
        mine = slice(rank * batch, (rank + 1) * batch)
        _close(loss_d, loss_s.detach()[mine], LOSS_TOL, f"{what}: loss")
        (loss_d * weights[mine]).sum().backward()
    else:
        _close(loss_d, loss_s.detach(), LOSS_TOL, f"{what}: loss")
        loss_d.backward()
    replicated = average and reduction != "none"  # one loss value every rank holds
    factor = world if replicated else 1
    tol = dict(GRAD_TOL, atol=GRAD_TOL["atol"] * factor)
    for index, (full, local) in enumerate(zip(full_in, local_in)):
        _close(local.grad, rows(full.grad, rank) * factor, tol,
               f"{what}: gradient of input {index}")
    for index, (full, local) in enumerate(zip(full_sc, local_sc)):
        if isinstance(full, torch.Tensor) and full.requires_grad:
            total = local.grad.clone()
            if not replicated:  # the ranks' shares add up to the single-process gradient
                dist.all_reduce(total)
            _close(total, full.grad, GRAD_TOL, f"{what}: gradient of scalar {index}")


def _blocks_of(batch, blocks):
    """Rows of rank r in a (blocks * N, D) concatenated [X_1; ...] of N = W b rows per block."""
    def rows(x, rank):
        per_block = x.shape[0] // blocks
        return torch.cat([x[k * per_block + rank * batch:k * per_block + (rank + 1) * batch]
                          for k in range(blocks)])
    return rows


def _data(world, batch, dim, count, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(world * batch, dim, generator=gen) for _ in range(count)]


def check_infonce(rank, world):
    import contrastive.torch as ct
    import contrastive.torch_distributed as ctd
    batch = 3
    rows = _blocks_of(batch, 1)
    q, k = _data(world, batch, 8, 2, seed=1)
    for symmetric, reduction, similarity in ((False, "mean", "cosine"), (True, "mean", "cosine"),
                                             (True, "sum", "dot"), (False, "none", "cosine"),
                                             (True, "none", "cosine")):
        options = dict(symmetric=symmetric, reduction=reduction, similarity=similarity)
        _compare(rank, world,
                 lambda q, k, t: ct.infonce(q, k, temperature=t, **options),
                 lambda q, k, t: ctd.infonce(q, k, temperature=t, **options),
                 (q, 0.3 * k), (0.07,), reduction, rows, f"infonce {options}")
    # Gradients for ranks that sum them.
    _compare(rank, world,
             lambda q, k, t: ct.infonce(q, k, temperature=t, symmetric=True),
             lambda q, k, t: ctd.infonce(q, k, temperature=t, symmetric=True,
                                         gradient_average=False),
             (q, k), (0.07,), "mean", rows, "infonce summed gradients", average=False)
    # A float temperature, the unfused backward.
    _compare(rank, world,
             lambda q, k: ct.infonce(q, k, temperature=0.2, symmetric=True),
             lambda q, k: ctd.infonce(q, k, temperature=0.2, symmetric=True,
                                      fused_backward=False),
             (q, k), (), "mean", rows, "infonce float temperature")


def check_mnr(rank, world):
    import contrastive.torch as ct
    import contrastive.torch_distributed as ctd
    batch, hard = 3, 2
    rows_a, rows_c = _blocks_of(batch, 1), _blocks_of(batch, 1 + hard)
    anchors, *blocks = _data(world, batch, 8, 2 + hard, seed=2)
    candidates = torch.cat(blocks)  # [P; N_1; N_2] of the concatenated batch

    def rows(x, rank):
        return rows_a(x, rank) if x.shape[0] == anchors.shape[0] else rows_c(x, rank)

    for symmetric, reduction in ((False, "mean"), (True, "mean"), (True, "none")):
        options = dict(symmetric=symmetric, reduction=reduction)
        _compare(rank, world,
                 lambda a, c, s: ct.mnr_in_batch(a, c, scale=s, **options),
                 lambda a, c, s: ctd.mnr_in_batch(a, c, scale=s, **options),
                 (anchors, candidates), (20.0,), reduction, rows, f"mnr_in_batch {options}")


def check_siglip(rank, world):
    import contrastive.torch as ct
    import contrastive.torch_distributed as ctd
    batch = 3
    rows = _blocks_of(batch, 1)
    q, k = _data(world, batch, 8, 2, seed=3)
    for mode in ("gather", "ring"):
        for log_scale, reduction in ((False, "mean"), (True, "sum"), (False, "none")):
            scale = math.log(10.0) if log_scale else 10.0
            options = dict(log_scale=log_scale, reduction=reduction)
            _compare(rank, world,
                     lambda q, k, t, b: ct.siglip(q, k, scale=t, bias=b, **options),
                     lambda q, k, t, b: ctd.siglip(q, k, scale=t, bias=b, mode=mode, **options),
                     (q, k), (scale, -10.0), reduction, rows, f"siglip {mode} {options}")
        # Frozen keys, float scalars: only the queries' gradient travels.
        local_q = _leaf(rows(q, rank))
        full_q = _leaf(q)
        ct.siglip(full_q, k, scale=5.0, bias=-3.0, similarity="dot").backward()
        loss = ctd.siglip(local_q, rows(k, rank), scale=5.0, bias=-3.0, similarity="dot",
                          mode=mode)
        loss.backward()
        _close(local_q.grad, rows(full_q.grad, rank) * world, GRAD_TOL,
               f"siglip {mode} frozen keys")
        # Gradients for ranks that sum them.
        _compare(rank, world,
                 lambda q, k, t, b: ct.siglip(q, k, scale=t, bias=b),
                 lambda q, k, t, b: ctd.siglip(q, k, scale=t, bias=b, mode=mode,
                                               gradient_average=False),
                 (q, k), (10.0, -10.0), "mean", rows, f"siglip {mode} summed gradients",
                 average=False)


def _open_clip_loss_module():
    """open_clip's loss.py, loaded from the installed package's file (it imports only PyTorch),
    without importing the whole package (which would add seconds to every process)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "loss.py")
    module_spec = importlib.util.spec_from_file_location("open_clip_loss_under_test", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def check_open_clip_siglip(rank, world):
    """open_clip's SigLipLoss(rank, world_size): each rank's loss is its rows' sum over every
    rank's keys / b, the gradients reach every rank's features; ours is the mean of its losses
    over the ranks; its gradients are made for DDP's average, as theirs: its feature gradients
    are theirs, and its scalars' the mean of theirs (what DDP's average makes of theirs)."""
    import contrastive.torch_distributed as ctd
    open_clip_loss = _open_clip_loss_module()
    batch = 4
    image, text = _data(world, batch, 8, 2, seed=4)
    image = torch.nn.functional.normalize(image, dim=-1)[rank * batch:(rank + 1) * batch]
    text = torch.nn.functional.normalize(text, dim=-1)[rank * batch:(rank + 1) * batch]
    for dist_impl, mode in (("bidir", "ring"), ("shift", "gather")):
        theirs_in = [_leaf(image), _leaf(text)]
        t1, b1 = _scalar(10.0), _scalar(-10.0)
        loss_theirs = open_clip_loss.SigLipLoss(rank=rank, world_size=world,
                                                dist_impl=dist_impl)(*theirs_in, t1, b1)
        loss_theirs.backward()
        ours_in = [_leaf(image), _leaf(text)]
        t2, b2 = _scalar(10.0), _scalar(-10.0)
        loss_ours = ctd.siglip(*ours_in, scale=t2, bias=b2, similarity="dot", mode=mode)
        loss_ours.backward()
        mean = loss_theirs.detach().clone()
        dist.all_reduce(mean)
        what = f"open_clip SigLipLoss {dist_impl} vs {mode}"
        _close(loss_ours.detach(), mean / world, LOSS_TOL, f"{what}: loss")
        for index in range(2):
            _close(ours_in[index].grad, theirs_in[index].grad, GRAD_TOL,
                   f"{what}: gradient of input {index}")
        for ours, theirs in ((t2, t1), (b2, b1)):
            total = theirs.grad.clone()
            dist.all_reduce(total)
            _close(ours.grad, total / world, GRAD_TOL, f"{what}: scalar gradient")


def check_sentence_transformers(rank, world):
    """sentence-transformers' MNR with gather_across_devices=True: each rank's loss is the mean
    over its anchors against every rank's candidates; ours is the mean over ranks of theirs."""
    import contrastive.torch_distributed as ctd
    from sentence_transformers.sentence_transformer.losses.multiple_negatives_ranking import \
        MultipleNegativesRankingLoss
    batch, hard = 3, 1
    anchors, positives, negatives = _data(world, batch, 8, 3, seed=5)
    mine = slice(rank * batch, (rank + 1) * batch)
    for symmetric in (False, True):
        directions = ("query_to_doc", "doc_to_query") if symmetric else ("query_to_doc",)
        loss = MultipleNegativesRankingLoss(None, scale=20.0, gather_across_devices=True,
                                            directions=directions,
                                            partition_mode="per_direction")
        theirs_in = [_leaf(x[mine]) for x in (anchors, positives, negatives)]
        loss_theirs = loss.compute_loss_from_embeddings(theirs_in, None)
        loss_theirs.backward()
        ours_in = [_leaf(x[mine]) for x in (anchors, positives, negatives)]
        loss_ours = ctd.mnr_in_batch(ours_in[0], torch.cat(ours_in[1:]), scale=20.0,
                                     symmetric=symmetric, hard_negatives=hard)
        loss_ours.backward()
        mean = loss_theirs.detach().clone()
        dist.all_reduce(mean)
        what = f"sentence-transformers MNR directions={directions}"
        _close(loss_ours.detach(), mean / world, LOSS_TOL, f"{what}: loss")
        for index in range(3):
            _close(ours_in[index].grad, theirs_in[index].grad, GRAD_TOL,
                   f"{what}: gradient of input {index}")


def _expect_error(rank, world, error_type, words, call):
    """call() raises error_type on this rank, with every one of `words` in its message; the group
    still works afterwards."""
    try:
        call()
    except error_type as error:
        for word in words:
            assert word in str(error), f"rank {rank}: {word!r} not in {error}"
    else:
        raise AssertionError(f"rank {rank}: no {error_type.__name__} ({words})")
    ping = torch.ones(1)
    dist.all_reduce(ping)
    assert ping.item() == world


def check_disagreement(rank, world):
    import contrastive.torch_distributed as ctd
    q, k = torch.randn(4, 8), torch.randn(4, 8)
    last = world - 1
    rows = 5 if rank == last else 4
    _expect_error(rank, world, ValueError, ["disagree", "shape of q", "rank 0 has (4, 8)"],
                  lambda: ctd.siglip(torch.randn(rows, 8), torch.randn(rows, 8), mode="ring"))
    _expect_error(rank, world, ValueError, ["disagree", "temperature"],
                  lambda: ctd.infonce(q, k, temperature=0.1 * (1 + rank)))
    _expect_error(rank, world, ValueError, ["disagree", "symmetric"],
                  lambda: ctd.infonce(q, k, symmetric=rank == last))
    _expect_error(rank, world, ValueError, ["disagree", "mode"],
                  lambda: ctd.siglip(q, k, mode="ring" if rank == last else "gather"))
    _expect_error(rank, world, ValueError, ["disagree", "whether k requires grad"],
                  lambda: ctd.siglip(q, k.clone().requires_grad_(rank == last)))
    _expect_error(rank, world, ValueError, ["disagree", "the dtype of anchors"],
                  lambda: ctd.mnr_in_batch(*((q.half(), k.half()) if rank == last else (q, k))))
    # One rank's own input is invalid: every rank raises, naming it.
    bad_q = torch.randn(2, 4, 8) if rank == last else q
    _expect_error(rank, world, ValueError, ["2-D"], lambda: ctd.infonce(bad_q, k))
    _expect_error(rank, world, ValueError, ["temperature"] if rank == 0 else ["rank 0 of"],
                  lambda: ctd.infonce(q, k, temperature=-1.0 if rank == 0 else 0.1))
    _expect_error(rank, world, NotImplementedError, ["shard API"],
                  lambda: ctd.infonce(q, k, mode="ring"))
    _expect_error(rank, world, NotImplementedError, ["shard API"],
                  lambda: ctd.mnr_in_batch(q, k, mode="ring"))
    _expect_error(rank, world, ValueError, ["mode must be one of"],
                  lambda: ctd.siglip(q, k, mode="tree"))
    _expect_error(rank, world, TypeError, ["torch.Tensor"],
                  lambda: ctd.siglip(q, k.numpy() if rank == last else k))


def _step_traffic(batch, dim, mode, dtype=torch.float32):
    """One SigLIP training step (forward and backward, scale and bias learnable): the Traffic."""
    import contrastive.torch_distributed as ctd
    q = torch.randn(batch, dim, dtype=dtype, requires_grad=True)
    k = torch.randn(batch, dim, dtype=dtype, requires_grad=True)
    t, b = _scalar(10.0), _scalar(-10.0)
    with ctd.count_traffic() as traffic:
        ctd.siglip(q, k, scale=t, bias=b, mode=mode).backward()
    return traffic


def expected_sent_bytes(mode, world, batch, dim, element_bytes=4):
    """A SigLIP step's bytes sent per rank: keys b D, gradients summed in float32, the loss and
    two scalar gradients all-reduced (4 bytes each, 2 (W - 1) / W of them sent)."""
    block = batch * dim
    scalars = 3 * 2 * (world - 1) / world * 4
    if mode == "gather":  # all-gather of the keys, reduce-scatter of their gradient
        return (world - 1) * block * element_bytes + (world - 1) * block * 4 + scalars
    # forward: W - 1 hops of keys; backward: W - 1 hops of keys and W of gradient accumulators
    return 2 * (world - 1) * block * element_bytes + world * block * 4 + scalars


def check_traffic(rank, world):
    batch, dim = 6, 16
    for mode in ("gather", "ring"):
        traffic = _step_traffic(batch, dim, mode)
        expected = expected_sent_bytes(mode, world, batch, dim)
        assert abs(traffic.sent_bytes - expected) <= 3, (mode, traffic, expected)
        if mode == "gather":  # the gathered keys and their gradient
            assert traffic.peak_rows == 2 * world * batch, (mode, traffic)
        else:  # a few blocks, whatever W
            assert traffic.peak_rows <= 6 * batch, (mode, traffic)


def check_all(rank, world, with_sentence_transformers):
    check_infonce(rank, world)
    check_mnr(rank, world)
    check_siglip(rank, world)
    check_open_clip_siglip(rank, world)
    if with_sentence_transformers:
        check_sentence_transformers(rank, world)
    check_disagreement(rank, world)
    check_traffic(rank, world)


# ---- The tests ----------------------------------------------------------------------------------


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
@pytest.mark.skipif(not _has("open_clip"), reason="open_clip_torch is not installed")
@pytest.mark.parametrize("world", [2, 4])
def test_ranks_against_one_process(world):
    # sentence-transformers takes seconds to import in every process: its parity runs on 2 ranks.
    with_st = world == 2 and _has("sentence_transformers")
    run_ranks(world, "check_all", with_st)
    if world == 2 and not with_st:
        pytest.skip("every check passed but the MNR parity with sentence-transformers, which is "
                    "not installed")


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_one_rank(dtype):
    """World size 1 (this process, gloo): every mode gives the plain call's loss and gradients,
    within the float32 tolerances (the symmetric loss is two calls, one per direction, summed in
    another order), and within 1e-2 in bfloat16."""
    import contrastive.torch as ct
    import contrastive.torch_distributed as ctd
    if dist.is_initialized():
        pytest.skip("a process group is already initialized in this process")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1)
    loss_tol, grad_tol = ((LOSS_TOL, GRAD_TOL) if dtype == torch.float32 else
                          (dict(rtol=1e-2, atol=1e-2),) * 2)
    try:
        gen = torch.Generator().manual_seed(11)
        a, p, n = (torch.randn(5, 16, generator=gen).to(dtype) for _ in range(3))
        cases = [(ct.infonce, ctd.infonce, (a, p), dict(temperature=0.1, symmetric=True), {}),
                 (ct.mnr_in_batch, ctd.mnr_in_batch, (a, torch.cat([p, n])), dict(scale=20.0),
                  {}),
                 (ct.siglip, ctd.siglip, (a, p), dict(scale=10.0, bias=-10.0), {}),
                 (ct.siglip, ctd.siglip, (a, p), dict(scale=10.0, bias=-10.0),
                  dict(mode="ring"))]
        for plain, distributed, inputs, options, mode in cases:
            ours_in, theirs_in = [_leaf(x) for x in inputs], [_leaf(x) for x in inputs]
            theirs = plain(*theirs_in, **options)
            theirs.backward()
            ours = distributed(*ours_in, **options, **mode)
            ours.backward()
            what = f"{distributed.__name__} {mode}"
            _close(ours.detach(), theirs.detach(), loss_tol, what)
            for mine, expected in zip(ours_in, theirs_in):
                _close(mine.grad, expected.grad, grad_tol, f"{what}: gradient")
            with torch.no_grad(), ctd.count_traffic() as traffic:  # the loss alone
                value = distributed(*ours_in, **options, **mode)
            _close(value, theirs.detach(), loss_tol, f"{what} without grad")
            assert not value.requires_grad and traffic.rows == 0, (what, traffic)
    finally:
        dist.destroy_process_group()


def test_reference_split_into_key_shards():
    """Key shards: the float64 reference of each (query block, key shard) pair, merged by
    (m, z) = (max(m1, m2), z1 e^(m1 - m) + z2 e^(m2 - m)), gives the unsharded row log-sum-exp and
    loss; the gradients G = w (exp(S - lse) - onehot), dQ = s G K, dK = s G^T Q from the shards'
    logits and the merged statistics give the unsharded reference's gradients."""
    rng = np.random.default_rng(7)
    world, batch, dim, temperature = 4, 5, 6, 0.25  # 0.25: exact in float32 too
    rows = world * batch
    q, k = rng.standard_normal((rows, dim)), rng.standard_normal((rows, dim))
    whole = ref.infonce(q, k, temperature=temperature, similarity="dot")
    s = 1.0 / temperature
    grad_q, grad_k = np.zeros_like(q), np.zeros_like(k)
    losses, grad_t = [], 0.0
    for r in range(world):
        mine = slice(r * batch, (r + 1) * batch)
        m, z = np.full(batch, -np.inf), np.zeros(batch)
        shards = []
        for j in range(world):
            theirs = slice(j * batch, (j + 1) * batch)
            part = ref.infonce(q[mine], k[theirs], temperature=temperature, similarity="dot")
            lse = part["row_lse"]
            merged = np.maximum(m, lse)
            z = z * np.exp(m - merged) + np.exp(lse - merged)  # lse's own z is 1 at max lse
            m = merged
            shards.append((theirs, part["logits"].reshape(batch, batch)))
            if j == r:
                positive = np.diag(shards[-1][1])
        row_lse = m + np.log(z)
        np.testing.assert_allclose(row_lse, whole["row_lse"][mine], rtol=1e-12, atol=1e-12)
        losses.append(row_lse - positive)
        for j, (theirs, logits) in enumerate(shards):
            grad = np.exp(logits - row_lse[:, None]) / rows
            if j == r:
                grad -= np.eye(batch) / rows
            grad_q[mine] += s * grad @ k[theirs]
            grad_k[theirs] += s * grad.T @ q[mine]
            grad_t += np.sum(grad * logits) * (-1.0 / temperature)
    np.testing.assert_allclose(np.mean(np.concatenate(losses)), whole["loss"], rtol=1e-12)
    np.testing.assert_allclose(grad_q, whole["grad_q"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_k, whole["grad_k"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_t, whole["grad_temperature"], rtol=1e-10, atol=1e-12)


# ---- Measurements (not a test) ------------------------------------------------------------------


def measure(rank, world, batch, dim, mode):
    """One SigLIP step in `mode` on this rank: prints (rank 0) the bytes sent and rows held, and
    the largest growth of a rank's peak resident memory over the step (ru_maxrss)."""
    import resource
    _step_traffic(4, 8, mode)  # warm-up on a tiny batch: first use of the code paths
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    traffic = _step_traffic(batch, dim, mode)
    grown = torch.tensor(float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before))
    dist.all_reduce(grown, op=dist.ReduceOp.MAX)
    block = batch * dim * 4
    if rank == 0:
        print(f"W={world} b={batch} D={dim} {mode}: sent {traffic.sent_bytes} bytes "
              f"({traffic.sent_bytes / block:.2f} b*D*4; formula "
              f"{expected_sent_bytes(mode, world, batch, dim):.0f}), peak rows "
              f"{traffic.peak_rows} ({traffic.peak_rows / batch:.0f} b, "
              f"{traffic.peak_bytes / 2**20:.1f} MiB), peak RSS growth "
              f"{grown.item() / 1024:.1f} MiB", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "--measure":
        sys.exit("usage: test_distributed.py --measure W [W ...]")
    for world in map(int, sys.argv[2:]):
        for mode in ("ring", "gather"):
            run_ranks(world, "measure", 256, 4096, mode, timeout=900)
