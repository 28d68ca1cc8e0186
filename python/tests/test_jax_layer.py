"""contrastive.jax (XLA FFI custom calls with jax.custom_vjp) against the float64 reference.

Every loss, jitted, with jax.grad of the inputs and of a temperature or scale given as an array
(and of SigLIP's scale and bias, together or one at a time), every reduction (an upstream gradient
per term for reduction="none"), symmetric and offset InfoNCE, 16-bit inputs, jax.vmap, a jitted
training step, the docs' JAX examples (CLIP and SigLIP), and the errors a bad call raises at trace
time. Each test runs on the CPU (the handlers' float64 reference) and,
where JAX has a GPU backend and the library a usable GPU, on the GPU (the library's kernels).
Skipped without JAX or without the compiled contrastive._jax_ffi (the reason is in the message).
"""

import pathlib
import re

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import contrastive  # noqa: E402
from contrastive import reference  # noqa: E402

try:
    from contrastive import jax as cj
except ImportError as error:
    pytest.skip(f"contrastive.jax does not import: {error}", allow_module_level=True)

# The CPU handlers round float64 results to float32; the GPU computes in float32.
TOLERANCES = {"cpu": dict(loss=(1e-6, 1e-6), grad=(1e-5, 1e-6)),
              "gpu": dict(loss=(1e-4, 1e-5), grad=(1e-3, 1e-4))}
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "python.md"


def _platforms():
    platforms = [pytest.param("cpu", id="cpu")]
    reason = None
    try:
        jax.devices("gpu")
    except RuntimeError as error:
        reason = f"JAX has no GPU backend: {error}"
    if reason is None and not contrastive.gpu_available():
        reason = "the library has no usable GPU"
    platforms.append(pytest.param("gpu", id="gpu", marks=pytest.mark.skipif(
        reason is not None, reason=reason or "")))
    return platforms


@pytest.fixture(params=_platforms())
def platform(request):
    return request.param


def put(platform, x, dtype=np.float32):
    return jax.device_put(np.asarray(x).astype(dtype), jax.devices(platform)[0])


def assert_close(actual, expected, tolerance, what):
    """|actual - expected| <= atol * max(1, max|expected|) + rtol * |expected|."""
    rtol, atol = tolerance
    actual = np.asarray(actual, dtype=np.float64).reshape(-1)
    expected = np.asarray(expected, dtype=np.float64).reshape(-1)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


def inputs_for(shapes, seed=0):
    generator = np.random.default_rng(seed)
    return [generator.standard_normal(shape).astype(np.float32) for shape in shapes]


