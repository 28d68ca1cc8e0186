"""open_clip's losses computed by this library: change one import.

    from contrastive.open_clip import ClipLoss      # was: from open_clip.loss import ClipLoss
    loss = ClipLoss()(image_features, text_features, logit_scale)
    from contrastive.open_clip import SigLipLoss    # was: from open_clip.loss import SigLipLoss
    loss = SigLipLoss()(image_features, text_features, logit_scale, logit_bias)

`ClipLoss` takes open_clip's constructor arguments and forward conventions: the features are the
model's (already normalized) embeddings, compared by dot product; `logit_scale` is the
exponentiated scale (a float or a tensor, e.g. ``model.logit_scale.exp()``, whose gradient flows
back); the loss is the mean of the image-to-text and text-to-image cross-entropies over the B
matching pairs. The library computes it as symmetric in-batch MNR with `scale = logit_scale`
(`contrastive.torch.mnr_in_batch`), on CUDA or CPU tensors, float32 accumulation; when the
features require grad, the loss and their gradients come from one library call.

`SigLipLoss` takes open_clip's constructor arguments and forward conventions too: the features
compared by dot product, `logit_scale` exponentiated (t, e.g. ``model.logit_scale.exp()``) and
`logit_bias` (b, e.g. ``model.logit_bias``), each a float or a tensor whose gradient flows back;
the loss is -sum(logsigmoid(labels * (t image_features @ text_features.T + b))) / B with labels +1
on the diagonal and -1 elsewhere. The library computes it as SigLIP's sigmoid loss
(`contrastive.torch.siglip`, mean over the B rows) in O(B D) memory: no B x B logits are kept for
backward.

Several processes (world_size > 1: open_clip's gathered features, `local_loss`,
`gather_with_grad`, horovod; SigLipLoss's exchanged text features) are not supported yet and raise
NotImplementedError; with one process those arguments change nothing, as in open_clip.
"""

from __future__ import annotations

from typing import Optional, Union

from torch import Tensor, nn

from . import torch as _ct

__all__ = ["ClipLoss", "SigLipLoss"]


class ClipLoss(nn.Module):
    """open_clip's ClipLoss: ``ClipLoss(local_loss=False, gather_with_grad=False,
    cache_labels=False, rank=0, world_size=1, use_horovod=False)``, called as
    ``loss(image_features, text_features, logit_scale, logit_bias=None, output_dict=False)``.
    Returns the loss, or ``{"contrastive_loss": loss}`` with output_dict=True."""

    def __init__(self, local_loss: bool = False, gather_with_grad: bool = False,
                 cache_labels: bool = False, rank: int = 0, world_size: int = 1,
                 use_horovod: bool = False):
        super().__init__()
        if int(world_size) < 1:
            raise ValueError(f"ClipLoss: world_size must be >= 1, got {world_size}")
        if int(world_size) > 1:
            raise NotImplementedError(
                f"ClipLoss: world_size={world_size}: features gathered across processes "
                f"(local_loss, gather_with_grad, horovod) are not supported yet; this loss "
                f"computes one process's batch")
        self.local_loss, self.gather_with_grad = local_loss, gather_with_grad
        self.cache_labels, self.rank, self.world_size = cache_labels, rank, int(world_size)
        self.use_horovod = use_horovod

    def forward(self, image_features: Tensor, text_features: Tensor,
                logit_scale: Union[float, Tensor], logit_bias: Optional[Tensor] = None,
                output_dict: bool = False):
        if image_features.shape != text_features.shape:
            raise ValueError(f"ClipLoss: image_features and text_features must have one shape "
                             f"(B matching pairs), got {tuple(image_features.shape)} and "
                             f"{tuple(text_features.shape)}")
        loss = _ct.mnr_in_batch(image_features, text_features, hard_negatives=0,
                                scale=logit_scale, similarity="dot", symmetric=True)
        if isinstance(logit_bias, Tensor) and logit_bias.requires_grad:
            # One bias added to every logit leaves both softmaxes, so the loss, unchanged: its
            # gradient is 0, as in open_clip, and it stays in the graph.
            loss = loss + 0.0 * logit_bias.sum()
        return {"contrastive_loss": loss} if output_dict else loss


_DIST_IMPLS = ("bidir", "shift", "reduce", "gather")


class SigLipLoss(nn.Module):
    """open_clip's SigLipLoss: ``SigLipLoss(cache_labels=False, rank=0, world_size=1,
    dist_impl=None)``, called as ``loss(image_features, text_features, logit_scale, logit_bias,
    output_dict=False)`` with image_features and text_features (B, D), the B matching pairs.
    Returns the loss, or ``{"contrastive_loss": loss}`` with output_dict=True. A logit_bias of
    None adds no bias, as in open_clip."""

    def __init__(self, cache_labels: bool = False, rank: int = 0, world_size: int = 1,
                 dist_impl: Optional[str] = None):
        super().__init__()
        dist_impl = dist_impl or "bidir"
        if dist_impl not in _DIST_IMPLS:
            raise ValueError(f"SigLipLoss: dist_impl must be one of {list(_DIST_IMPLS)}, got "
                             f"{dist_impl!r}")
        if int(world_size) < 1:
            raise ValueError(f"SigLipLoss: world_size must be >= 1, got {world_size}")
        if int(world_size) > 1:
            raise NotImplementedError(
                f"SigLipLoss: world_size={world_size}: text features exchanged across processes "
                f"(dist_impl={dist_impl!r}) are not supported yet; this loss computes one "
                f"process's batch")
        self.cache_labels, self.rank, self.world_size = cache_labels, rank, int(world_size)
        self.dist_impl = dist_impl

    def forward(self, image_features: Tensor, text_features: Tensor,
                logit_scale: Union[float, Tensor], logit_bias: Optional[Union[float, Tensor]],
                output_dict: bool = False):
        if image_features.shape != text_features.shape:
            raise ValueError(f"SigLipLoss: image_features and text_features must have one shape "
                             f"(B matching pairs), got {tuple(image_features.shape)} and "
                             f"{tuple(text_features.shape)}")
        loss = _ct.siglip(image_features, text_features, scale=logit_scale,
                          bias=0.0 if logit_bias is None else logit_bias, similarity="dot")
        return {"contrastive_loss": loss} if output_dict else loss
