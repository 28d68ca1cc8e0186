"""contrastive.cupy and contrastive.jax on a GPU: every loss, forward and forward_backward (for JAX:
forward and backward custom calls, through jax.vjp), against the float64 reference
(contrastive.reference) in float32 and 16-bit dtypes, plus streams, layouts and dtype errors.
test_jax_layer.py runs contrastive.jax under jit and grad on the CPU and, with a GPU, on the GPU.

The CuPy tests are skipped without CuPy, the JAX tests without JAX or its GPU backend, and both when
the library finds no usable GPU (the reason is in the skip message).
"""

import numpy as np
import pytest

import contrastive
from contrastive import reference

LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-5  # float32 GPU against the float64 reference
GRAD_RTOL, GRAD_ATOL = 1e-3, 1e-4  # the absolute part scales with the gradient's largest entry


def _library_skip_reason():
    if contrastive.gpu_available():
        return None
    try:
        contrastive.handle_for(0)
    except RuntimeError as error:
        return f"the library has no usable GPU: {error}"
    return "contrastive.gpu_available() is False"


class Framework:
    """What a test needs of CuPy or JAX: the layer, arrays to and from NumPy, and the NumPy types
    of the 16-bit dtypes it has (by the library's names)."""

    def __init__(self, name, layer, to_device, to_numpy, half_dtypes):
        self.name, self.layer = name, layer
        self.to_device, self.to_numpy = to_device, to_numpy
        self.half_dtypes = half_dtypes


@pytest.fixture(scope="module")
def cupy_framework():
    cupy = pytest.importorskip("cupy")
    reason = _library_skip_reason()
    if reason:
        pytest.skip(reason)
    from contrastive import cupy as layer
    return Framework("cupy", layer,
                     lambda x, dtype=np.float32: cupy.asarray(np.asarray(x).astype(dtype)),
                     cupy.asnumpy, {"f16": np.float16})  # CuPy has no bfloat16


@pytest.fixture(scope="module")
def jax_framework():
    jax = pytest.importorskip("jax")
    reason = _library_skip_reason()
    if reason:
        pytest.skip(reason)
    try:
        device = jax.devices("gpu")[0]
    except RuntimeError as error:
        pytest.skip(f"JAX has no GPU backend: {error}")
    import jax.numpy as jnp
    try:
        from contrastive import jax as layer
    except ImportError as error:
        pytest.skip(f"contrastive.jax does not import: {error}")

    def to_device(x, dtype=np.float32):
        return jax.device_put(np.asarray(x).astype(dtype), device)

    return Framework("jax", _JaxAsCupy(jax, layer, device), to_device, np.asarray,
                     {"f16": np.float16, "bf16": jnp.bfloat16})


class _JaxAsCupy:
    """contrastive.jax (functions that return the loss, differentiated with JAX) in the form of
    contrastive.cupy: (loss, *input gradients, *scalar gradients) for an upstream gradient of 1
    per term, or the loss alone with with_grad=False. The gradients come from jax.vjp through the
    layer's custom calls, with the temperature or scale (and SigLIP's bias) passed as arrays so
    that they get their gradients."""

    def __init__(self, jax, layer, device):
        from contrastive import _losses
        self._jax, self._layer, self._device = jax, layer, device
        self._descriptions = {loss.name: loss for loss in _losses.ALL}

    def __getattr__(self, name):
        jax, function = self._jax, getattr(self._layer, name)
        scalars = self._descriptions[name].scalars

        def call(*arrays, with_grad=True, **options):
            loss = function(*arrays, **options)  # checks the arguments, as the CuPy functions do
            if not with_grad:
                return loss
            if not scalars:
                _, vjp = jax.vjp(lambda *xs: function(*xs, **options), *arrays)
                return (loss, *vjp(jax.numpy.ones_like(loss)))
            values = tuple(jax.device_put(np.float32(options.pop(scalar.name, scalar.default)),
                                          self._device) for scalar in scalars)
            names = [scalar.name for scalar in scalars]
            _, vjp = jax.vjp(lambda ts, *xs: function(*xs, **options, **dict(zip(names, ts))),
                             values, *arrays)
            grad_scalars, *grads = vjp(jax.numpy.ones_like(loss))
            return (loss, *grads, *grad_scalars)

        return call