# (function, input shapes, options, the reference's gradient keys: one per input, then the
# scalar's). GPU-only options (tiles, TF32) are accepted everywhere and change no result.
GPU_ONLY_OPTIONS = {"tile_rows", "tile_cols", "allow_tf32"}
CASES = {
    "infonce_symmetric_offset": ("infonce", [(6, 8), (9, 8)],
                                 dict(temperature=0.2, symmetric=True, positive_offset=2),
                                 ["grad_q", "grad_k", "grad_temperature"]),
    "infonce_dot_none": ("infonce", [(5, 16), (5, 16)],
                         dict(temperature=2.0, similarity="dot", reduction="none"),
                         ["grad_q", "grad_k", "grad_temperature"]),
    "infonce_sum_tiled": ("infonce", [(33, 24), (40, 24)],
                          dict(temperature=0.1, reduction="sum", tile_rows=8, tile_cols=16),
                          ["grad_q", "grad_k", "grad_temperature"]),
    "mnr_per_anchor_cosine": ("mnr_per_anchor", [(4, 8), (4, 8), (4, 3, 8)],
                              dict(scale=2.0, similarity="cosine"),
                              ["grad_anchors", "grad_positives", "grad_negatives", "grad_scale"]),
    "mnr_per_anchor_dot_none": ("mnr_per_anchor", [(3, 8), (3, 8), (3, 5, 8)],
                                dict(scale=1.0, similarity="dot", reduction="none"),
                                ["grad_anchors", "grad_positives", "grad_negatives",
                                 "grad_scale"]),
    "mnr_in_batch_symmetric": ("mnr_in_batch", [(4, 8), (12, 8)],
                               dict(scale=20.0, symmetric=True),
                               ["grad_anchors", "grad_candidates", "grad_scale"]),
    "mnr_in_batch_dot_sum": ("mnr_in_batch", [(5, 8), (5, 8)],
                             dict(scale=3.0, similarity="dot", reduction="sum"),
                             ["grad_anchors", "grad_candidates", "grad_scale"]),
    "mnr_in_batch_none": ("mnr_in_batch", [(5, 8), (10, 8)], dict(scale=20.0, reduction="none"),
                          ["grad_anchors", "grad_candidates", "grad_scale"]),
    "repel": ("repel", [(2, 4), (2, 3, 4)], dict(margin=0.3), ["grad_anchors", "grad_negatives"]),
    "repel_none": ("repel", [(3, 8), (3, 4, 8)], dict(margin=0.1, reduction="none"),
                   ["grad_anchors", "grad_negatives"]),
    "repel_sum": ("repel", [(3, 8), (3, 4, 8)], dict(margin=-0.2, reduction="sum"),
                  ["grad_anchors", "grad_negatives"]),
    "repel_mean_over_active": ("repel", [(4, 8), (4, 3, 8)],
                               dict(margin=0.2, mean_over_active=True),
                               ["grad_anchors", "grad_negatives"]),
    "siglip_default": ("siglip", [(6, 8), (6, 8)], dict(scale=10.0, bias=-10.0),
                       ["grad_q", "grad_k", "grad_scale"]),
    "siglip_offset_log_scale_sum": ("siglip", [(4, 8), (7, 8)],
                                    dict(scale=1.5, bias=-2.0, log_scale=True, positive_offset=3,
                                         reduction="sum"),
                                    ["grad_q", "grad_k", "grad_scale"]),
    "siglip_negatives_only_dot_none": ("siglip", [(5, 8), (3, 8)],
                                       dict(scale=2.0, bias=0.5, negatives_only=True,
                                            similarity="dot", reduction="none"),
                                       ["grad_q", "grad_k", "grad_scale"]),
}
SCALARS = {"infonce": "temperature", "mnr_per_anchor": "scale", "mnr_in_batch": "scale",
           "siglip": "scale"}


def reference_of(function, inputs, options, grad_loss=None):
    options = {key: value for key, value in options.items() if key not in GPU_ONLY_OPTIONS}
    return getattr(reference, function)(*inputs, **options, grad_loss=grad_loss)


# Each case with its temperature or scale as a float and, where the loss has one, as an array.
SCALAR_CASES = [pytest.param(case, as_array, id=f"{name}-{'array' if as_array else 'float'}")
                for name, case in CASES.items()
                for as_array in ((False, True) if case[0] in SCALARS else (False,))]


