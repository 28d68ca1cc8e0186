"""contrastive.open_clip.ClipLoss and SigLipLoss against open_clip's ClipLoss and SigLipLoss, on
the CPU: the same features, logit scale and (SigLIP) logit bias (the loss, the features' and the
learnable scale's and bias's gradients), and a tiny CLIP built in-process (a one-layer vision and
text transformer, random weights, no download) trained through both losses (every parameter's
gradient compared, model.logit_scale and model.logit_bias included); the arguments that are not
supported yet.

float32 tolerances, for both losses: the loss within 1e-5 relative; gradients within 1e-4 relative
plus 1e-5 of the largest entry (as 1e-5 times max(1, largest) absolute).

Skipped without open_clip (pip install 'contrastive[open-clip]').
"""

import inspect
import math

import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
from open_clip import loss as open_clip_loss  # noqa: E402

from contrastive.open_clip import ClipLoss, SigLipLoss  # noqa: E402

LOSS_RTOL, LOSS_ATOL = 1e-5, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-5


def assert_close(actual, expected, rtol, atol, what):
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol * scale,
                               msg=lambda message: f"{what}: {message}")


def _features(batch, dim, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dim, generator=generator)
    return x / x.norm(dim=-1, keepdim=True)  # open_clip's models normalize their features


@pytest.mark.parametrize("batch,dim,scale", [(8, 16, 1 / 0.07), (1, 4, 10.0), (33, 64, 100.0)])
@pytest.mark.parametrize("output_dict", [False, True])
def test_clip_loss_matches_open_clip(batch, dim, scale, output_dict):
    image, text = _features(batch, dim, 0), _features(batch, dim, 1)
    results = []
    for loss in (ClipLoss(), open_clip_loss.ClipLoss()):
        log_scale = torch.tensor(float(torch.log(torch.tensor(scale))), requires_grad=True)
        leaves = [image.clone().requires_grad_(), text.clone().requires_grad_()]
        value = loss(*leaves, log_scale.exp(), output_dict=output_dict)
        if output_dict:
            assert list(value) == ["contrastive_loss"]
            value = value["contrastive_loss"]
        assert value.shape == () and value.dtype == torch.float32
        (2.0 * value).backward()
        results.append((value.detach(), leaves[0].grad, leaves[1].grad, log_scale.grad))
    ours, theirs = results
    assert_close(ours[0], theirs[0], LOSS_RTOL, LOSS_ATOL, "loss")
    for what, grad, expected in zip(("image", "text", "log scale"), ours[1:], theirs[1:]):
        assert_close(grad, expected, GRAD_RTOL, GRAD_ATOL, f"gradient of the {what}")


def test_a_float_logit_scale_and_a_bias():
    image, text = _features(6, 8, 2), _features(6, 8, 3)
    expected = open_clip_loss.ClipLoss()(image, text, 20.0)
    assert_close(ClipLoss()(image, text, 20.0), expected, LOSS_RTOL, LOSS_ATOL, "loss")
    bias = torch.tensor(-3.0, requires_grad=True)  # shifts every logit: the loss is unchanged
    loss = ClipLoss()(image, text, 20.0, logit_bias=bias)
    assert_close(loss.detach(), expected, LOSS_RTOL, LOSS_ATOL, "loss with a bias")
    loss.backward()
    assert bias.grad is not None and float(bias.grad) == 0.0


def _tiny_clip(**logit_init):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    torch.manual_seed(0)
    return CLIP(embed_dim=16,
                vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8,
                                         image_size=16),
                text_cfg=CLIPTextCfg(context_length=8, vocab_size=64, width=32, heads=2,
                                     layers=1),
                output_dict=True, **logit_init)


@pytest.mark.parametrize("pair", ["clip", "siglip"])
def test_a_tiny_clip_gets_the_same_gradients(pair):
    """open_clip's training step: loss(**model(images, texts)); SigLIP's model has a learnable
    logit_bias (-10) and logit scale (log 10) that reach the loss as model.logit_scale.exp() and
    model.logit_bias."""
    if pair == "clip":
        model, losses = _tiny_clip(), (ClipLoss(), open_clip_loss.ClipLoss())
    else:
        model = _tiny_clip(init_logit_scale=math.log(10.0), init_logit_bias=-10.0)
        losses = (SigLipLoss(), open_clip_loss.SigLipLoss())
    generator = torch.Generator().manual_seed(4)
    images = torch.randn(5, 3, 16, 16, generator=generator)
    texts = torch.randint(1, 64, (5, 8), generator=generator)
    results = []
    for loss in losses:
        model.zero_grad()
        out = model(images, texts)  # as open_clip's training loop calls its loss
        value = loss(**out, output_dict=True)["contrastive_loss"]
        value.backward()
        results.append((value.detach(), {name: p.grad.clone() for name, p in
                                         model.named_parameters() if p.grad is not None}))
    (loss, grads), (expected, expected_grads) = results
    assert_close(loss, expected, LOSS_RTOL, LOSS_ATOL, "loss")
    assert grads.keys() == expected_grads.keys() and "logit_scale" in grads
    assert pair == "clip" or "logit_bias" in grads
    for name, grad in grads.items():
        assert_close(grad, expected_grads[name], GRAD_RTOL, GRAD_ATOL, name)