@pytest.fixture(params=["cupy", "jax"])
def framework(request):
    return request.getfixturevalue(f"{request.param}_framework")


# (function, input shapes, options, the reference's gradient keys in the order the layer returns
# them); the inputs are random normal values.
GPU_ONLY_OPTIONS = {"tile_rows", "tile_cols", "allow_tf32"}  # how, not what: not the reference's
CASES = {
    "infonce": ("infonce", [(6, 8), (9, 8)],
                dict(temperature=0.2, symmetric=True, positive_offset=2),
                ["grad_q", "grad_k", "grad_temperature"]),
    "infonce_none_dot": ("infonce", [(5, 16), (5, 16)],
                         dict(temperature=2.0, similarity="dot", reduction="none"),
                         ["grad_q", "grad_k", "grad_temperature"]),
    "infonce_tiled": ("infonce", [(33, 24), (40, 24)],
                      dict(temperature=0.1, reduction="sum", tile_rows=8, tile_cols=16),
                      ["grad_q", "grad_k", "grad_temperature"]),
    "mnr_per_anchor": ("mnr_per_anchor", [(4, 8), (4, 8), (4, 3, 8)],
                       dict(scale=2.0, similarity="cosine"),
                       ["grad_anchors", "grad_positives", "grad_negatives", "grad_scale"]),
    "mnr_per_anchor_none": ("mnr_per_anchor", [(3, 8), (3, 8), (3, 5, 8)],
                            dict(scale=1.0, similarity="dot", reduction="none"),
                            ["grad_anchors", "grad_positives", "grad_negatives", "grad_scale"]),
    "mnr_in_batch": ("mnr_in_batch", [(4, 8), (12, 8)], dict(scale=20.0, symmetric=True),
                     ["grad_anchors", "grad_candidates", "grad_scale"]),
    "mnr_in_batch_none": ("mnr_in_batch", [(5, 8), (5, 8)], dict(scale=20.0, reduction="none"),
                          ["grad_anchors", "grad_candidates", "grad_scale"]),
    "repel": ("repel", [(2, 4), (2, 3, 4)], dict(margin=0.3),
              ["grad_anchors", "grad_negatives"]),
    "repel_none": ("repel", [(3, 8), (3, 4, 8)], dict(margin=0.1, reduction="none"),
                   ["grad_anchors", "grad_negatives"]),
    "repel_mean_over_active": ("repel", [(4, 8), (4, 3, 8)],
                               dict(margin=0.2, mean_over_active=True),
                               ["grad_anchors", "grad_negatives"]),
    "siglip": ("siglip", [(6, 8), (9, 8)], dict(scale=5.0, bias=-2.0, positive_offset=2),
               ["grad_q", "grad_k", "grad_scale", "grad_bias"]),
    "siglip_none_dot_negatives_only": ("siglip", [(5, 16), (3, 16)],
                                       dict(scale=0.5, bias=0.5, similarity="dot",
                                            negatives_only=True, reduction="none"),
                                       ["grad_q", "grad_k", "grad_scale", "grad_bias"]),
    "siglip_tiled_log_scale": ("siglip", [(33, 24), (40, 24)],
                               dict(scale=2.302585, bias=-10.0, log_scale=True, reduction="sum",
                                    tile_rows=8, tile_cols=16),
                               ["grad_q", "grad_k", "grad_scale", "grad_bias"]),
}


def assert_close(actual, expected, rtol, atol, what):
    actual = np.asarray(actual, dtype=np.float64).reshape(-1)
    expected = np.asarray(expected, dtype=np.float64).reshape(-1)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


