"""sentence-transformers losses computed by this library: change one import and one line.

    from contrastive.sentence_transformers import MultipleNegativesRankingLoss
    loss = MultipleNegativesRankingLoss(model, scale=20.0)  # was: losses.Multiple...(model, ...)

Each class is a subclass of sentence-transformers' loss of the same name, takes the same
constructor arguments and keeps its attributes, configuration and model-card text; only the loss
over the embeddings is computed by `contrastive.torch.mnr_in_batch` (anchors against the
positives and every hard-negative column, cosine or dot similarity times `scale`, float32
accumulation, on CUDA or CPU tensors). When the embeddings require grad, the library computes the
loss and the embeddings' gradients in one call and backward only scales them.

- `MultipleNegativesRankingLoss(model, scale=20.0, similarity_fct=util.cos_sim, ...)`: columns
  (anchor, positive, negative_1, ..., negative_n); each anchor's softmax runs over every positive
  and negative of the batch.
- `MultipleNegativesSymmetricRankingLoss(model, scale=20.0, similarity_fct=util.cos_sim, ...)`:
  adds the positive-to-anchor direction, averaged with the first (sentence-transformers'
  directions ("query_to_doc", "doc_to_query") with partition_mode "per_direction").
- `CachedMultipleNegativesRankingLoss(model, scale=20.0, similarity_fct=util.cos_sim,
  mini_batch_size=32, ...)` and `CachedMultipleNegativesSymmetricRankingLoss`: the GradCache
  scheme of sentence-transformers' cached losses (embed the mini-batches without gradients, the
  loss and the embeddings' gradients over the whole batch in one library call, then re-embed each
  mini-batch with gradients and back-propagate the cached gradients), so the batch is bounded by
  the embeddings' memory, not the model's activations.

What maps: `similarity_fct` util.cos_sim or util.dot_score (or the model's own `similarity` when
its similarity_fn_name is "cosine" or "dot"); directions ("query_to_doc",) or ("query_to_doc",
"doc_to_query") with partition_mode "per_direction"; no hardness weighting; one process (a
gather across devices with more than one process raises NotImplementedError). Anything else is a
ValueError naming the argument, raised at construction.
"""

from __future__ import annotations

import inspect
from typing import List, Sequence

import torch
from torch import Tensor

from . import torch as _ct

try:
    from sentence_transformers import util as _st_util
    try:
        from sentence_transformers.sentence_transformer import losses as _st_losses
    except ImportError:  # releases before the sentence_transformer subpackage
        from sentence_transformers import losses as _st_losses
except ImportError as error:  # pragma: no cover - exercised without the package
    raise ImportError("contrastive.sentence_transformers needs sentence-transformers: "
                      "pip install 'contrastive[sentence-transformers]'") from error

__all__ = ["MultipleNegativesRankingLoss", "MultipleNegativesSymmetricRankingLoss",
           "CachedMultipleNegativesRankingLoss", "CachedMultipleNegativesSymmetricRankingLoss"]

_SYMMETRIC = {"directions": ("query_to_doc", "doc_to_query"), "partition_mode": "per_direction"}
_SIMILARITIES = {"cosine": "cosine", "cos_sim": "cosine", "dot": "dot", "dot_score": "dot"}


def _similarity(loss) -> str:
    """The library's similarity for the loss's similarity_fct, or ValueError."""
    function = loss.similarity_fct
    if function is _st_util.cos_sim:
        return "cosine"
    if function is _st_util.dot_score:
        return "dot"
    owner = getattr(function, "__self__", None)  # model.similarity: the model's own function
    if getattr(function, "__name__", "") == "similarity" and owner is not None:
        name = getattr(owner, "similarity_fn_name", None)
        if name in _SIMILARITIES:
            return _SIMILARITIES[name]
    name = getattr(function, "__qualname__", None) or type(function).__name__
    raise ValueError(f"{type(loss).__name__}: similarity_fct must be sentence_transformers.util."
                     f"cos_sim or util.dot_score (the similarities this library computes), got "
                     f"{name}; use sentence_transformers' own loss for other similarities")


def _symmetric(loss) -> bool:
    """True for the symmetric directions, False for the default; ValueError otherwise."""
    directions = tuple(getattr(loss, "directions", ("query_to_doc",)))
    partition = getattr(loss, "partition_mode", "joint")
    if set(directions) == {"query_to_doc"}:
        return False
    if set(directions) == {"query_to_doc", "doc_to_query"} and partition == "per_direction":
        return True
    raise ValueError(f"{type(loss).__name__}: directions={directions} with "
                     f"partition_mode={partition!r} is not computed by this library; it computes "
                     f"('query_to_doc',) and ('query_to_doc', 'doc_to_query') with "
                     f"partition_mode='per_direction'")


def _check(loss) -> None:
    """The arguments that map to the library (called at construction and on every call, since
    sentence-transformers' attributes may be changed in between)."""
    _similarity(loss)
    _symmetric(loss)
    mode = getattr(loss, "hardness_mode", None)
    if mode is not None and getattr(loss, "hardness_strength", 0.0) > 0.0:
        raise ValueError(f"{type(loss).__name__}: hardness_mode={mode!r} is not computed by this "
                         f"library; leave hardness_mode None (or hardness_strength 0)")