@pytest.mark.parametrize("case, scalar_as_array", SCALAR_CASES)
def test_jitted_loss_and_gradients_match_the_reference(platform, case, scalar_as_array):
    """jax.jit(jax.value_and_grad) of sum(weights * loss): the upstream gradient is the weights
    (1 for a reduced loss), the gradients those of the reference for that grad_loss; with the
    temperature or scale as an array, its gradient too."""
    function, shapes, options, gradient_keys = case
    scalar_name = SCALARS.get(function)
    inputs = inputs_for(shapes)
    per_term = options.get("reduction") == "none"
    expected_forward = reference_of(function, inputs, options)
    weights = (np.linspace(0.5, 2.0, expected_forward["loss"].size).astype(np.float32)
               if per_term else np.float32(1.0))
    expected = reference_of(function, inputs, options,
                            grad_loss=weights if per_term else None)
    arrays = [put(platform, x) for x in inputs]
    layer = getattr(cj, function)
    static = {key: value for key, value in options.items()
              if not (scalar_as_array and key == scalar_name)}

    def objective(*args):
        if scalar_as_array:
            *xs, scalar = args
            loss = layer(*xs, **static, **{scalar_name: scalar})
        else:
            loss = layer(*args, **static)
        return jnp.sum(loss * jnp.reshape(weights, loss.shape)), loss

    argnums = tuple(range(len(arrays) + (1 if scalar_as_array else 0)))
    arguments = arrays + ([put(platform, options[scalar_name])] if scalar_as_array else [])
    (_, loss), grads = jax.jit(jax.value_and_grad(objective, argnums, has_aux=True))(*arguments)

    tolerance = TOLERANCES[platform]
    # 0-d when reduced; per row, or per term (B, N) for Repel, with reduction="none"
    expected_shape = ((tuple(shapes[1][:2]) if function == "repel" else shapes[0][:1])
                      if per_term else ())
    assert loss.dtype == jnp.float32 and loss.shape == expected_shape
    assert_close(loss, expected["loss"], tolerance["loss"], "loss")
    keys = gradient_keys if scalar_as_array else gradient_keys[:len(inputs)]
    assert len(grads) == len(keys)
    for index, (key, grad) in enumerate(zip(keys, grads)):
        expected_shape = inputs[index].shape if index < len(inputs) else ()
        assert grad.shape == expected_shape and grad.dtype == jnp.float32, key
        assert_close(grad, expected[key], tolerance["grad"], key)


@pytest.mark.parametrize("learnable", [("scale", "bias"), ("bias",)], ids=["both", "bias"])
def test_siglip_scale_and_bias_as_arrays(platform, learnable):
    """SigLIP's learnable log scale and bias: jax.grad of both (or of the bias alone, the scale a
    float) under jit, against the reference."""
    options = dict(log_scale=True, positive_offset=1)
    values = dict(scale=float(np.log(10.0)), bias=-3.0)
    inputs = inputs_for([(5, 8), (7, 8)], seed=3)
    expected = reference.siglip(*inputs, **options, **values)
    fixed = {name: value for name, value in values.items() if name not in learnable}

    def objective(q, k, *scalars):
        return cj.siglip(q, k, **options, **fixed, **dict(zip(learnable, scalars)))

    arguments = [put(platform, x) for x in inputs] + [put(platform, values[name])
                                                      for name in learnable]
    argnums = tuple(range(len(arguments)))
    loss, grads = jax.jit(jax.value_and_grad(objective, argnums))(*arguments)
    tolerance = TOLERANCES[platform]
    assert_close(loss, expected["loss"], tolerance["loss"], "loss")
    keys = ["grad_q", "grad_k"] + [f"grad_{name}" for name in learnable]
    for key, grad in zip(keys, grads):
        assert grad.dtype == jnp.float32
        assert_close(grad, expected[key], tolerance["grad"], key)


def test_the_custom_calls_are_in_the_compiled_program(platform):
    """Under jit the loss is two XLA custom calls, forward and backward, with the library's
    workspace and saved sizes as XLA-allocated results."""
    q, k = (put(platform, x) for x in inputs_for([(4, 8), (6, 8)]))
    grad = jax.jit(jax.grad(lambda q, k: cj.infonce(q, k, symmetric=True)))
    text = grad.lower(q, k).as_text()
    assert "contrastive_infonce_forward" in text and "contrastive_infonce_backward" in text
    params = contrastive.InfoNCEParams()
    params.batch, params.num_keys, params.dim, params.symmetric = 4, 6, 8, True
    saved = contrastive._core.infonce_saved_size(params)
    assert re.search(rf"tensor<{saved}xui8>", text), f"no saved buffer of {saved} bytes"