def inputs_for(shapes):
    generator = np.random.default_rng(0)
    # float32 values, so the reference sees exactly what the GPU sees
    return [generator.standard_normal(shape).astype(np.float32) for shape in shapes]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_the_reference(framework, case):
    function, shapes, options, gradient_keys = case
    inputs = inputs_for(shapes)
    expected = getattr(reference, function)(
        *inputs, **{key: value for key, value in options.items() if key not in GPU_ONLY_OPTIONS})
    arrays = [framework.to_device(x) for x in inputs]

    loss, *grads = getattr(framework.layer, function)(*arrays, **options)
    per_term = options.get("reduction") == "none"
    assert (framework.to_numpy(loss).ndim > 0) == per_term
    assert_close(framework.to_numpy(loss), expected["loss"], LOSS_RTOL, LOSS_ATOL, "loss")
    assert len(grads) == len(gradient_keys)
    for index, (key, grad) in enumerate(zip(gradient_keys, grads)):
        grad = framework.to_numpy(grad)
        # one gradient per input, in its shape; then each scalar's (temperature or scale, bias),
        # 0-d
        assert grad.shape == (inputs[index].shape if index < len(inputs) else ()), key
        assert_close(grad, expected[key], GRAD_RTOL, GRAD_ATOL, key)

    forward_only = getattr(framework.layer, function)(*arrays, **options, with_grad=False)
    assert_close(framework.to_numpy(forward_only), expected["loss"], LOSS_RTOL, LOSS_ATOL,
                 "forward-only loss")


def test_the_demos_mnr_example_gives_1_6965(framework):
    np.random.seed(42)  # the demo's MNR inputs
    anchor, positive, negatives = np.random.rand(4), np.random.rand(4), np.random.rand(3, 4)
    loss = framework.layer.mnr_per_anchor(framework.to_device(anchor[None]),
                                          framework.to_device(positive[None]),
                                          framework.to_device(negatives[None]), with_grad=False)
    assert f"MNR Loss = {float(framework.to_numpy(loss)):.4f}" == "MNR Loss = 1.6965"


def test_float64_is_a_type_error(cupy_framework):
    import cupy
    q = cupy.zeros((4, 8), dtype=cupy.float64)
    with pytest.raises(TypeError,
                       match=r"float32 or float16 \(CuPy has no bfloat16\), got float64"):
        cupy_framework.layer.infonce(q, q)


def test_cupy_layouts_are_passed_or_copied(cupy_framework):
    import cupy
    q, k = inputs_for([(6, 8), (8, 6)])
    wide = cupy.zeros((6, 20), dtype=cupy.float32)
    wide[:, 4:12] = cupy.asarray(q)
    q_view = wide[:, 4:12]  # row-sliced: read in place
    k_transposed = cupy.asarray(k).T  # last dimension not contiguous: copied
    loss, grad_q, grad_k, _ = cupy_framework.layer.infonce(q_view, k_transposed)
    expected = reference.infonce(q, k.T)
    assert_close(cupy.asnumpy(loss), expected["loss"], LOSS_RTOL, LOSS_ATOL, "loss")
    assert grad_q.shape == (6, 8) and grad_k.shape == (6, 8)
    assert_close(cupy.asnumpy(grad_q), expected["grad_q"], GRAD_RTOL, GRAD_ATOL, "grad_q")
    assert_close(cupy.asnumpy(grad_k), expected["grad_k"], GRAD_RTOL, GRAD_ATOL, "grad_k")


def test_cupy_runs_on_the_current_stream(cupy_framework):
    import cupy
    q, k = inputs_for([(6, 8), (6, 8)])
    expected = reference.infonce(q, k)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        loss = cupy_framework.layer.infonce(cupy.asarray(q), cupy.asarray(k), with_grad=False)
    stream.synchronize()
    assert_close(cupy.asnumpy(loss), expected["loss"], LOSS_RTOL, LOSS_ATOL, "loss")


