"""Ids through the compiled calls (docs/ids.md): the id options of the params classes and of
_options, and the id arrays of InfoNCE's and in-batch MNR's calls (keywords after `stream`),
checked by the binding (device, dtype per params.ids.type, number of ids, contiguity) and then by
the library. Runs without a GPU: arrays that present themselves as CUDA arrays
(conftest.FakeCudaArray) and an empty handle, so a call with valid ids stops at the handle."""

import numpy as np
import pytest

from contrastive import _core, _options

B, M, D, K = 4, 6, 8, 1  # InfoNCE: B queries, M keys; in-batch MNR: B anchors, (1 + K) B candidates


@pytest.fixture
def empty():
    return _core.Handle.empty()


# ---- The options ---------------------------------------------------------------------------------

def test_options_default_to_no_ids():
    for p in (_core.InfoNCEParams(), _core.InBatchParams(), _options.infonce_params(B, M, D),
              _options.in_batch_params(B, K, D)):
        assert p.ids.type == _core.IdType.none
        assert not p.ids.multi_positive and not p.ids.exclude_self
        assert not p.ids.false_negative_threshold and p.ids.false_negative_margin == 0.0


@pytest.mark.parametrize("make", [lambda **o: _options.infonce_params(B, M, D, **o),
                                  lambda **o: _options.in_batch_params(B, K, D, **o)])
def test_options_by_keyword(make):
    p = make(id_type="int64", multi_positive=True, exclude_self=True)
    assert p.ids.type == _core.IdType.int64
    assert p.ids.multi_positive and p.ids.exclude_self
    assert not p.ids.false_negative_threshold
    p = make(id_type="int32", false_negative_margin=-0.1)
    assert p.ids.type == _core.IdType.int32 and not p.ids.multi_positive
    assert p.ids.false_negative_threshold
    assert p.ids.false_negative_margin == pytest.approx(-0.1)
    assert make(false_negative_margin=0).ids.false_negative_threshold  # a threshold without ids
    with pytest.raises(ValueError, match=r"^id_type must be one of \['int32', 'int64', 'none'\]"):
        make(id_type="int16")
    with pytest.raises(TypeError, match="^false_negative_margin must be a float or None"):
        make(false_negative_margin="wide")


def test_the_params_ids_are_read_and_written_in_place():
    p = _core.InfoNCEParams()
    p.ids.type = _core.IdType.int32
    p.ids.multi_positive = True
    assert p.ids.type == _core.IdType.int32 and p.ids.multi_positive
    options = _core.IdOptions()
    options.exclude_self = True
    p.ids = options
    assert p.ids.exclude_self and not p.ids.multi_positive and p.ids.type == _core.IdType.none


@pytest.mark.parametrize("options,message", [
    (dict(multi_positive=True), "multi_positive"),
    (dict(id_type="int64", exclude_self=True), "exclude_self"),
    (dict(id_type="int64", multi_positive=True, false_negative_margin=0.1),
     "false_negative_threshold"),
    (dict(false_negative_margin=float("inf")), "margin"),
])
def test_invalid_combinations_are_the_librarys_value_errors(options, message):
    with pytest.raises(ValueError, match=message):
        _core.infonce_check(_options.infonce_params(B, M, D, **options))
    with pytest.raises(ValueError, match=message):
        _core.mnr_in_batch_check(_options.in_batch_params(B, K, D, **options))


# ---- The id arrays of every pass -----------------------------------------------------------------

def _bytes(cuda, count):
    return cuda((max(int(count), 1),), np.uint8)


def infonce(cuda, handle, pass_name, params, **ids):
    """One call of `pass_name` with valid arrays for `params` and the given id keywords."""
    q, k = cuda((B, D)), cuda((M, D))
    loss, grad_loss = cuda((1,)), cuda((1,))
    saved = _bytes(cuda, _core.infonce_saved_size(params))
    workspace = _bytes(cuda, _core.infonce_workspace_size(params))
    grads = (cuda((B, D)), cuda((M, D)), cuda((1,)))
    if pass_name == "forward":
        return _core.infonce_forward(handle, params, q, k, loss, saved, workspace, 0, **ids)
    if pass_name == "backward":
        return _core.infonce_backward(handle, params, q, k, saved, grad_loss, *grads, workspace, 0,
                                      **ids)
    return _core.infonce_forward_backward(handle, params, q, k, loss, saved, grad_loss, *grads,
                                          workspace, 0, **ids)