def test_eager_calls_and_repeated_calls_agree(platform):
    """One path for eager and jit: the same values, call after call."""
    q, k = inputs_for([(6, 8), (6, 8)])
    expected = reference.infonce(q, k)["loss"][0]
    arrays = [put(platform, x) for x in (q, k)]
    jitted = jax.jit(cj.infonce)
    for _ in range(3):
        assert float(cj.infonce(*arrays)) == pytest.approx(expected, rel=1e-5)
        assert float(jitted(*arrays)) == pytest.approx(expected, rel=1e-5)


HALF_TOLERANCES = {"float16": dict(loss=(2e-3, 2e-3), grad=(5e-3, 5e-3)),
                   "bfloat16": dict(loss=(1e-2, 1e-2), grad=(2e-2, 2e-2))}


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
@pytest.mark.parametrize("function, shapes, options, keys", [
    ("infonce", [(8, 16), (10, 16)], dict(temperature=0.1, symmetric=True, positive_offset=1),
     ["grad_q", "grad_k"]),
    ("mnr_per_anchor", [(6, 16), (6, 16), (6, 3, 16)], dict(scale=5.0),
     ["grad_anchors", "grad_positives", "grad_negatives"]),
    ("mnr_in_batch", [(6, 16), (12, 16)], dict(scale=20.0), ["grad_anchors", "grad_candidates"]),
    ("repel", [(4, 16), (4, 3, 16)], dict(margin=-1.0), ["grad_anchors", "grad_negatives"]),
], ids=["infonce", "mnr_per_anchor", "mnr_in_batch", "repel"])
def test_16_bit_inputs(platform, dtype_name, function, shapes, options, keys):
    """16-bit inputs against the reference on their (rounded) values: a float32 loss, gradients in
    the inputs' dtype. Repel's margin of -1 keeps every term active whatever the rounding."""
    dtype = jnp.dtype(dtype_name)
    rounded = [x.astype(dtype) for x in inputs_for(shapes)]
    expected = reference_of(function, [x.astype(np.float64) for x in rounded], options)
    arrays = [put(platform, x, dtype) for x in rounded]
    layer = getattr(cj, function)
    loss, grads = jax.jit(jax.value_and_grad(lambda *xs: layer(*xs, **options),
                                             tuple(range(len(arrays)))))(*arrays)
    tolerance = HALF_TOLERANCES[dtype_name]
    assert loss.dtype == jnp.float32
    assert_close(loss, expected["loss"], tolerance["loss"], "loss")
    for x, key, grad in zip(rounded, keys, grads):
        assert grad.dtype == dtype and grad.shape == x.shape, key
        assert_close(np.asarray(grad, np.float32), expected[key], tolerance["grad"], key)


def test_vmap_runs_one_problem_per_element(platform):
    """jax.vmap over a leading axis: each element is its own InfoNCE problem."""
    q, k = inputs_for([(3, 5, 8), (3, 7, 8)])
    temperatures = np.array([0.1, 0.5, 2.0], np.float32)
    loss_of = jax.vmap(lambda q, k, t: cj.infonce(q, k, temperature=t, symmetric=True))
    grads_of = jax.jit(jax.vmap(jax.grad(
        lambda q, k, t: cj.infonce(q, k, temperature=t, symmetric=True), (0, 1, 2))))
    losses = loss_of(put(platform, q), put(platform, k), put(platform, temperatures))
    grad_q, grad_k, grad_t = grads_of(put(platform, q), put(platform, k),
                                      put(platform, temperatures))
    assert losses.shape == (3,) and grad_q.shape == q.shape and grad_t.shape == (3,)
    tolerance = TOLERANCES[platform]
    for index in range(3):
        expected = reference.infonce(q[index], k[index], temperature=float(temperatures[index]),
                                     symmetric=True)
        assert_close(losses[index], expected["loss"], tolerance["loss"], f"loss {index}")
        assert_close(grad_q[index], expected["grad_q"], tolerance["grad"], f"grad_q {index}")
        assert_close(grad_k[index], expected["grad_k"], tolerance["grad"], f"grad_k {index}")
        assert_close(grad_t[index], expected["grad_temperature"], tolerance["grad"],
                     f"grad_temperature {index}")


