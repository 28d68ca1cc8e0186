"""The losses on CPU tensors: the CPU kernels of contrastive.torch's custom operators.

The same formulas as the library's float64 reference (host/reference/*.cpp), computed in float32
with PyTorch operations: cosine rows are x / max(|x|, eps) with the reference's gradient (the
clamped branch is linear), logits are logit_scale * q_hat . k_hat, symmetric mode averages each
row's loss with its positive column's over the B queries, Repel keeps NaN and divides by the
number of active terms with mean_over_active.

InfoNCE and in-batch MNR walk the B x M logits in chunks of query rows, so their memory stays
O((B + M) D) plus one chunk of CHUNK_ELEMENTS logits (and its dLoss/dlogits); per-anchor MNR and
Repel have only B (1 + n) or B N logits, no more than their inputs.

SigLIP's sigmoid loss has no log-sum-exp: its B x M logits are walked in the same chunks, each
chunk's loss and gradients computed on their own, and backward recomputes the logits.

Each loss has three entry points, all taking float32 tensors:
  forward(inputs, counts, scalars, options) -> (loss, saved)
  backward(inputs, saved, weights, counts, scalars, options) -> (input gradients, scalar
      gradients)
  forward_backward(inputs, counts, scalars, options) -> (loss, saved, input gradients, scalar
      gradients) for an upstream gradient of 1
where `options` is a dict of the loss's options, `scalars` the values of its differentiable
scalars as floats (the temperature or scale, then SigLIP's bias; () for Repel), the scalar
gradients a tuple of (1,) tensors in that order, and `weights` the upstream gradient (shape (1,),
or the unreduced loss's). `saved` is float32: the row log-sum-exp (and the positive columns' in
symmetric mode), Repel's count of active terms, or nothing for SigLIP;
saved_length(shapes, counts, options) is its length, for the fake implementations.
"""

from __future__ import annotations

import math
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

# Logits per chunk of query rows (float32: 16 MiB, and as much again for dLoss/dlogits).
CHUNK_ELEMENTS = 1 << 22


