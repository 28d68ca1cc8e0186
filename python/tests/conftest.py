"""Test helpers: arrays that look like CUDA arrays to DLPack consumers, over host memory.

Without a GPU no real CUDA array exists, yet the binding's checks of device, dtype, shape and
strides run before anything touches the memory; with Handle.empty() every call stops right after
them. The data pointers are never dereferenced.
"""

import ctypes

import numpy as np
import pytest

KDL_CUDA = 2
_DTYPE_CODES = {np.dtype(np.float32): (2, 32), np.dtype(np.float64): (2, 64),
                np.dtype(np.float16): (2, 16), np.dtype(np.int32): (0, 32),
                np.dtype(np.int64): (0, 64), np.dtype(np.uint8): (1, 8)}


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(_DLManagedTensor))
_DLManagedTensor._fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                             ("deleter", _DELETER)]
_NO_OP_DELETER = _DELETER(lambda _: None)  # the FakeCudaArray keeps its memory alive
_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class FakeCudaArray:
    """A NumPy array's memory, exported through DLPack as if it lived on CUDA device 0.

    `view` is any NumPy view (strided, transposed ...): its shape and strides are what the consumer
    sees.
    """

    def __init__(self, view: np.ndarray):
        self.view = view
        self._shape = (ctypes.c_int64 * view.ndim)(*view.shape)
        self._strides = (ctypes.c_int64 * view.ndim)(*(s // view.itemsize for s in view.strides))
        code, bits = _DTYPE_CODES[view.dtype]
        self._managed = _DLManagedTensor()
        tensor = self._managed.dl_tensor
        tensor.data = view.ctypes.data
        tensor.device = _DLDevice(KDL_CUDA, 0)
        tensor.ndim = view.ndim
        tensor.dtype = _DLDataType(code, bits, 1)
        tensor.shape = self._shape
        tensor.strides = self._strides
        tensor.byte_offset = 0
        self._managed.deleter = _NO_OP_DELETER

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        return _capsule_new(ctypes.addressof(self._managed), b"dltensor", None)

    def __dlpack_device__(self):
        return (KDL_CUDA, 0)


@pytest.fixture
def cuda():
    """cuda(shape, dtype=np.float32) -> a FakeCudaArray of that shape; cuda(view) wraps a view."""
    keep = []

    def make(shape_or_view, dtype=np.float32):
        view = (shape_or_view if isinstance(shape_or_view, np.ndarray)
                else np.zeros(shape_or_view, dtype))
        array = FakeCudaArray(view)
        keep.append(array)
        return array

    return make