def test_a_jitted_training_step_follows_the_reference(platform):
    """SGD on two linear towers and a learnable MNR scale, jitted, three steps: each step's loss
    and update are the reference's (gradients through the towers by the chain rule)."""
    x, y, w_x, w_y = inputs_for([(8, 12), (16, 10), (12, 6), (10, 6)], seed=3)
    rate, scale = 0.05, 10.0

    @jax.jit
    def step(params, x, y):
        def objective(params):
            return cj.mnr_in_batch(x @ params["w_x"], y @ params["w_y"], scale=params["scale"])
        loss, grads = jax.value_and_grad(objective)(params)
        return jax.tree_util.tree_map(lambda p, g: p - rate * g, params, grads), loss

    params = {"w_x": put(platform, w_x), "w_y": put(platform, w_y),
              "scale": put(platform, scale)}
    expected_params = {"w_x": w_x.astype(np.float64), "w_y": w_y.astype(np.float64),
                       "scale": float(scale)}
    for _ in range(3):
        params, loss = step(params, put(platform, x), put(platform, y))
        anchors = x.astype(np.float64) @ expected_params["w_x"]
        candidates = y.astype(np.float64) @ expected_params["w_y"]
        expected = reference.mnr_in_batch(anchors, candidates, scale=expected_params["scale"])
        assert float(loss) == pytest.approx(expected["loss"][0], rel=1e-3)
        expected_params = {
            "w_x": expected_params["w_x"] - rate * x.T @ expected["grad_anchors"],
            "w_y": expected_params["w_y"] - rate * y.T @ expected["grad_candidates"],
            "scale": expected_params["scale"] - rate * expected["grad_scale"]}
        for key in ("w_x", "w_y"):
            assert_close(params[key], expected_params[key], (1e-3, 1e-4), key)
        assert float(params["scale"]) == pytest.approx(expected_params["scale"], rel=1e-4)


# ---- The docs' example ---------------------------------------------------------------------------


def docs_example(marker: str = "jax-clip-example") -> str:
    """The Python block after the `marker` comment in docs/python.md."""
    text = DOCS.read_text()
    match = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"docs/python.md has no {marker} block"
    return match.group(1)


def test_the_docs_clip_example_runs_and_is_clips_loss(capsys):
    """The example runs as written; its loss and gradients are CLIP's, written out in jnp."""
    namespace = {}
    exec(compile(docs_example(), str(DOCS), "exec"), namespace)  # noqa: S102
    printed = [float(line.split()[-1]) for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == 5 and printed[-1] < printed[0], printed

    def clip(params, images, texts):
        q, k = images @ params["image_proj"], texts @ params["text_proj"]
        q = q / jnp.linalg.norm(q, axis=1, keepdims=True)
        k = k / jnp.linalg.norm(k, axis=1, keepdims=True)
        logits = q @ k.T * jnp.exp(params["log_scale"])
        labels = jnp.arange(q.shape[0])
        rows = -jax.nn.log_softmax(logits, axis=1)[labels, labels]
        columns = -jax.nn.log_softmax(logits, axis=0)[labels, labels]
        return jnp.mean((rows + columns) / 2)

    params, images, texts = namespace["params"], namespace["images"], namespace["texts"]
    loss, grads = jax.value_and_grad(namespace["clip_loss"])(params, images, texts)
    expected_loss, expected_grads = jax.value_and_grad(clip)(params, images, texts)
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-4)
    for key in params:
        assert_close(grads[key], expected_grads[key], (1e-3, 1e-4), key)