def _single_process(loss) -> None:
    if not getattr(loss, "gather_across_devices", False):
        return
    distributed = torch.distributed
    if (distributed.is_available() and distributed.is_initialized()
            and distributed.get_world_size() > 1):
        raise NotImplementedError(f"{type(loss).__name__}: gather_across_devices with more than "
                                  f"one process is not supported yet")


def _library_loss(loss, queries: Tensor, docs: Sequence[Tensor]) -> Tensor:
    """The mean loss of the anchors against [positives; negatives_1; ...] through the library."""
    _check(loss)
    _single_process(loss)
    docs = list(docs)
    candidates = torch.cat(docs) if len(docs) > 1 else docs[0]
    return _ct.mnr_in_batch(queries, candidates, hard_negatives=len(docs) - 1,
                            scale=float(loss.scale), similarity=_similarity(loss),
                            symmetric=_symmetric(loss))


def _accepts(cls, name: str) -> bool:
    return name in inspect.signature(cls.__init__).parameters


class MultipleNegativesRankingLoss(_st_losses.MultipleNegativesRankingLoss):
    """sentence-transformers' MultipleNegativesRankingLoss (same arguments), computed by this
    library: ``MultipleNegativesRankingLoss(model, scale=20.0, similarity_fct=util.cos_sim, ...)``.
    Columns (anchor, positive, negative_1, ..., negative_n)."""

    def __init__(self, model, scale: float = 20.0, similarity_fct=_st_util.cos_sim, **kwargs):
        super().__init__(model, scale=scale, similarity_fct=similarity_fct, **kwargs)
        _check(self)

    def compute_loss_from_embeddings(self, embeddings: List[Tensor], labels=None) -> Tensor:
        if len(embeddings) < 2:
            raise ValueError(f"{type(self).__name__}: expected at least 2 embedding columns, got "
                             f"{len(embeddings)}")
        return _library_loss(self, embeddings[0], embeddings[1:])


class MultipleNegativesSymmetricRankingLoss(MultipleNegativesRankingLoss):
    """sentence-transformers' MultipleNegativesSymmetricRankingLoss (same arguments), computed by
    this library: each anchor ranks its positive against the batch's candidates, and each positive
    its anchor against the batch's anchors; the two losses are averaged."""

    def __init__(self, model, scale: float = 20.0, similarity_fct=_st_util.cos_sim,
                 gather_across_devices: bool = False):
        base = _st_losses.MultipleNegativesRankingLoss
        symmetric = _SYMMETRIC if _accepts(base, "directions") else {}
        super().__init__(model, scale=scale, similarity_fct=similarity_fct,
                         gather_across_devices=gather_across_devices, **symmetric)
        if not symmetric:  # releases without directions: the attributes the mapping reads
            self.directions, self.partition_mode = (_SYMMETRIC["directions"],
                                                    _SYMMETRIC["partition_mode"])


class CachedMultipleNegativesRankingLoss(_st_losses.CachedMultipleNegativesRankingLoss):
    """sentence-transformers' CachedMultipleNegativesRankingLoss (same arguments, e.g.
    ``mini_batch_size``) with the loss and the embeddings' gradients over the whole batch computed
    by this library in one call (GradCache)."""

    def __init__(self, model, scale: float = 20.0, similarity_fct=_st_util.cos_sim,
                 mini_batch_size: int = 32, **kwargs):
        super().__init__(model, scale=scale, similarity_fct=similarity_fct,
                         mini_batch_size=mini_batch_size, **kwargs)
        _check(self)

    def calculate_loss(self, reps: List[List[Tensor]], labels=None, *,
                       with_backward: bool = False) -> Tensor:
        """The loss over the cached embeddings of every column (lists of mini-batches); with
        with_backward, their gradients land in each mini-batch's .grad (the cache)."""
        if len(reps) < 2:
            raise ValueError(f"{type(self).__name__}: expected at least 2 embedding columns, got "
                             f"{len(reps)}")
        queries = torch.cat(reps[0])
        loss = _library_loss(self, queries, [torch.cat(column) for column in reps[1:]])
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss


class CachedMultipleNegativesSymmetricRankingLoss(CachedMultipleNegativesRankingLoss):
    """sentence-transformers' CachedMultipleNegativesSymmetricRankingLoss (same arguments),
    computed by this library: the symmetric loss with GradCache."""

    def __init__(self, model, scale: float = 20.0, similarity_fct=_st_util.cos_sim,
                 mini_batch_size: int = 32, **kwargs):
        base = _st_losses.CachedMultipleNegativesRankingLoss
        symmetric = _SYMMETRIC if _accepts(base, "directions") else {}
        super().__init__(model, scale=scale, similarity_fct=similarity_fct,
                         mini_batch_size=mini_batch_size, **kwargs, **symmetric)
        if not symmetric:
            self.directions, self.partition_mode = (_SYMMETRIC["directions"],
                                                    _SYMMETRIC["partition_mode"])