def chunk_rows(columns: int) -> int:
    """Query rows per chunk for rows of `columns` logits."""
    return max(1, CHUNK_ELEMENTS // max(int(columns), 1))


class _Rows(NamedTuple):
    hat: Tensor  # x / max(|x|, eps) for cosine, x for dot
    norms: Optional[Tensor]  # the unclamped norms (cosine), None for dot


def _prepare(x: Tensor, cosine: bool, eps: float) -> _Rows:
    x = x.float()
    if not cosine:
        return _Rows(x, None)
    norms = torch.linalg.vector_norm(x, dim=-1)
    return _Rows(x / norms.clamp_min(eps).unsqueeze(-1), norms)


def _normalize_backward(rows: _Rows, grad: Tensor, eps: float) -> Tensor:
    """d/dx of x / max(|x|, eps) applied to `grad`: (g - hat (hat . g)) / |x| where |x| > eps,
    g / eps on the clamped (linear) branch."""
    if rows.norms is None:
        return grad
    projection = (rows.hat * grad).sum(-1, keepdim=True)
    norms = rows.norms.unsqueeze(-1)
    return torch.where(norms > eps, (grad - rows.hat * projection) / norms, grad / eps)


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return losses
    total = losses.sum().reshape(1)
    return total / losses.numel() if reduction == "mean" else total


def _row_weights(weights: Tensor, reduction: str, count: int) -> Tensor:
    """dLoss/d(term) for each of `count` terms, from the upstream gradient."""
    weights = weights.float()
    if reduction == "none":
        return weights.reshape(-1)
    upstream = weights.reshape(())
    if reduction == "mean":
        upstream = upstream / count
    return upstream.expand(count)


def _ones(reduction: str, shape: Sequence[int]) -> Tensor:
    return torch.ones(tuple(shape) if reduction == "none" else (1,))


# ---- The softmax head over B x M logits (InfoNCE, in-batch MNR) ----------------------------------


class _Statistics(NamedTuple):
    row_lse: Tensor  # (B,)
    col_lse: Optional[Tensor]  # (B,), symmetric only: over the B rows of each positive column
    positive: Tensor  # (B,): the positive logits


class _Gradients(NamedTuple):
    q_hat: Tensor  # dLoss/dq_hat (B, D)
    k_hat: Tensor  # dLoss/dk_hat (M, D)
    sum_grad_logits: Tensor  # sum(dLoss/dlogits * logits), from which the scalar's gradient follows


def _walk(q_hat: Tensor, k_hat: Tensor, logit_scale: float, offset: int, symmetric: bool,
          statistics: Optional[_Statistics] = None, weights: Optional[Tensor] = None):
    """One walk over the logits in chunks of query rows. Without `statistics` it computes them;
    with `weights` (dLoss/d(row loss), B) it computes the gradients, from the given statistics
    or, without symmetric mode, from the ones it computes in the same walk (the column statistics
    need every row first). Returns (statistics, gradients or None)."""
    batch, keys = q_hat.shape[0], k_hat.shape[0]
    computing = statistics is None
    if computing:
        row_lse, positive = q_hat.new_empty(batch), q_hat.new_empty(batch)
        col_lse = q_hat.new_full((batch,), -math.inf) if symmetric else None
    else:
        row_lse, col_lse, positive = statistics
    gradients = None
    if weights is not None:
        if computing and symmetric:
            raise AssertionError("the column statistics are needed before the gradients")
        half = 0.5 if symmetric else 1.0
        weights = weights.float() * half
        grad_q = torch.empty_like(q_hat)
        grad_k = torch.zeros_like(k_hat)
        sum_grad_logits = q_hat.new_zeros(())
    step = chunk_rows(keys)
    for begin in range(0, batch, step):
        end = min(batch, begin + step)
        rows = torch.arange(end - begin)
        positives = rows + begin + offset
        logits = (q_hat[begin:end] @ k_hat.T) * logit_scale
        columns = logits[:, offset:offset + batch]  # the positive columns (symmetric mode)
        if computing:
            row_lse[begin:end] = torch.logsumexp(logits, dim=1)
            positive[begin:end] = logits[rows, positives]
            if symmetric:
                col_lse = torch.logaddexp(col_lse, torch.logsumexp(columns, dim=0))
        if weights is None:
            continue
        w = weights[begin:end]
        g = torch.exp(logits - row_lse[begin:end, None]) * w[:, None]
        g[rows, positives] -= w
        if symmetric:  # w_c (softmax over column c's rows - one-hot) on the positive columns
            g[:, offset:offset + batch] += torch.exp(columns - col_lse[None, :]) * weights[None, :]
            g[rows, positives] -= w
        sum_grad_logits += (g * logits).sum()
        grad_q[begin:end] = (g @ k_hat) * logit_scale
        grad_k.addmm_(g.T, q_hat[begin:end], alpha=logit_scale)
    if weights is not None:
        gradients = _Gradients(grad_q, grad_k, sum_grad_logits)
    return _Statistics(row_lse, col_lse, positive), gradients


def _softmax_losses(statistics: _Statistics) -> Tensor:
    losses = statistics.row_lse - statistics.positive
    if statistics.col_lse is not None:
        losses = 0.5 * (losses + statistics.col_lse - statistics.positive)
    return losses


def _softmax_saved(statistics: _Statistics) -> Tensor:
    parts = [statistics.row_lse] + ([statistics.col_lse] if statistics.col_lse is not None
                                    else [])
    return torch.cat(parts)


def _softmax_statistics(saved: Tensor, batch: int, symmetric: bool) -> _Statistics:
    return _Statistics(saved[:batch], saved[batch:2 * batch] if symmetric else None, None)


def _scale_parameter(value: float, temperature: bool, options) -> Tuple[float, float]:
    """The logit scale s from its parameter (a temperature t, a scale, or with log_scale its log
    theta), clamped at max_scale when that is > 0, and ds/d(parameter): -s^2, 1 or s; 0 where the
    clamp holds (the library's kernels/logit_scalars.hpp, in double)."""
    log_scale = bool(options.get("log_scale", False))
    if log_scale:
        s = math.exp(value)
        derivative = s
    elif temperature:
        s = 1.0 / value
        derivative = -s * s
    else:
        s, derivative = value, 1.0
    max_scale = float(options.get("max_scale", 0.0))
    if max_scale > 0.0 and s > max_scale:
        return max_scale, 0.0
    return s, derivative


class _SoftmaxLoss:
    """InfoNCE (logit scale 1 / temperature) and in-batch MNR (logit scale `scale`, positives at
    offset 0): the same head over q (B, D) and k (M, D)."""

    def __init__(self, temperature: bool):
        self.temperature = temperature

    def _setup(self, inputs, scalars, options):
        (scalar,) = scalars
        q, k = inputs
        cosine = options["similarity"] == "cosine"
        eps = options["eps"]
        q_rows, k_rows = _prepare(q, cosine, eps), _prepare(k, cosine, eps)
        logit_scale, _ = _scale_parameter(scalar, self.temperature, options)
        offset = options.get("positive_offset", 0)
        return q_rows, k_rows, logit_scale, offset, bool(options["symmetric"])

    @staticmethod
    def saved_length(shapes, counts, options):
        return shapes[0][0] * (2 if options["symmetric"] else 1)

    def forward(self, inputs, counts, scalars, options):
        q_rows, k_rows, logit_scale, offset, symmetric = self._setup(inputs, scalars, options)
        statistics, _ = _walk(q_rows.hat, k_rows.hat, logit_scale, offset, symmetric)
        return (_reduce(_softmax_losses(statistics), options["reduction"]),
                _softmax_saved(statistics))

    def _gradients(self, q_rows, k_rows, logit_scale, gradients, scalar, options):
        eps = options["eps"]
        # logits = s sim: dLoss/ds = sum(G logits) / s, times ds/d(the parameter)
        _, derivative = _scale_parameter(scalar, self.temperature, options)
        grad_scalar = gradients.sum_grad_logits.reshape(1) / logit_scale * derivative
        return ((_normalize_backward(q_rows, gradients.q_hat, eps),
                 _normalize_backward(k_rows, gradients.k_hat, eps)), (grad_scalar,))

    def backward(self, inputs, saved, weights, counts, scalars, options):
        q_rows, k_rows, logit_scale, offset, symmetric = self._setup(inputs, scalars, options)
        batch = q_rows.hat.shape[0]
        statistics = _softmax_statistics(saved, batch, symmetric)
        w = _row_weights(weights, options["reduction"], batch)
        _, gradients = _walk(q_rows.hat, k_rows.hat, logit_scale, offset, symmetric, statistics, w)
        return self._gradients(q_rows, k_rows, logit_scale, gradients, scalars[0], options)

    def forward_backward(self, inputs, counts, scalars, options):
        q_rows, k_rows, logit_scale, offset, symmetric = self._setup(inputs, scalars, options)
        batch = q_rows.hat.shape[0]
        reduction = options["reduction"]
        w = _row_weights(_ones(reduction, (batch,)), reduction, batch)
        if symmetric:  # the column statistics first, then the gradients: two walks
            statistics, _ = _walk(q_rows.hat, k_rows.hat, logit_scale, offset, True)
            _, gradients = _walk(q_rows.hat, k_rows.hat, logit_scale, offset, True, statistics, w)
        else:  # statistics and gradients chunk by chunk, in one walk
            statistics, gradients = _walk(q_rows.hat, k_rows.hat, logit_scale, offset, False,
                                          weights=w)
        grads, grad_scalars = self._gradients(q_rows, k_rows, logit_scale, gradients, scalars[0],
                                              options)
        return (_reduce(_softmax_losses(statistics), reduction), _softmax_saved(statistics),
                grads, grad_scalars)


# ---- Per-anchor MNR ------------------------------------------------------------------------------


class _PerAnchor:
    """Anchors (B, D), positives (B, D), negatives (B, n, D): row b's softmax over its positive
    and its own n negatives, logits scale * sim."""

    @staticmethod
    def saved_length(shapes, counts, options):
        return shapes[0][0]

    @staticmethod
    def _setup(inputs, options):
        anchors, positives, negatives = inputs
        cosine, eps = options["similarity"] == "cosine", options["eps"]
        return (_prepare(anchors, cosine, eps), _prepare(positives, cosine, eps),
                _prepare(negatives, cosine, eps))

    @staticmethod
    def _logits(a, p, n, scale):
        positive = (a.hat * p.hat).sum(-1, keepdim=True)
        negative = torch.bmm(n.hat, a.hat.unsqueeze(-1)).squeeze(-1)
        return torch.cat([positive, negative], dim=1) * scale  # (B, 1 + n)

    def forward(self, inputs, counts, scalars, options):
        (scalar,) = scalars
        a, p, n = self._setup(inputs, options)
        logits = self._logits(a, p, n, scalar)
        row_lse = torch.logsumexp(logits, dim=1)
        return _reduce(row_lse - logits[:, 0], options["reduction"]), row_lse

    def backward(self, inputs, saved, weights, counts, scalars, options):
        (scalar,) = scalars
        a, p, n = self._setup(inputs, options)
        return self._gradients(a, p, n, self._logits(a, p, n, scalar), saved, weights, scalar,
                               options)

    @staticmethod
    def _gradients(a, p, n, logits, row_lse, weights, scale, options):
        eps = options["eps"]
        w = _row_weights(weights, options["reduction"], logits.shape[0])
        g = torch.exp(logits - row_lse[:, None]) * w[:, None]
        g[:, 0] -= w
        grad_scale = ((g * logits).sum() / scale).reshape(1)
        g = g * scale
        grad_a = g[:, :1] * p.hat + torch.bmm(g[:, None, 1:], n.hat).squeeze(1)
        grad_p = g[:, :1] * a.hat
        grad_n = g[:, 1:, None] * a.hat[:, None, :]
        return ((_normalize_backward(a, grad_a, eps), _normalize_backward(p, grad_p, eps),
                 _normalize_backward(n, grad_n, eps)), (grad_scale,))

    def forward_backward(self, inputs, counts, scalars, options):
        (scalar,) = scalars
        a, p, n = self._setup(inputs, options)
        logits = self._logits(a, p, n, scalar)
        row_lse = torch.logsumexp(logits, dim=1)
        reduction = options["reduction"]
        grads, grad_scales = self._gradients(a, p, n, logits, row_lse,
                                             _ones(reduction, (logits.shape[0],)), scalar, options)
        return _reduce(row_lse - logits[:, 0], reduction), row_lse, grads, grad_scales


# ---- Repel ---------------------------------------------------------------------------------------


class _Repel:
    """Anchors (B, D), negatives (B, N, D): max(cos - margin, 0) per pair, NaN kept; the margin
    has no gradient. saved holds the number of active terms (cos - margin > 0)."""

    @staticmethod
    def saved_length(shapes, counts, options):
        return 1

    @staticmethod
    def _setup(inputs, options):
        anchors, negatives = inputs
        eps = options["eps"]
        a, n = _prepare(anchors, True, eps), _prepare(negatives, True, eps)
        similarities = torch.bmm(n.hat, a.hat.unsqueeze(-1)).squeeze(-1)  # (B, N)
        active = similarities - options["margin"] > 0
        return a, n, similarities, active

    def forward(self, inputs, counts, scalars, options):
        _, _, similarities, active = self._setup(inputs, options)
        return self._loss(similarities, active, options)

    @staticmethod
    def _loss(similarities, active, options):
        terms = torch.where(active, similarities - options["margin"],
                            torch.zeros_like(similarities))
        terms = torch.where(torch.isnan(similarities), similarities, terms)
        count = active.sum().float().reshape(1)
        reduction = options["reduction"]
        if reduction == "mean" and options["mean_over_active"]:
            # With no active term every term is 0 (or NaN, which stays): 0 / 1.
            loss = terms.sum().reshape(1) / count.clamp_min(1.0)
        else:
            loss = _reduce(terms, reduction)
        return loss, count

    @staticmethod
    def _gradients(a, n, similarities, active, count, weights, options):
        eps = options["eps"]
        reduction = options["reduction"]
        if options["mean_over_active"]:  # the count is piecewise constant: no gradient through it
            w = (weights.float().reshape(()) / count.reshape(()).clamp_min(1.0)).expand(
                similarities.shape)
        else:
            w = _row_weights(weights, reduction, similarities.numel()).reshape(similarities.shape)
        g = torch.where(active, w, torch.zeros_like(w))
        g = torch.where(torch.isnan(similarities), similarities, g)
        grad_a = torch.bmm(g.unsqueeze(1), n.hat).squeeze(1)
        grad_n = g.unsqueeze(-1) * a.hat.unsqueeze(1)
        return ((_normalize_backward(a, grad_a, eps), _normalize_backward(n, grad_n, eps)), ())

    def backward(self, inputs, saved, weights, counts, scalars, options):
        a, n, similarities, active = self._setup(inputs, options)
        return self._gradients(a, n, similarities, active, saved, weights, options)

    def forward_backward(self, inputs, counts, scalars, options):
        a, n, similarities, active = self._setup(inputs, options)
        loss, count = self._loss(similarities, active, options)
        ones = _ones(options["reduction"], similarities.shape)
        grads, _ = self._gradients(a, n, similarities, active, count, ones, options)
        return loss, count, grads, ()


# ---- SigLIP: the pairwise sigmoid loss over B x M logits -----------------------------------------


def _softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)) without overflow at large |x|: max(x, 0) + log1p(exp(-|x|)); NaN stays."""
    return torch.relu(x) + torch.log1p(torch.exp(-x.abs()))


class _SigLIP:
    """q (B, D) against k (M, D): logits l_ij = t sim(q_i, k_j) + b, label +1 at the positive key
    i + positive_offset (none with negatives_only) and -1 elsewhere, row loss
    sum_j softplus(-z_ij l_ij). dLoss/dl_ij = w_i (sigmoid(l_ij) - y_ij) with y the 0/1 label,
    written -sigmoid(-l) for the positive so that a confident positive loses no digits.
    The scale's gradient is sum(G sim), times t for the log scale; the bias's is sum(G). Chunks
    of query rows are independent: nothing is saved, backward recomputes the logits."""

    @staticmethod
    def saved_length(shapes, counts, options):
        return 0

    @staticmethod
    def _setup(inputs, scalars, options):
        q, k = inputs
        scale, bias = scalars
        cosine, eps = options["similarity"] == "cosine", options["eps"]
        t, _ = _scale_parameter(scale, False, options)
        return _prepare(q, cosine, eps), _prepare(k, cosine, eps), t, bias

    @staticmethod
    def _walk(q_hat: Tensor, k_hat: Tensor, t: float, bias: float, options,
              weights: Optional[Tensor]):
        """Row losses (B,) and, with `weights` (dLoss/d(row loss), B), the gradients of q_hat,
        k_hat, sum(G sim) and sum(G)."""
        batch, keys = q_hat.shape[0], k_hat.shape[0]
        offset = options["positive_offset"]
        positives = not options["negatives_only"]
        losses = q_hat.new_empty(batch)
        if weights is not None:
            weights = weights.float()
            grad_q, grad_k = torch.empty_like(q_hat), torch.zeros_like(k_hat)
            sum_grad_sim, sum_grad = q_hat.new_zeros(()), q_hat.new_zeros(())
        step = chunk_rows(keys)
        for begin in range(0, batch, step):
            end = min(batch, begin + step)
            rows = torch.arange(end - begin)
            columns = rows + begin + offset
            sim = q_hat[begin:end] @ k_hat.T
            logits = sim * t + bias
            terms = _softplus(logits)
            if positives:
                terms[rows, columns] = _softplus(-logits[rows, columns])
            losses[begin:end] = terms.sum(dim=1)
            if weights is None:
                continue
            w = weights[begin:end]
            g = torch.sigmoid(logits)
            if positives:
                g[rows, columns] = -torch.sigmoid(-logits[rows, columns])
            g *= w[:, None]
            sum_grad_sim += (g * sim).sum()
            sum_grad += g.sum()
            grad_q[begin:end] = (g @ k_hat) * t
            grad_k.addmm_(g.T, q_hat[begin:end], alpha=t)
        if weights is None:
            return losses, None
        return losses, (grad_q, grad_k, sum_grad_sim, sum_grad)

    @staticmethod
    def _gradients(q_rows, k_rows, scale, walked, options):
        grad_q, grad_k, sum_grad_sim, sum_grad = walked
        eps = options["eps"]
        grad_scale = sum_grad_sim * _scale_parameter(scale, False, options)[1]  # dt/d(parameter)
        grads = (_normalize_backward(q_rows, grad_q, eps), _normalize_backward(k_rows, grad_k, eps))
        return grads, (grad_scale.reshape(1), sum_grad.reshape(1))

    def forward(self, inputs, counts, scalars, options):
        q_rows, k_rows, t, bias = self._setup(inputs, scalars, options)
        losses, _ = self._walk(q_rows.hat, k_rows.hat, t, bias, options, None)
        return _reduce(losses, options["reduction"]), losses.new_empty(0)

    def backward(self, inputs, saved, weights, counts, scalars, options):
        q_rows, k_rows, t, bias = self._setup(inputs, scalars, options)
        w = _row_weights(weights, options["reduction"], q_rows.hat.shape[0])
        _, walked = self._walk(q_rows.hat, k_rows.hat, t, bias, options, w)
        return self._gradients(q_rows, k_rows, scalars[0], walked, options)

    def forward_backward(self, inputs, counts, scalars, options):
        q_rows, k_rows, t, bias = self._setup(inputs, scalars, options)
        batch, reduction = q_rows.hat.shape[0], options["reduction"]
        w = _row_weights(_ones(reduction, (batch,)), reduction, batch)
        losses, walked = self._walk(q_rows.hat, k_rows.hat, t, bias, options, w)
        grads, grad_scalars = self._gradients(q_rows, k_rows, scalars[0], walked, options)
        return _reduce(losses, reduction), losses.new_empty(0), grads, grad_scalars


KERNELS: Dict[str, object] = {
    "infonce": _SoftmaxLoss(temperature=True),
    "mnr_in_batch": _SoftmaxLoss(temperature=False),
    "mnr_per_anchor": _PerAnchor(),
    "repel": _Repel(),
    "siglip": _SigLIP(),
}
"""The CPU kernels by loss name (a loss without an entry has no CPU implementation)."""


def kernels_for(name: str):
    return KERNELS.get(name)


__all__: Tuple[str, ...] = ("CHUNK_ELEMENTS", "KERNELS", "chunk_rows", "kernels_for")
