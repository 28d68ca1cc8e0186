"""The losses over several processes (torch.distributed: NCCL on GPUs, gloo on CPUs).

Each of W ranks holds b rows of the global batch of N = W b rows: its queries (anchors, images)
and their keys (candidates, texts). The functions here compute, on every rank, the loss of the
whole batch, as one process would on the concatenation of the ranks' rows (rank 0's rows first):

    infonce(q, k, ...)                  InfoNCE, row-wise or CLIP's symmetric loss
    mnr_in_batch(anchors, candidates)   in-batch MNR with hard negatives (sentence-transformers)
    siglip(q, k, ...)                   SigLIP's sigmoid loss

Conventions:

- The loss ("mean" or "sum") is the same value on every rank, the single-process loss of the
  concatenated batch: the mean (or sum) over the N global rows. With reduction="none" each rank
  gets the losses of its own b rows.
- Gradients are made for the way the ranks combine their parameters' gradients afterwards.
  gradient_average=True (the default; DistributedDataParallel, which averages them): for a
  reduced loss (one value, the same on every rank) each rank's inputs receive W times their rows
  of the single-process gradient, and a temperature, scale or bias given as a one-element tensor
  (one copy per rank, equal values) the whole single-process gradient (the ranks' shares,
  all-reduced), so that after DDP's average every parameter (the encoders' and the scalars')
  holds the single-process gradient, as with open_clip's and sentence-transformers' gathered
  losses. gradient_average=False (a caller that sums the ranks' gradients): the inputs receive
  their rows of the single-process gradient and a scalar tensor its rank's share. With
  reduction="none" each rank's per-row losses are its own objective: both settings give the
  inputs the gradient of the ranks' objectives summed and a scalar its rank's share (DDP's
  average then gives the gradient of their mean). Every rank back-propagates its upstream
  gradient, as ``loss.backward()`` does.
- mode="gather" (every loss): the keys are all-gathered, each rank makes one library call of its
  b rows against the N keys with the positive offset rank * b, and in backward the keys' gradient
  is reduce-scattered back to the ranks that own them (open_clip's local loss with
  gather_with_grad; sentence-transformers' gather_across_devices). CLIP's symmetric loss gathers
  both sides: one call of the rank's queries against all keys and one of its keys against all
  queries, each direction over every row of the global batch.
- mode="ring" (SigLIP): the keys travel around the ring of ranks by point-to-point sends, the
  transfer of the next shard overlapping the call on the current one: the rank's own block with
  its positives, then W - 1 negatives-only calls. In backward the keys travel again with the
  gradient of their rows riding along, so that each rank ends with its own keys' gradient; a rank
  holds a few b x D blocks at a time, never the W b rows. InfoNCE and MNR need running
  log-sum-exp statistics over key shards for a ring (a shard API in the library) and raise
  NotImplementedError for mode="ring".
- Before anything is exchanged the ranks compare their shapes, dtypes, devices, options,
  scalars' values and which inputs require grad (a small all_gather_object): when they disagree,
  or when one rank's inputs are invalid, every rank raises the same error instead of hanging in a
  collective.
- Every rank has the same b (and, for MNR, the same number of hard-negative blocks); the positive
  of local row i is local key i (the distributed forms set the positive offset themselves).
- `count_traffic()` counts the bytes a rank sends and the embedding rows it holds.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
from torch import Tensor

from . import torch as _ct

__all__ = ["infonce", "mnr_in_batch", "siglip", "count_traffic", "Traffic"]

Scalar = Union[float, Tensor]
_MODES = ("gather", "ring")
_REDUCTIONS = ("mean", "sum", "none")
# Tags of the ring's point-to-point messages (gloo matches a message by sender and tag; NCCL by
# the order of the calls, which is the same on every rank).
_KEYS_TAG, _GRADIENT_TAG = 11, 12


# ---- Traffic: bytes sent and rows held -----------------------------------------------------------


class Traffic:
    """What the distributed losses of one rank sent and held while counted.

    sent_bytes: bytes this rank sends. A point-to-point send counts its tensor's bytes; a
        collective counts what each rank sends in the bandwidth-optimal ring algorithm
        (NCCL's and gloo's ring): (W - 1) / W of the gathered or reduce-scattered tensor,
        2 (W - 1) / W of an all-reduced one. The check of the ranks' agreement (a few hundred
        bytes of pickled descriptor) is not counted.
    peak_rows: the most embedding rows (D wide: gathered or received keys and queries, and
        their gradients and gradient accumulators) the distributed code held at once, beyond
        the rank's own inputs; peak_bytes the same in bytes. The library's own scratch (a chunk
        of logits) is not included.
    """

    def __init__(self):
        self.sent_bytes = 0
        self.rows = 0
        self.bytes = 0
        self.peak_rows = 0
        self.peak_bytes = 0

    def __repr__(self):
        return (f"Traffic(sent_bytes={self.sent_bytes}, peak_rows={self.peak_rows}, "
                f"peak_bytes={self.peak_bytes})")


_counters: List[Traffic] = []


@contextlib.contextmanager
def count_traffic() -> Iterator[Traffic]:
    """Counts, while open, the bytes this rank's distributed losses send and the rows they hold
    (forward and backward)."""
    traffic = Traffic()
    _counters.append(traffic)
    try:
        yield traffic
    finally:
        _counters.remove(traffic)


def _sent(nbytes: float) -> None:
    for traffic in _counters:
        traffic.sent_bytes += int(round(nbytes))


def _hold(x: Tensor, sign: int = 1) -> None:
    """Records that a D-wide buffer is held (sign 1) or released (sign -1)."""
    rows = sign * (x.numel() // max(x.shape[-1], 1))
    nbytes = sign * x.numel() * x.element_size()
    for traffic in _counters:
        traffic.rows += rows
        traffic.bytes += nbytes
        traffic.peak_rows = max(traffic.peak_rows, traffic.rows)
        traffic.peak_bytes = max(traffic.peak_bytes, traffic.bytes)


def _release(*tensors: Optional[Tensor]) -> None:
    for x in tensors:
        if x is not None:
            _hold(x, -1)


# ---- The group ---------------------------------------------------------------------------------


class _Group:
    """The process group, this rank's place in it and its neighbours in the ring."""

    def __init__(self, call: str, group):
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(f"{call}: torch.distributed is not initialized "
                               f"(torch.distributed.init_process_group)")
        self.group = group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.device = torch.device("cpu")  # where small tensors are reduced: the inputs' device

    def global_rank(self, rank: int) -> int:
        rank %= self.world
        return rank if self.group is None else dist.get_global_rank(self.group, rank)

    def all_gather(self, x: Tensor) -> Tensor:
        """The ranks' x (rows, ...) stacked along rows, rank 0's first."""
        x = x.contiguous()
        out = x.new_empty((self.world * x.shape[0], *x.shape[1:]))
        if self.world == 1:
            out.copy_(x)
        else:
            dist.all_gather_into_tensor(out, x, group=self.group)
        _sent((self.world - 1) * x.numel() * x.element_size())
        return out

    def reduce_scatter(self, x: Tensor) -> Tensor:
        """Rank r's rows of the sum over ranks of x (W rows, ...)."""
        x = x.contiguous()
        out = x.new_empty((x.shape[0] // self.world, *x.shape[1:]))
        if self.world == 1:
            out.copy_(x)
        else:
            dist.reduce_scatter_tensor(out, x, group=self.group)
        _sent((self.world - 1) * out.numel() * out.element_size())
        return out

    def all_reduce(self, x: Tensor) -> Tensor:
        """The sum over ranks of x (in place when x is on the inputs' device, where NCCL needs
        it; a learnable scalar may live elsewhere)."""
        if self.world > 1:
            here = x if x.device == self.device else x.to(self.device)
            dist.all_reduce(here, group=self.group)
            x = here if here is x else here.to(x.device)
        _sent(2 * (self.world - 1) / self.world * x.numel() * x.element_size())
        return x

    def exchange(self, send: Tensor, receive: Tensor, tag: int) -> List:
        """Sends `send` to the next rank and receives `receive` from the previous one, started
        (the requests are returned; wait on them)."""
        ops = [dist.P2POp(dist.isend, send, self.global_rank(self.rank + 1), self.group, tag),
               dist.P2POp(dist.irecv, receive, self.global_rank(self.rank - 1), self.group, tag)]
        _sent(send.numel() * send.element_size())
        return dist.batch_isend_irecv(ops)


def _wait(requests: Optional[List]) -> None:
    for request in requests or ():
        request.wait()


# ---- Agreement of the ranks ------------------------------------------------------------------


def _scalar_value(value: Scalar) -> float:
    if isinstance(value, Tensor):
        return float(value.detach().reshape(-1)[0].item())
    return float(value)


def _describe(inputs: Sequence[Tuple[str, Tensor]], scalars: Sequence[Tuple[str, Scalar]],
              options: dict) -> dict:
    fields = {}
    for name, x in inputs:
        fields[f"the shape of {name}"] = tuple(x.shape)
        fields[f"the dtype of {name}"] = str(x.dtype)
        fields[f"the device type of {name}"] = x.device.type
        fields[f"whether {name} requires grad"] = bool(x.requires_grad)
    for name, value in scalars:
        is_tensor = isinstance(value, Tensor)
        fields[f"whether {name} is a tensor"] = is_tensor
        fields[f"whether {name} requires grad"] = bool(is_tensor and value.requires_grad)
        fields[name] = _scalar_value(value)
    for name, value in options.items():
        fields[name] = value
    return fields


def _agree(call: str, g: _Group, local_error: Optional[BaseException], fields: dict) -> None:
    """Every rank's descriptor, compared: raises the same error on every rank when one rank's
    inputs are invalid or when the ranks disagree."""
    error = None if local_error is None else (type(local_error).__name__, str(local_error))
    mine = {"error": error, "fields": fields}
    if g.world > 1:
        everyone = [None] * g.world
        dist.all_gather_object(everyone, mine, group=g.group)
    else:
        everyone = [mine]
    for rank, theirs in enumerate(everyone):
        if theirs["error"] is not None:
            if rank == g.rank and local_error is not None:
                raise local_error
            kind, message = theirs["error"]
            error_type = {"TypeError": TypeError, "NotImplementedError": NotImplementedError,
                          "RuntimeError": RuntimeError}.get(kind, ValueError)
            raise error_type(f"{call}: rank {rank} of {g.world}: {message}")
    first = everyone[0]["fields"]
    for rank, theirs in enumerate(everyone[1:], start=1):
        for name in first:
            a, b = first[name], theirs["fields"].get(name)
            if a != b and not (isinstance(a, float) and isinstance(b, float)
                               and math.isnan(a) and math.isnan(b)):
                raise ValueError(f"{call}: the ranks disagree on {name}: rank 0 has {a!r}, rank "
                                 f"{rank} has {b!r}")


def _check_local(call: str, mode: str, ring: bool, reduction: str,
                 inputs: Sequence[Tuple[str, Tensor]], scalars: Sequence[Tuple[str, Scalar]]):
    """This rank's own checks (before the ranks compare)."""
    if mode not in _MODES:
        raise ValueError(f"{call}: mode must be one of {list(_MODES)}, got {mode!r}")
    if mode == "ring" and not ring:
        raise NotImplementedError(
            f"{call}: mode=\"ring\" needs running log-sum-exp statistics over key shards (a "
            f"shard API the library does not have yet); use mode=\"gather\"")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{call}: reduction must be one of {list(_REDUCTIONS)}, got "
                         f"{reduction!r}")
    for name, x in inputs:
        if not isinstance(x, Tensor):
            raise TypeError(f"{call}: {name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2:
            raise ValueError(f"{call}: {name} must be 2-D (rows, dim), got shape "
                             f"{tuple(x.shape)}")
    for name, value in scalars:
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise ValueError(f"{call}: {name} must be a float or a one-element tensor, got "
                                 f"a tensor of shape {tuple(value.shape)}")
        elif not isinstance(value, (int, float)):
            raise TypeError(f"{call}: {name} must be a float or a one-element tensor, got "
                            f"{type(value).__name__}")


def _prepare(call: str, group, mode: str, ring: bool, reduction: str,
             inputs: Sequence[Tuple[str, Tensor]], scalars: Sequence[Tuple[str, Scalar]],
             options: dict, local_checks: Callable[[], None]) -> _Group:
    g = _Group(call, group)
    if inputs and isinstance(inputs[0][1], Tensor):
        g.device = inputs[0][1].device
    local_error = None
    fields = {"mode": mode}
    try:
        _check_local(call, mode, ring, reduction, inputs, scalars)
        local_checks()
        fields.update(_describe(inputs, scalars, options))
    except (TypeError, ValueError, NotImplementedError, RuntimeError) as error:
        local_error = error
    _agree(call, g, local_error, fields)
    return g


def _probe(call: Callable, *tensors: Tensor) -> None:
    """The library's own checks of the options, on a one-row problem (a bad value fails here, on
    every rank alike, before anything is exchanged)."""
    with torch.no_grad():
        call(*(x[:1].detach() for x in tensors))


# ---- Gather mode -------------------------------------------------------------------------------


class _GatherPlan:
    """One rank's part of a gather-mode loss.

    gather[i]: for input i, 0 when it is used only locally, else the number of row blocks it
        holds (1, or 1 + K for MNR's candidates [P; N_1; ...; N_K]), gathered block by block so
        that the gathered tensor is the concatenated batch's [P; N_1; ...].
    compute(local, gathered, scalars) -> this rank's share of the loss: for a reduced loss, its
        rows' share of the global mean or sum (the ranks' shares add up to the loss); per row
        otherwise.
    """

    def __init__(self, g: _Group, gather: Sequence[int], compute: Callable, reduced: bool,
                 average: bool):
        self.g, self.gather, self.compute, self.reduced = g, tuple(gather), compute, reduced
        self.average = average  # gradient_average: see the module's documentation
        # Inside Function.forward grad mode is off and needs_input_grad ignores it: whether a
        # graph is being recorded is read where the loss is called.
        self.grad_enabled = torch.is_grad_enabled()


def _gather_blocks(g: _Group, x: Tensor, blocks: int) -> Tensor:
    """all-gather of x = [X_1; ...; X_n] (n blocks of b rows) as [X_1 of every rank; ...]."""
    gathered = g.all_gather(x)
    if blocks == 1:
        return gathered
    rows, dim = x.shape[0] // blocks, x.shape[1]
    return gathered.view(g.world, blocks, rows, dim).transpose(0, 1).reshape(-1, dim)


def _scatter_blocks(g: _Group, grad: Tensor, blocks: int) -> Tensor:
    """The gradient of _gather_blocks: each rank's rows of the sum over ranks."""
    if blocks > 1:
        dim = grad.shape[1]
        rows = grad.shape[0] // (blocks * g.world)
        grad = grad.view(blocks, g.world, rows, dim).transpose(0, 1).reshape(-1, dim)
    return g.reduce_scatter(grad)


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Gradients are summed across ranks in float32 (as the library accumulates)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class _GatherLoss(torch.autograd.Function):
    """forward(plan, *inputs, *scalars): the loss (all-reduced when reduced); backward: the
    local gradients, the gathered inputs' gradients reduce-scattered, the scalars' all-reduced.
    The library calls run inside forward on detached leaves (their fused gradients, when any,
    are computed there); backward takes the gradients of that inner graph."""

    @staticmethod
    def forward(ctx, plan: _GatherPlan, *tensors):
        g = plan.g
        count = len(plan.gather)
        inputs, scalars = tensors[:count], tensors[count:]
        needs = [need and plan.grad_enabled for need in ctx.needs_input_grad[1:]]
        local = [x.detach().requires_grad_(need) for x, need in zip(inputs, needs[:count])]
        gathered = []
        for x, blocks, need in zip(inputs, plan.gather, needs[:count]):
            if not blocks:
                gathered.append(None)
                continue
            full = _gather_blocks(g, x.detach(), blocks)
            _hold(full)
            gathered.append(full.requires_grad_(need))
        scalar_leaves = [s.detach().requires_grad_(need) if isinstance(s, Tensor) else s
                         for s, need in zip(scalars, needs[count:])]
        with torch.enable_grad():
            share = plan.compute(local, gathered, scalar_leaves)
        value = share.detach().clone()
        if plan.reduced:
            g.all_reduce(value)
        if any(needs) and share.requires_grad:
            ctx.plan, ctx.share = plan, share
            ctx.leaves = (local, gathered, scalar_leaves)
        else:
            _release(*gathered)
        return value

    @staticmethod
    def backward(ctx, grad):
        plan, g = ctx.plan, ctx.plan.g
        local, gathered, scalars = ctx.leaves
        leaves = [x for x in (*local, *gathered, *scalars)
                  if isinstance(x, Tensor) and x.requires_grad]
        grads = iter(torch.autograd.grad(ctx.share, leaves, grad, allow_unused=True))
        by_leaf = {id(x): next(grads) for x in leaves}
        del ctx.share, grads
        out = [None]
        # A reduced loss is one value every rank holds: for ranks that average their gradients,
        # each gets W times its inputs' share and the scalars' whole gradient.
        replicated = plan.average and plan.reduced
        # The reduce-scatters in input order, then the scalars' all-reduces: the same order on
        # every rank.
        for x, full, blocks in zip(local, gathered, plan.gather):
            if not x.requires_grad:
                out.append(None)
                _release(full)
                continue
            mine = by_leaf.get(id(x))
            total = torch.zeros_like(x, dtype=_accumulation_dtype(x.dtype))
            if mine is not None:
                total += mine
            if blocks:
                full_grad = by_leaf.get(id(full))
                full_grad = (torch.zeros_like(full, dtype=total.dtype) if full_grad is None
                             else full_grad.to(total.dtype))
                _hold(full_grad)
                total += _scatter_blocks(g, full_grad, blocks)
                _release(full_grad, full)
                del full_grad
            out.append((total * g.world if replicated else total).to(x.dtype))
        for s in scalars:
            if isinstance(s, Tensor) and s.requires_grad:
                mine = by_leaf.get(id(s))
                mine = torch.zeros_like(s) if mine is None else mine
                mine = mine.float().reshape(s.shape).clone()
                out.append((g.all_reduce(mine) if replicated else mine).to(s.dtype))
            else:
                out.append(None)
        ctx.leaves = None
        return tuple(out)


def _run_gather(g: _Group, gather: Sequence[int], compute: Callable, reduction: str,
                inputs: Sequence[Tensor], scalars: Sequence[Scalar], average: bool) -> Tensor:
    plan = _GatherPlan(g, gather, compute, reduction != "none", average)
    return _GatherLoss.apply(plan, *inputs, *scalars)


def _share(losses: Sequence[Tensor], reduction: str, rows: int, weight: float) -> Tensor:
    """This rank's share: the calls' sums over the global rows (mean: divided by `rows`), or
    their per-row losses; each call weighted (0.5 for each direction of a symmetric loss)."""
    total = sum(weight * x for x in losses)
    return total / rows if reduction == "mean" else total


def _gpu_options(allow_tf32, tile_rows, tile_cols, logits_dtype, fused_backward) -> dict:
    return dict(allow_tf32=allow_tf32, tile_rows=tile_rows, tile_cols=tile_cols,
                logits_dtype=logits_dtype, fused_backward=fused_backward)


def _per_call_reduction(reduction: str) -> str:
    return "none" if reduction == "none" else "sum"


# ---- InfoNCE ------------------------------------------------------------------------------------


def infonce(q: Tensor, k: Tensor, *, temperature: Scalar = 0.1, similarity: str = "cosine",
            symmetric: bool = False, reduction: str = "mean", eps: float = 1e-12,
            mode: str = "gather", group=None, allow_tf32: bool = False, tile_rows: int = 0,
            tile_cols: int = 0, logits_dtype: str = "f32", fused_backward: bool = True,
            gradient_average: bool = True) -> Tensor:
    """InfoNCE of the global batch: this rank's queries q (b, D) and keys k (b, D), key i being
    query i's positive. The loss of every rank's q against every rank's k, equal on every rank to
    ``contrastive.torch.infonce`` on the concatenated batch (mean over the N = W b rows, or sum;
    reduction="none": this rank's b rows). symmetric=True is CLIP's loss: each query against all
    N keys and each key against all N queries, averaged.

    mode="gather" only (see the module's documentation); group: the process group (the default
    one when None). The options are those of ``contrastive.torch.infonce``.
    """
    call = "contrastive.torch_distributed.infonce"
    gpu = _gpu_options(allow_tf32, tile_rows, tile_cols, logits_dtype, fused_backward)
    options = dict(similarity=similarity, eps=eps, **gpu)

    def local_checks():
        if q.shape != k.shape:
            raise ValueError(f"{call}: q and k must have one shape (b, D) (key i is query i's "
                             f"positive), got {tuple(q.shape)} and {tuple(k.shape)}")
        _probe(lambda q1, k1: _ct.infonce(q1, k1, temperature=_probe_scalar(temperature),
                                         symmetric=symmetric, reduction=reduction, **options),
               q, k)

    g = _prepare(call, group, mode, False, reduction, [("q", q), ("k", k)],
                 [("temperature", temperature)],
                 dict(symmetric=symmetric, reduction=reduction, gradient_average=gradient_average,
                      **options), local_checks)
    rows, offset = g.world * q.shape[0], g.rank * q.shape[0]
    per_call = _per_call_reduction(reduction)

    def compute(local, gathered, scalars):
        (q_local, k_local), (_, k_all), (t,) = local, gathered, scalars
        losses = [_ct.infonce(q_local, k_all, temperature=t, positive_offset=offset,
                              reduction=per_call, **options)]
        if symmetric:
            q_all = gathered[0]
            losses.append(_ct.infonce(k_local, q_all, temperature=t, positive_offset=offset,
                                      reduction=per_call, **options))
        return _share(losses, reduction, rows, 0.5 if symmetric else 1.0)

    return _run_gather(g, (1 if symmetric else 0, 1), compute, reduction, (q, k), (temperature,),
                       gradient_average)


def _probe_scalar(value: Scalar) -> Scalar:
    return value.detach() if isinstance(value, Tensor) else value


# ---- In-batch MNR --------------------------------------------------------------------------------


def mnr_in_batch(anchors: Tensor, candidates: Tensor, *, hard_negatives: Optional[int] = None,
                 scale: Scalar = 20.0, similarity: str = "cosine", symmetric: bool = False,
                 reduction: str = "mean", eps: float = 1e-12, mode: str = "gather", group=None,
                 allow_tf32: bool = False, tile_rows: int = 0, tile_cols: int = 0,
                 logits_dtype: str = "f32", fused_backward: bool = True,
                 gradient_average: bool = True) -> Tensor:
    """In-batch MNR of the global batch (sentence-transformers' MultipleNegativesRankingLoss with
    gather_across_devices=True): this rank's anchors (b, D) and candidates [P; N_1; ...; N_K]
    ((1 + K) b, D). Each anchor ranks its positive against the positives and hard negatives of
    every rank; equal on every rank to ``contrastive.torch.mnr_in_batch`` on the concatenated
    batch (anchors of every rank; candidates [P of every rank; N_1 of every rank; ...]).
    symmetric=True adds each positive ranking its anchor against every rank's anchors
    (MultipleNegativesSymmetricRankingLoss).

    Computed as InfoNCE with temperature 1 / scale (the same logits) against the gathered
    candidates; mode="gather" only.
    """
    call = "contrastive.torch_distributed.mnr_in_batch"
    gpu = _gpu_options(allow_tf32, tile_rows, tile_cols, logits_dtype, fused_backward)
    options = dict(similarity=similarity, eps=eps, **gpu)
    blocks = [0]

    def local_checks():
        batch, rows = anchors.shape[0], candidates.shape[0]
        if anchors.shape[1] != candidates.shape[1]:
            raise ValueError(f"{call}: anchors and candidates must have one D (last dimension), "
                             f"got {anchors.shape[1]} and {candidates.shape[1]}")
        if batch < 1 or rows < batch or rows % batch:
            raise ValueError(f"{call}: candidates must have (1 + K) * b rows for b = {batch} "
                             f"anchors, got {rows}")
        if hard_negatives is not None and int(hard_negatives) != rows // batch - 1:
            raise ValueError(f"{call}: hard_negatives={hard_negatives} does not match "
                             f"candidates of {rows} rows for {batch} anchors")
        blocks[0] = rows // batch
        if isinstance(scale, Tensor) or not (math.isfinite(scale) and scale > 0):
            value = _scalar_value(scale)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{call}: scale must be finite and > 0, got {value}")
        _probe(lambda a1, c1: _ct.mnr_in_batch(a1, c1, scale=_probe_scalar(scale),
                                              symmetric=symmetric, reduction=reduction,
                                              **options), anchors, candidates)

    g = _prepare(call, group, mode, False, reduction,
                 [("anchors", anchors), ("candidates", candidates)], [("scale", scale)],
                 dict(symmetric=symmetric, reduction=reduction, gradient_average=gradient_average,
                      **options), local_checks)
    batch = anchors.shape[0]
    rows, offset = g.world * batch, g.rank * batch
    per_call = _per_call_reduction(reduction)

    def compute(local, gathered, scalars):
        (a_local, c_local), (a_all, c_all), (s,) = local, gathered, scalars
        t = 1.0 / s
        losses = [_ct.infonce(a_local, c_all, temperature=t, positive_offset=offset,
                              reduction=per_call, **options)]
        if symmetric:
            losses.append(_ct.infonce(c_local[:batch], a_all, temperature=t,
                                      positive_offset=offset, reduction=per_call, **options))
        return _share(losses, reduction, rows, 0.5 if symmetric else 1.0)

    return _run_gather(g, (1 if symmetric else 0, blocks[0]), compute, reduction,
                       (anchors, candidates), (scale,), gradient_average)


# ---- SigLIP -------------------------------------------------------------------------------------


def siglip(q: Tensor, k: Tensor, *, scale: Scalar = 10.0, bias: Scalar = -10.0,
           log_scale: bool = False, similarity: str = "cosine", reduction: str = "mean",
           eps: float = 1e-12, mode: str = "gather", group=None, allow_tf32: bool = False,
           tile_rows: int = 0, tile_cols: int = 0, logits_dtype: str = "f32",
           fused_backward: bool = True, gradient_average: bool = True) -> Tensor:
    """SigLIP's sigmoid loss of the global batch: this rank's q (b, D) and k (b, D), key i being
    query i's positive, every other key of every rank a negative. Equal on every rank to
    ``contrastive.torch.siglip`` on the concatenated batch (mean over the N = W b rows of each
    row's sum over the N keys, or sum; reduction="none": this rank's b rows), and to the mean over
    ranks of open_clip's SigLipLoss(rank, world_size).

    mode="gather": one call against the all-gathered keys. mode="ring": the rank's own block, then
    W - 1 negatives-only calls on the other ranks' keys as they pass around the ring (each rank
    holds O(b D) keys at a time). scale is t (log t with log_scale=True) and bias b, each a float
    or a one-element tensor; the other options are those of ``contrastive.torch.siglip``.
    """
    call = "contrastive.torch_distributed.siglip"
    gpu = _gpu_options(allow_tf32, tile_rows, tile_cols, logits_dtype, fused_backward)
    options = dict(log_scale=log_scale, similarity=similarity, eps=eps, **gpu)

    def local_checks():
        if q.shape != k.shape:
            raise ValueError(f"{call}: q and k must have one shape (b, D) (key i is query i's "
                             f"positive), got {tuple(q.shape)} and {tuple(k.shape)}")
        _probe(lambda q1, k1: _ct.siglip(q1, k1, scale=_probe_scalar(scale),
                                        bias=_probe_scalar(bias), reduction=reduction,
                                        **options), q, k)

    g = _prepare(call, group, mode, True, reduction, [("q", q), ("k", k)],
                 [("scale", scale), ("bias", bias)],
                 dict(reduction=reduction, gradient_average=gradient_average, **options),
                 local_checks)
    rows = g.world * q.shape[0]
    if mode == "ring":
        return _SiglipRing.apply(_RingPlan(g, reduction, rows, options, gradient_average), q, k,
                                 scale, bias)
    offset = g.rank * q.shape[0]
    per_call = _per_call_reduction(reduction)

    def compute(local, gathered, scalars):
        (q_local, _), (_, k_all), (t, b) = local, gathered, scalars
        return _share([_ct.siglip(q_local, k_all, scale=t, bias=b, positive_offset=offset,
                                  reduction=per_call, **options)], reduction, rows, 1.0)

    return _run_gather(g, (0, 1), compute, reduction, (q, k), (scale, bias), gradient_average)


class _RingPlan:
    def __init__(self, g: _Group, reduction: str, rows: int, options: dict, average: bool):
        self.g, self.reduction, self.rows, self.options = g, reduction, rows, options
        self.average = average  # gradient_average: see the module's documentation

    def block(self, q: Tensor, keys: Tensor, scale: Scalar, bias: Scalar, own: bool) -> Tensor:
        """The loss of q against one shard of keys: the rank's own (with the positives) or a
        remote one (negatives only); summed over the rows, or per row."""
        return _ct.siglip(q, keys, scale=scale, bias=bias, negatives_only=not own,
                          reduction=_per_call_reduction(self.reduction), **self.options)


class _SiglipRing(torch.autograd.Function):
    """SigLIP over the ring. Forward: W calls, each shard's transfer overlapping the call on the
    previous one; backward: the keys travel again, each shard's gradient accumulator riding one
    hop behind them, and reaches its owner after W hops."""

    @staticmethod
    def forward(ctx, plan: _RingPlan, q: Tensor, k: Tensor, scale: Scalar, bias: Scalar):
        g = plan.g
        q_d, k_d = q.detach(), k.detach().contiguous()
        sc = scale.detach() if isinstance(scale, Tensor) else scale
        bi = bias.detach() if isinstance(bias, Tensor) else bias
        total = None
        current, spare = k_d, None
        with torch.no_grad():
            for step in range(g.world):
                requests = None
                if step < g.world - 1:
                    if spare is None:
                        spare = torch.empty_like(k_d)
                        _hold(spare)
                    requests = g.exchange(current, spare, _KEYS_TAG)
                loss = plan.block(q_d, current, sc, bi, own=step == 0)
                total = loss if total is None else total + loss
                _wait(requests)
                if requests is not None:
                    # The buffer just sent is free again (never the rank's own keys).
                    current, spare = spare, (None if current is k_d else current)
            _release(*(x for x in (current, spare) if x is not None and x is not k_d))
        if plan.reduction == "mean":
            total = total / plan.rows
        if plan.reduction != "none":
            g.all_reduce(total)
        ctx.plan = plan
        ctx.save_for_backward(q, k, *(x for x in (scale, bias) if isinstance(x, Tensor)))
        ctx.scalars = (scale, bias)
        return total

    @staticmethod
    def backward(ctx, grad):
        plan, g = ctx.plan, ctx.plan.g
        saved = list(ctx.saved_tensors)
        q, k = saved[0].detach(), saved[1].detach().contiguous()
        tensors = iter(saved[2:])
        scalars = [next(tensors).detach() if isinstance(value, Tensor) else value
                   for value in ctx.scalars]
        need_q, need_k = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        need_s = ctx.needs_input_grad[3:5]
        weight = grad / plan.rows if plan.reduction == "mean" else grad
        replicated = plan.average and plan.reduction != "none"  # as in _GatherLoss.backward
        factor = g.world if replicated else 1  # on the inputs' gradients
        acc_dtype = _accumulation_dtype(k.dtype)
        grad_q = torch.zeros_like(q, dtype=acc_dtype) if need_q else None
        grad_s = [None, None]
        if grad_q is not None:
            _hold(grad_q)

        current, key_spare = k, None
        acc, acc_spare, acc_requests = None, None, None
        for step in range(g.world):
            key_requests = None
            if step < g.world - 1:
                if key_spare is None:
                    key_spare = torch.empty_like(k)
                    _hold(key_spare)
                key_requests = g.exchange(current, key_spare, _KEYS_TAG)
            leaves = [q.detach().requires_grad_(need_q), current.detach().requires_grad_(need_k),
                      *(s.detach().requires_grad_(need) if isinstance(s, Tensor) else s
                        for s, need in zip(scalars, need_s))]
            with torch.enable_grad():
                loss = plan.block(*leaves[:2], *leaves[2:], own=step == 0)
            targets = [x for x, need in zip(leaves, (need_q, need_k, *need_s)) if need]
            grads = list(torch.autograd.grad(loss, targets,
                                             weight.reshape(loss.shape).to(loss.dtype),
                                             allow_unused=True))
            del loss, leaves, targets
            if need_q:
                dq = grads.pop(0)
                if dq is not None:
                    grad_q += dq
                del dq
            dk = grads.pop(0) if need_k else None
            for index in range(2):
                if need_s[index]:
                    ds = grads.pop(0)
                    if ds is not None:
                        ds = ds.float().reshape(())
                        grad_s[index] = ds if grad_s[index] is None else grad_s[index] + ds
            if need_k:
                if dk is None:
                    dk = torch.zeros_like(k)
                _hold(dk)
                if step == 0:
                    acc = dk.to(acc_dtype, copy=True)
                    _hold(acc)
                else:
                    _wait(acc_requests)  # this shard's accumulator has arrived in acc_spare
                    acc, acc_spare = acc_spare, acc
                    acc += dk
                _release(dk)
                del dk
                if g.world > 1:
                    if acc_spare is None:
                        acc_spare = torch.empty_like(acc)
                        _hold(acc_spare)
                    # One hop on: after the W-th hop each accumulator is back with its owner.
                    acc_requests = g.exchange(acc, acc_spare, _GRADIENT_TAG)
            _wait(key_requests)
            if key_requests is not None:
                current, key_spare = key_spare, (None if current is k else current)
        grad_k = None
        if need_k:
            _wait(acc_requests)
            grad_k = ((acc if g.world == 1 else acc_spare) * factor).to(k.dtype)
            _release(acc, acc_spare)
        _release(*(x for x in (current, key_spare) if x is not None and x is not k))
        if grad_q is not None:
            _release(grad_q)
            grad_q = (grad_q * factor).to(q.dtype)
        out_s = []
        for value, need, total in zip(ctx.scalars, need_s, grad_s):
            if not need:
                out_s.append(None)
                continue
            if total is None:
                total = torch.zeros((), dtype=torch.float32, device=value.device)
            total = g.all_reduce(total.reshape(1)) if replicated else total.reshape(1)
            out_s.append(total.reshape(value.shape).to(value.dtype))
        return (None, grad_q, grad_k, *out_s)