def test_jax_results_feed_later_jax_computations(jax_framework):
    import jax.numpy as jnp
    q, k = inputs_for([(6, 8), (6, 8)])
    expected = reference.infonce(q, k)
    loss, grad_q, grad_k, grad_temperature = jax_framework.layer.infonce(
        jax_framework.to_device(q), jax_framework.to_device(k))
    # Computed by JAX on its own streams from the buffers the library wrote.
    total = float(jnp.sum(grad_q) + jnp.sum(grad_k) + loss + grad_temperature)
    expected_total = (expected["grad_q"].sum() + expected["grad_k"].sum()
                      + expected["loss"][0] + expected["grad_temperature"])
    assert total == pytest.approx(expected_total, rel=GRAD_RTOL, abs=GRAD_ATOL)


# ---- float16 and bfloat16 inputs ----------------------------------------------------------------
# 16-bit inputs against the float64 reference on the same, already rounded, values. The library
# accumulates in float32 but stores normalized rows, dLoss/dlogits and the gradients in the inputs'
# dtype (and the logits in bfloat16 with logits_dtype="bf16"): tolerances of 16-bit values, the
# absolute part a fraction of the largest expected magnitude (sized as in test_torch_gpu.py).
HALF_TOLERANCES = {  # (rtol, atol as a fraction of the largest expected magnitude)
    "f16": dict(loss=(2e-3, 2e-3), grad=(5e-3, 5e-3)),
    "bf16": dict(loss=(1e-2, 1e-2), grad=(2e-2, 2e-2)),
}
BF16_LOGITS_FACTOR = 2  # a bfloat16 logits tile rounds every logit once more
HALF_CASES = {  # as CASES, at moderate temperatures and scales
    "infonce": ("infonce", [(16, 64), (20, 64)],
                dict(temperature=0.1, symmetric=True, positive_offset=2),
                ["grad_q", "grad_k", "grad_temperature"]),
    "infonce_none_dot": ("infonce", [(8, 16), (8, 16)],
                         dict(temperature=2.0, similarity="dot", reduction="none"),
                         ["grad_q", "grad_k", "grad_temperature"]),
    "mnr_per_anchor": ("mnr_per_anchor", [(8, 64), (8, 64), (8, 5, 64)],
                       dict(scale=20.0, similarity="cosine"),
                       ["grad_anchors", "grad_positives", "grad_negatives", "grad_scale"]),
    "mnr_in_batch": ("mnr_in_batch", [(12, 32), (36, 32)], dict(scale=20.0, symmetric=True),
                     ["grad_anchors", "grad_candidates", "grad_scale"]),
    "repel": ("repel", [(6, 32), (6, 4, 32)], dict(margin=0.0),  # 12 of the 24 terms active
              ["grad_anchors", "grad_negatives"]),
}
# No similarity this close to the margin, so 16-bit rounding cannot switch a Repel term on or off.
REPEL_MARGIN_GAP = 1e-2


def assert_close_16(actual, expected, rtol, atol, what):
    """|actual - expected| <= atol * max|expected| + rtol * |expected|, element by element."""
    actual = np.asarray(actual, dtype=np.float64).reshape(-1)
    expected = np.asarray(expected, dtype=np.float64).reshape(-1)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


def half_framework(framework, dtype_name):
    if dtype_name not in framework.half_dtypes:
        pytest.skip(f"{framework.name} has no {dtype_name} dtype")
    return framework.half_dtypes[dtype_name]