def test_several_processes_are_not_supported_yet():
    with pytest.raises(NotImplementedError, match="world_size=2"):
        ClipLoss(local_loss=True, gather_with_grad=True, rank=1, world_size=2)
    ClipLoss(local_loss=True, gather_with_grad=True, world_size=1)  # one process: no effect
    with pytest.raises(ValueError, match="one shape"):
        ClipLoss()(_features(4, 8, 0), _features(5, 8, 1), 10.0)


# ---- SigLipLoss ---------------------------------------------------------------------------------


@pytest.mark.parametrize("batch,dim,log_scale,bias", [(8, 16, 2.302585, -10.0), (1, 4, 0.0, 0.0),
                                                      (33, 64, 4.0, -5.0), (6, 8, 1.0, 2.5)])
@pytest.mark.parametrize("output_dict", [False, True])
def test_siglip_loss_matches_open_clip(batch, dim, log_scale, bias, output_dict):
    """A learnable log scale (passed exponentiated, as open_clip's models do) and bias: the loss
    and the gradients of both features, the log scale and the bias."""
    image, text = _features(batch, dim, 5), _features(batch, dim, 6)
    results = []
    for loss in (SigLipLoss(), open_clip_loss.SigLipLoss()):
        scale = torch.tensor(log_scale, requires_grad=True)
        logit_bias = torch.tensor(bias, requires_grad=True)
        leaves = [image.clone().requires_grad_(), text.clone().requires_grad_()]
        value = loss(*leaves, scale.exp(), logit_bias, output_dict=output_dict)
        if output_dict:
            assert list(value) == ["contrastive_loss"]
            value = value["contrastive_loss"]
        assert value.shape == () and value.dtype == torch.float32
        (0.5 * value).backward()
        results.append((value.detach(), leaves[0].grad, leaves[1].grad, scale.grad,
                        logit_bias.grad))
    ours, theirs = results
    assert_close(ours[0], theirs[0], LOSS_RTOL, LOSS_ATOL, "loss")
    for what, grad, expected in zip(("image", "text", "log scale", "bias"), ours[1:], theirs[1:]):
        assert_close(grad, expected, GRAD_RTOL, GRAD_ATOL, f"gradient of the {what}")


def test_siglip_loss_with_floats_and_no_bias():
    image, text = _features(7, 8, 7), _features(7, 8, 8)
    expected = open_clip_loss.SigLipLoss()(image, text, 10.0, -10.0)
    assert_close(SigLipLoss()(image, text, 10.0, -10.0), expected, LOSS_RTOL, LOSS_ATOL, "loss")
    expected = open_clip_loss.SigLipLoss()(image, text, 3.0, None)
    assert_close(SigLipLoss()(image, text, 3.0, None), expected, LOSS_RTOL, LOSS_ATOL,
                 "loss without a bias")


def test_siglip_loss_takes_open_clips_constructor():
    ours = inspect.signature(SigLipLoss.__init__).parameters
    theirs = inspect.signature(open_clip_loss.SigLipLoss.__init__).parameters
    assert list(ours) == list(theirs)
    assert list(inspect.signature(SigLipLoss.forward).parameters) == list(
        inspect.signature(open_clip_loss.SigLipLoss.forward).parameters)
    loss = SigLipLoss(cache_labels=True, rank=0, world_size=1, dist_impl="shift")
    assert (loss.cache_labels, loss.rank, loss.world_size, loss.dist_impl) == (True, 0, 1, "shift")
    assert SigLipLoss().dist_impl == open_clip_loss.SigLipLoss().dist_impl == "bidir"
    with pytest.raises(NotImplementedError, match="world_size=4"):
        SigLipLoss(rank=1, world_size=4)
    with pytest.raises(ValueError, match="dist_impl must be one of"):
        SigLipLoss(dist_impl="ring")
    with pytest.raises(ValueError, match="one shape"):
        SigLipLoss()(_features(4, 8, 0), _features(5, 8, 1), 10.0, -10.0)