def in_batch(cuda, handle, pass_name, params, **ids):
    anchors, candidates = cuda((B, D)), cuda(((1 + K) * B, D))
    loss, grad_loss = cuda((1,)), cuda((1,))
    saved = _bytes(cuda, _core.mnr_in_batch_saved_size(params))
    workspace = _bytes(cuda, _core.mnr_in_batch_workspace_size(params))
    grads = (cuda((B, D)), cuda(((1 + K) * B, D)), cuda((1,)))
    if pass_name == "forward":
        return _core.mnr_in_batch_forward(handle, params, anchors, candidates, loss, saved,
                                          workspace, 0, **ids)
    if pass_name == "backward":
        return _core.mnr_in_batch_backward(handle, params, anchors, candidates, saved, grad_loss,
                                           *grads, workspace, 0, **ids)
    return _core.mnr_in_batch_forward_backward(handle, params, anchors, candidates, loss, saved,
                                               grad_loss, *grads, workspace, 0, **ids)


# (api, call, params(**options), the query ids' name and count, the key ids' name and count)
LOSSES = [
    ("infonce", infonce, lambda **o: _options.infonce_params(B, M, D, **o), "query_ids", B,
     "key_ids", M),
    ("mnr_in_batch", in_batch, lambda **o: _options.in_batch_params(B, K, D, **o), "anchor_ids", B,
     "candidate_ids", (1 + K) * B),
]
PASSES = ["forward", "backward", "forward_backward"]
CASES = [(loss, pass_name) for loss in LOSSES for pass_name in PASSES]
IDS = [f"{loss[0]}.{pass_name}" for loss, pass_name in CASES]


def valid_ids(cuda, loss, dtype):
    _, _, _, rows_name, rows, keys_name, keys = loss
    return {rows_name: cuda(np.arange(rows, dtype=dtype)),
            keys_name: cuda(np.arange(keys, dtype=dtype) % rows)}


@pytest.mark.parametrize("loss,pass_name", CASES, ids=IDS)
@pytest.mark.parametrize("id_type,dtype", [("int32", np.int32), ("int64", np.int64)])
def test_valid_ids_reach_the_library(cuda, empty, loss, pass_name, id_type, dtype):
    _, call, make = loss[:3]
    for options in (dict(), dict(multi_positive=True), dict(multi_positive=True, exclude_self=True),
                    dict(false_negative_margin=-0.1)):
        params = make(id_type=id_type, **options)
        with pytest.raises(RuntimeError, match="^handle is empty"):
            call(cuda, empty, pass_name, params, **valid_ids(cuda, loss, dtype))
    # Ids of any shape holding the right number of values.
    _, _, _, rows_name, rows, keys_name, keys = loss
    ids = valid_ids(cuda, loss, dtype)
    ids[keys_name] = cuda(np.zeros((keys, 1), dtype))
    with pytest.raises(RuntimeError, match="^handle is empty"):
        call(cuda, empty, pass_name, make(id_type=id_type), **ids)


@pytest.mark.parametrize("loss,pass_name", CASES, ids=IDS)
def test_no_ids_without_an_id_type(cuda, empty, loss, pass_name):
    api, call, make, rows_name = loss[:4]
    with pytest.raises(RuntimeError, match="^handle is empty"):
        call(cuda, empty, pass_name, make())
    with pytest.raises(RuntimeError, match="^handle is empty"):  # a threshold needs no ids
        call(cuda, empty, pass_name, make(false_negative_margin=0.05))
    with pytest.raises(ValueError, match=rf"^{api}.{pass_name}: {rows_name} is given but "
                                         r"params.ids.type is none \(set it to int32 or int64\)$"):
        call(cuda, empty, pass_name, make(), **valid_ids(cuda, loss, np.int64))