def test_the_docs_siglip_example_runs_and_is_siglips_loss(capsys):
    """The SigLIP example runs as written and its loss decreases; its loss and gradients (the log
    scale's and the bias's included) are the pairwise sigmoid loss written out in jnp."""
    namespace = {}
    exec(compile(docs_example("jax-siglip-example"), str(DOCS), "exec"), namespace)  # noqa: S102
    printed = [float(line.split()[-1]) for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == 5 and printed[-1] < printed[0], printed

    def siglip(params, images, texts):
        q, k = images @ params["image_proj"], texts @ params["text_proj"]
        q = q / jnp.linalg.norm(q, axis=1, keepdims=True)
        k = k / jnp.linalg.norm(k, axis=1, keepdims=True)
        logits = q @ k.T * jnp.exp(params["log_scale"]) + params["bias"]
        labels = 2 * jnp.eye(q.shape[0]) - 1
        return -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / q.shape[0]

    params, images, texts = namespace["params"], namespace["images"], namespace["texts"]
    loss, grads = jax.value_and_grad(namespace["siglip_loss"])(params, images, texts)
    expected_loss, expected_grads = jax.value_and_grad(siglip)(params, images, texts)
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-4)
    assert set(grads) == {"image_proj", "text_proj", "log_scale", "bias"}
    for key in params:
        assert_close(grads[key], expected_grads[key], (1e-3, 1e-4), key)


# ---- Errors, at trace time -----------------------------------------------------------------------


def abstract(*shapes, dtype=jnp.float32):
    return [jax.ShapeDtypeStruct(shape, dtype) for shape in shapes]


@pytest.mark.parametrize("function, shapes, options, error, message", [
    ("infonce", [(4, 8), (6, 9)], {}, ValueError, r"q and k must have one D"),
    ("infonce", [(4, 8, 1), (6, 8)], {}, ValueError, r"q must be 2-D, got shape \(4, 8, 1\)"),
    ("infonce", [(6, 8), (4, 8)], {}, ValueError, r"num_keys"),
    ("infonce", [(4, 8), (6, 8)], dict(positive_offset=3), ValueError, r"positive_offset"),
    ("infonce", [(4, 8), (4, 8)], dict(temperature=-1.0), ValueError, r"temperature"),
    ("infonce", [(4, 8), (4, 8)], dict(reduction="max"), ValueError, r"reduction must be one of"),
    ("mnr_per_anchor", [(4, 8), (3, 8), (4, 2, 8)], {}, ValueError,
     r"anchors and positives must have one B"),
    ("mnr_per_anchor", [(4, 8), (4, 8), (4, 8)], {}, ValueError, r"negatives must be 3-D"),
    ("mnr_in_batch", [(4, 8), (10, 8)], {}, ValueError, r"candidates must have \(1 \+ K\) \* B"),
    ("mnr_in_batch", [(4, 8), (12, 8)], dict(hard_negatives=1), ValueError,
     r"hard_negatives=1 does not match"),
    ("repel", [(4, 8), (3, 2, 8)], {}, ValueError, r"anchors and negatives must have one B"),
    ("repel", [(4, 8), (4, 2, 8)], dict(margin=float("nan")), ValueError, r"margin"),
    ("infonce", [(4, 8), (4, 8)], dict(temperature="0.1"), TypeError, r"temperature must be"),
    ("siglip", [(4, 8), (3, 8)], {}, ValueError, r"num_keys \(M = 3\) must be >= batch"),
    ("siglip", [(4, 8), (4, 8)], dict(bias=float("inf")), ValueError, r"bias must be finite"),
    ("siglip", [(4, 8), (4, 8)], dict(bias=np.ones(2, np.float32)), ValueError,
     r"bias must be a float or a JAX array of one element"),
    ("siglip", [(4, 8), (4, 8)], dict(scale=0.0), ValueError, r"scale must be finite and > 0"),
    ("infonce", [(4, 8), (4, 8)], dict(scale=2.0), TypeError, r"unexpected keyword.*'scale'"),
], ids=lambda value: value if isinstance(value, str) and len(value) < 16 else None)
def test_bad_calls_fail_at_trace_time(function, shapes, options, error, message):
    """jax.jit(...).lower(...) on abstract shapes: nothing runs, the call fails while tracing."""
    layer = getattr(cj, function)
    with pytest.raises(error, match=message):
        jax.jit(lambda *xs: layer(*xs, **options)).lower(*abstract(*shapes))


