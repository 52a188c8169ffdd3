"""Forward ops with PyTorch's names and layouts. Inputs are nncore Tensors; NumPy arrays are
copied to CPU tensors first. Backward passes live in :mod:`nncore.ops`."""
from __future__ import annotations

import numpy as np

from . import _C
from ._C import Tensor


def _as_tensor(x):
    if x is None or isinstance(x, Tensor):
        return x
    from . import tensor
    return tensor(x)


def _pair(value, what: str) -> tuple[int, int]:
    """(h, w) from an int or a pair of ints (NumPy integers too), as PyTorch's layers take them."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else \
        tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def matmul(a, b) -> Tensor:
    """a @ b for 2-D tensors."""
    return _C.matmul(_as_tensor(a), _as_tensor(b))


def linear(x, weight, bias=None) -> Tensor:
    """y = x weight^T + bias, weight of shape (out_features, in_features)."""
    return _C.linear_forward(_as_tensor(x), _as_tensor(weight), _as_tensor(bias))


def conv2d(x, weight, bias=None, stride=1, padding=0) -> Tensor:
    """2-D cross-correlation, NCHW input, weight (Cout, Cin, kh, kw)."""
    sh, sw = _pair(stride, "conv2d: stride")
    ph, pw = _pair(padding, "conv2d: padding")
    return _C.conv2d_forward(_as_tensor(x), _as_tensor(weight), _as_tensor(bias), sh, sw, ph, pw)


def max_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    """Max over kernel_size windows (stride defaults to kernel_size); padding never wins."""
    kh, kw = _pair(kernel_size, "max_pool2d: kernel_size")
    sh, sw = _pair(kernel_size if stride is None else stride, "max_pool2d: stride")
    ph, pw = _pair(padding, "max_pool2d: padding")
    y, _ = _C.max_pool2d_forward(_as_tensor(x), kh, kw, sh, sw, ph, pw)
    return y


def avg_pool2d(x, kernel_size, stride=None, padding=0, *, count_include_pad=True) -> Tensor:
    """Mean over kernel_size windows (stride defaults to kernel_size). count_include_pad is
    keyword-only: PyTorch's fifth positional argument is ceil_mode, which nncore does not have."""
    kh, kw = _pair(kernel_size, "avg_pool2d: kernel_size")
    sh, sw = _pair(kernel_size if stride is None else stride, "avg_pool2d: stride")
    ph, pw = _pair(padding, "avg_pool2d: padding")
    return _C.avg_pool2d_forward(_as_tensor(x), kh, kw, sh, sw, ph, pw, count_include_pad)


def relu(x) -> Tensor:
    return _C.relu_forward(_as_tensor(x))


def leaky_relu(x, negative_slope: float = 0.01) -> Tensor:
    return _C.leaky_relu_forward(_as_tensor(x), negative_slope)


def sigmoid(x) -> Tensor:
    return _C.sigmoid_forward(_as_tensor(x))


def tanh(x) -> Tensor:
    return _C.tanh_forward(_as_tensor(x))


def softmax(x) -> Tensor:
    """Softmax over the last axis."""
    return _C.softmax_forward(_as_tensor(x))


def log_softmax(x) -> Tensor:
    """Log-softmax over the last axis."""
    return _C.log_softmax_forward(_as_tensor(x))


def cross_entropy(logits, target) -> Tensor:
    """Mean softmax cross-entropy; target: int labels (N,) or probabilities (N, C). Shape ()."""
    loss, _ = _C.cross_entropy_forward(_as_tensor(logits), _as_tensor(target))
    return loss


def mse_loss(pred, target) -> Tensor:
    """Mean squared error, shape ()."""
    return _C.mse_forward(_as_tensor(pred), _as_tensor(target))