@pytest.mark.parametrize("loss,pass_name", CASES, ids=IDS)
def test_ids_of_the_wrong_dtype(cuda, empty, loss, pass_name):
    api, call, make, rows_name, _, keys_name, _ = loss
    ids = valid_ids(cuda, loss, np.int32)
    with pytest.raises(TypeError, match=rf"^{api}.{pass_name}: {rows_name} must be int64 "
                                        r"\(params.ids.type\), got int32$"):
        call(cuda, empty, pass_name, make(id_type="int64"), **ids)
    ids = valid_ids(cuda, loss, np.int32)
    ids[keys_name] = cuda(np.zeros(loss[6], np.float32))
    with pytest.raises(TypeError, match=rf"^{api}.{pass_name}: {keys_name} must be int32 "
                                        r"\(params.ids.type\), got float32$"):
        call(cuda, empty, pass_name, make(id_type="int32"), **ids)


@pytest.mark.parametrize("loss,pass_name", CASES, ids=IDS)
def test_ids_of_the_wrong_length(cuda, empty, loss, pass_name):
    api, call, make, rows_name, rows, keys_name, keys = loss
    for name, count in ((rows_name, rows), (keys_name, keys)):
        for wrong in (count - 1, count + 1):
            ids = valid_ids(cuda, loss, np.int64)
            ids[name] = cuda(np.zeros(wrong, np.int64))
            with pytest.raises(ValueError, match=rf"^{api}.{pass_name}: {name} must hold {count} "
                                                 rf"ids, got shape \({wrong},\)$"):
                call(cuda, empty, pass_name, make(id_type="int64"), **ids)


@pytest.mark.parametrize("loss,pass_name", CASES, ids=IDS)
def test_ids_on_the_wrong_device(cuda, empty, loss, pass_name):
    api, call, make, rows_name, rows = loss[:5]
    ids = valid_ids(cuda, loss, np.int64)
    ids[rows_name] = np.arange(rows, dtype=np.int64)  # a NumPy array: on the host
    with pytest.raises(ValueError, match=rf"^{api}.{pass_name}: {rows_name} must be on a CUDA "
                                         r"device, got cpu$"):
        call(cuda, empty, pass_name, make(id_type="int64"), **ids)


@pytest.mark.parametrize("loss,pass_name", CASES, ids=IDS)
def test_non_contiguous_ids(cuda, empty, loss, pass_name):
    api, call, make, rows_name, rows = loss[:5]
    ids = valid_ids(cuda, loss, np.int64)
    ids[rows_name] = cuda(np.zeros(2 * rows, np.int64)[::2])
    with pytest.raises(ValueError, match=rf"^{api}.{pass_name}: {rows_name} must be contiguous$"):
        call(cuda, empty, pass_name, make(id_type="int64"), **ids)


@pytest.mark.parametrize("loss,pass_name", CASES, ids=IDS)
def test_missing_and_misaligned_ids_are_the_librarys_errors(cuda, empty, loss, pass_name):
    """With an id type both arrays are required (the library names the missing one) and aligned
    to their element."""
    api, call, make, rows_name, rows, keys_name, keys = loss
    ids = valid_ids(cuda, loss, np.int64)
    del ids[keys_name]
    with pytest.raises(ValueError, match=rf"{keys_name} is null"):
        call(cuda, empty, pass_name, make(id_type="int64"), **ids)
    with pytest.raises(ValueError, match=rf"{rows_name} is null"):
        call(cuda, empty, pass_name, make(id_type="int64"))
    ids = valid_ids(cuda, loss, np.int64)
    raw = np.zeros(8 * rows + 8, np.uint8)
    ids[rows_name] = cuda(np.frombuffer(raw.data, np.int64, count=rows, offset=4))
    with pytest.raises(ValueError, match=rf"{rows_name} \("):
        call(cuda, empty, pass_name, make(id_type="int64"), **ids)


def test_ids_are_keywords_after_the_scalars():
    doc = _core.infonce_forward_backward.__doc__
    assert (doc.index("stream:") < doc.index(", temperature:") < doc.index(", query_ids:")
            < doc.index(", key_ids:"))
    doc = _core.mnr_in_batch_forward.__doc__
    assert (doc.index("stream:") < doc.index(", scale:") < doc.index(", anchor_ids:")
            < doc.index(", candidate_ids:"))
    for other in (_core.mnr_per_anchor_forward, _core.repel_forward, _core.siglip_forward):
        assert "_ids" not in other.__doc__