def check_half_against_reference(framework, dtype_name, case, tolerances, **extra):
    """The layer on 16-bit arrays against the reference on their float64 values: a float32 loss,
    gradients in the inputs' dtype, a float32 temperature or scale gradient."""
    function, shapes, options, gradient_keys = case
    dtype = half_framework(framework, dtype_name)
    rounded = [x.astype(dtype) for x in inputs_for(shapes)]
    exact = [x.astype(np.float64) for x in rounded]
    if function == "repel":  # the terms' activity must not depend on rounding
        anchors, negatives = (x / np.linalg.norm(x, axis=-1, keepdims=True) for x in exact)
        cos = np.einsum("bd,bnd->bn", anchors, negatives)
        assert np.min(np.abs(cos - options["margin"])) > REPEL_MARGIN_GAP, "inputs near the margin"
    expected = getattr(reference, function)(*exact, **options)
    arrays = [framework.to_device(x, dtype) for x in rounded]

    loss, *grads = getattr(framework.layer, function)(*arrays, **options, **extra)
    loss = framework.to_numpy(loss)
    assert loss.dtype == np.float32
    assert np.all(np.isfinite(loss))
    assert_close_16(loss, expected["loss"], *tolerances["loss"], "loss")
    for index, (key, grad) in enumerate(zip(gradient_keys, grads)):
        grad = framework.to_numpy(grad)
        if index < len(rounded):
            assert grad.dtype == np.dtype(dtype) and grad.shape == rounded[index].shape, key
        else:
            assert grad.dtype == np.float32 and grad.shape == (), key
        assert_close_16(grad, expected[key], *tolerances["grad"], key)


@pytest.mark.parametrize("dtype_name", ["f16", "bf16"])
@pytest.mark.parametrize("case", HALF_CASES.values(), ids=HALF_CASES.keys())
def test_half_precision_matches_the_reference(framework, case, dtype_name):
    check_half_against_reference(framework, dtype_name, case, HALF_TOLERANCES[dtype_name])


@pytest.mark.parametrize("case", ["infonce", "mnr_in_batch"])
def test_jax_bf16_logits_tile(jax_framework, case):
    tolerances = {key: tuple(BF16_LOGITS_FACTOR * value for value in pair)
                  for key, pair in HALF_TOLERANCES["bf16"].items()}
    check_half_against_reference(jax_framework, "bf16", HALF_CASES[case], tolerances,
                                 logits_dtype="bf16")


@pytest.mark.parametrize("dtype_name", ["f16", "bf16"])
def test_small_temperature_and_large_scale_are_finite(framework, dtype_name):
    """Temperature 0.01 and scale 100 put logits near +-100: still finite (both logits tiles for
    bfloat16)."""
    dtype = half_framework(framework, dtype_name)
    q, k, c = (framework.to_device(x, dtype) for x in inputs_for([(16, 64), (16, 64), (48, 64)]))
    for logits_dtype in (["f32", "bf16"] if dtype_name == "bf16" else ["f32"]):
        results = [
            framework.layer.infonce(q, k, temperature=0.01, symmetric=True,
                                    logits_dtype=logits_dtype),
            framework.layer.mnr_in_batch(q, c, scale=100.0, logits_dtype=logits_dtype),
        ]
        for loss, *grads in results:
            assert np.all(np.isfinite(framework.to_numpy(loss)))
            for grad in grads:
                assert np.all(np.isfinite(np.asarray(framework.to_numpy(grad), np.float64)))


def test_mixed_dtypes_are_a_type_error(framework):
    """Checked in Python before the library is called; nothing is cast."""
    x = inputs_for([(4, 8)])[0]
    f32, f16 = framework.to_device(x), framework.to_device(x, np.float16)
    with pytest.raises(TypeError, match="^infonce: inputs must all have one dtype, got float32 "
                                        "for q and float16 for k$"):
        framework.layer.infonce(f32, f16)
    with pytest.raises(TypeError, match="^mnr_in_batch: inputs must all have one dtype"):
        framework.layer.mnr_in_batch(f16, f32)
    with pytest.raises(TypeError, match="^repel: inputs must all have one dtype"):
        framework.layer.repel(f32, f16.reshape(4, 1, 8))
    if "bf16" in framework.half_dtypes:
        bf16 = framework.to_device(x, framework.half_dtypes["bf16"])
        with pytest.raises(TypeError, match="^mnr_per_anchor: inputs must all have one dtype"):
            framework.layer.mnr_per_anchor(bf16, bf16, f16.reshape(4, 1, 8))
