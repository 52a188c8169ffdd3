"""Forward ops with PyTorch's names and layouts. Inputs are nncore Tensors; NumPy arrays are
copied to CPU tensors first. Backward passes live in :mod:`nncore.ops`."""
from __future__ import annotations

import numbers

import numpy as np

from . import _C
from ._C import Tensor


def _as_tensor(x, op: str, name: str = "input"):
    """``x`` as a Tensor (array-likes copied to the CPU); None is a TypeError naming ``op``."""
    if isinstance(x, Tensor):
        return x
    if x is None:
        raise TypeError(f"{op}: {name} must be a tensor or an array, got None")
    from . import tensor
    return tensor(x)


def _optional_tensor(x, op: str, name: str):
    return None if x is None else _as_tensor(x, op, name)


def _pair(value, what: str) -> tuple[int, int]:
    """(h, w) from an int or a pair of ints (NumPy integers too), as PyTorch's layers take them."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else \
        tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def matmul(a, b) -> Tensor:
    """a @ b for 2-D tensors."""
    return _C.matmul(_as_tensor(a, "matmul", "a"), _as_tensor(b, "matmul", "b"))


def linear(x, weight, bias=None) -> Tensor:
    """y = x weight^T + bias, weight of shape (out_features, in_features)."""
    return _C.linear_forward(_as_tensor(x, "linear"), _as_tensor(weight, "linear", "weight"),
                             _optional_tensor(bias, "linear", "bias"))


def conv2d(x, weight, bias=None, stride=1, padding=0) -> Tensor:
    """2-D cross-correlation, NCHW input, weight (Cout, Cin, kh, kw)."""
    sh, sw = _pair(stride, "conv2d: stride")
    ph, pw = _pair(padding, "conv2d: padding")
    return _C.conv2d_forward(_as_tensor(x, "conv2d"), _as_tensor(weight, "conv2d", "weight"),
                             _optional_tensor(bias, "conv2d", "bias"), sh, sw, ph, pw)


def max_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    """Max over kernel_size windows (stride defaults to kernel_size); padding never wins."""
    kh, kw = _pair(kernel_size, "max_pool2d: kernel_size")
    sh, sw = _pair(kernel_size if stride is None else stride, "max_pool2d: stride")
    ph, pw = _pair(padding, "max_pool2d: padding")
    y, _ = _C.max_pool2d_forward(_as_tensor(x, "max_pool2d"), kh, kw, sh, sw, ph, pw)
    return y


def avg_pool2d(x, kernel_size, stride=None, padding=0, *, count_include_pad=True) -> Tensor:
    """Mean over kernel_size windows (stride defaults to kernel_size). count_include_pad is
    keyword-only: PyTorch's fifth positional argument is ceil_mode, which nncore does not have."""
    kh, kw = _pair(kernel_size, "avg_pool2d: kernel_size")
    sh, sw = _pair(kernel_size if stride is None else stride, "avg_pool2d: stride")
    ph, pw = _pair(padding, "avg_pool2d: padding")
    return _C.avg_pool2d_forward(_as_tensor(x, "avg_pool2d"), kh, kw, sh, sw, ph, pw,
                                 count_include_pad)


def relu(x) -> Tensor:
    return _C.relu_forward(_as_tensor(x, "relu"))


def leaky_relu(x, negative_slope: float = 0.01) -> Tensor:
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
        raise TypeError(f"leaky_relu: negative_slope must be a number, got "
                        f"{type(negative_slope).__name__}")
    return _C.leaky_relu_forward(_as_tensor(x, "leaky_relu"), negative_slope)


def sigmoid(x) -> Tensor:
    return _C.sigmoid_forward(_as_tensor(x, "sigmoid"))


def tanh(x) -> Tensor:
    return _C.tanh_forward(_as_tensor(x, "tanh"))


def softmax(x) -> Tensor:
    """Softmax over the last axis."""
    return _C.softmax_forward(_as_tensor(x, "softmax"))


def log_softmax(x) -> Tensor:
    """Log-softmax over the last axis."""
    return _C.log_softmax_forward(_as_tensor(x, "log_softmax"))


def cross_entropy(logits, target) -> Tensor:
    """Mean softmax cross-entropy; target: int labels (N,) or probabilities (N, C). Shape ()."""
    loss, _ = _C.cross_entropy_forward(_as_tensor(logits, "cross_entropy", "logits"),
                                       _as_tensor(target, "cross_entropy", "target"))
    return loss


def mse_loss(pred, target) -> Tensor:
    """Mean squared error, shape ()."""
    return _C.mse_forward(_as_tensor(pred, "mse_loss", "pred"),
                          _as_tensor(target, "mse_loss", "target"))
