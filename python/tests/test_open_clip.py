"""contrastive.open_clip.ClipLoss against open_clip's ClipLoss, on the CPU: the same features and
logit scale (the loss, the features' and the learnable scale's gradients), and a tiny CLIP built
in-process (a one-layer vision and text transformer, random weights, no download) trained through
both losses (every parameter's gradient compared); the arguments that are not supported yet.

float32 tolerances: the loss within 1e-5 relative; gradients within 1e-4 relative plus 1e-5 of the
largest entry.

Skipped without open_clip (pip install 'contrastive[open-clip]').
"""

import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
from open_clip import loss as open_clip_loss  # noqa: E402

from contrastive.open_clip import ClipLoss  # noqa: E402

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


def _tiny_clip():
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    torch.manual_seed(0)
    return CLIP(embed_dim=16,
                vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8,
                                         image_size=16),
                text_cfg=CLIPTextCfg(context_length=8, vocab_size=64, width=32, heads=2,
                                     layers=1),
                output_dict=True)


def test_a_tiny_clip_gets_the_same_gradients():
    model = _tiny_clip()
    generator = torch.Generator().manual_seed(4)
    images = torch.randn(5, 3, 16, 16, generator=generator)
    texts = torch.randint(1, 64, (5, 8), generator=generator)
    results = []
    for loss in (ClipLoss(), open_clip_loss.ClipLoss()):
        model.zero_grad()
        out = model(images, texts)  # as open_clip's training loop calls its loss
        value = loss(**out, output_dict=True)["contrastive_loss"]
        value.backward()
        results.append((value.detach(), {name: p.grad.clone() for name, p in
                                         model.named_parameters() if p.grad is not None}))
    (loss, grads), (expected, expected_grads) = results
    assert_close(loss, expected, LOSS_RTOL, LOSS_ATOL, "loss")
    assert grads.keys() == expected_grads.keys() and "logit_scale" in grads
    for name, grad in grads.items():
        assert_close(grad, expected_grads[name], GRAD_RTOL, GRAD_ATOL, name)


def test_several_processes_are_not_supported_yet():
    with pytest.raises(NotImplementedError, match="world_size=2"):
        ClipLoss(local_loss=True, gather_with_grad=True, rank=1, world_size=2)
    ClipLoss(local_loss=True, gather_with_grad=True, world_size=1)  # one process: no effect
    with pytest.raises(ValueError, match="one shape"):
        ClipLoss()(_features(4, 8, 0), _features(5, 8, 1), 10.0)