def test_dtype_errors_name_the_inputs():
    with pytest.raises(TypeError, match=r"^infonce: inputs must be float32, float16 or bfloat16, "
                                        r"got float64$"):
        cj.infonce(np.zeros((4, 8)), np.zeros((4, 8)))
    with pytest.raises(TypeError, match=r"^infonce: inputs must all have one dtype, got float32 "
                                        r"for q and float16 for k"):
        jax.jit(cj.infonce).lower(*abstract((4, 8)), *abstract((4, 8), dtype=jnp.float16))
    with pytest.raises(TypeError, match=r"^repel: anchors must be a jax.Array, got list$"):
        cj.repel([[1.0]], jnp.zeros((1, 1, 1)))
    with pytest.raises(TypeError, match=r"infonce\(\) takes 2 inputs \(q, k\), got 1"):
        cj.infonce(jnp.zeros((4, 8)))
    with pytest.raises(ValueError, match=r"temperature must be a float or a JAX array of one "
                                         r"element, got shape \(2,\)"):
        cj.infonce(jnp.zeros((4, 8)), jnp.zeros((4, 8)), temperature=jnp.ones(2))


def test_a_bad_traced_temperature_fails_when_the_call_runs():
    """An array's value is known only when the call runs: the handler's check says what is
    wrong."""
    q, k = (jnp.asarray(x) for x in inputs_for([(4, 8), (4, 8)]))
    with pytest.raises(Exception, match=r"temperature"):
        jax.block_until_ready(jax.jit(lambda t: cj.infonce(q, k, temperature=t))(-1.0))
    with pytest.raises(Exception, match=r"bias must be finite"):
        jax.block_until_ready(jax.jit(lambda b: cj.siglip(q, k, bias=b))(float("nan")))
    with pytest.raises(Exception, match=r"scale must be finite and > 0"):
        jax.block_until_ready(jax.jit(lambda t: cj.siglip(q, k, scale=t, bias=1.0))(-2.0))


def test_functions_are_built_from_every_description():
    from contrastive import _losses
    for loss in _losses.ALL:
        function = getattr(cj, loss.name)
        assert loss.name in cj.__all__
        assert list(function.__signature__.parameters)[:len(loss.inputs)] == [
            spec.name for spec in loss.inputs]


def test_the_handlers_check_the_buffers_they_are_given():
    """The custom calls used directly with a wrong result shape: the handler refuses it, naming
    the buffer, and writes nothing."""
    from contrastive import _jax_ffi, _options
    params = _options.infonce_params(4, 4, 8)
    q = jnp.asarray(inputs_for([(4, 8)])[0])
    words = np.frombuffer(bytes(_jax_ffi.params_words(params)), np.int64)
    saved = contrastive._core.infonce_saved_size(params)
    results = (jax.ShapeDtypeStruct((2,), jnp.float32),  # the loss of mean is one value
               jax.ShapeDtypeStruct((saved,), jnp.uint8), jax.ShapeDtypeStruct((1,), jnp.uint8))
    call = jax.ffi.ffi_call("contrastive_infonce_forward", results)
    with pytest.raises(Exception, match=r"infonce: loss: 8 bytes of float32, expected 4 of "
                                        r"float32"):
        jax.block_until_ready(call(q, q, params=words))
    with pytest.raises(Exception, match=r"params attribute does not match"):
        jax.block_until_ready(call(q, q, params=words[:-1]))
