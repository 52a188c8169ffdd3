"""Layers with explicit backprop, on the kernels of :mod:`nncore.ops`.

Layouts and default initialisation are PyTorch's, so a PyTorch state dict loads unchanged and
gives the same outputs. Every layer runs on the device of its input and parameters.
"""
from __future__ import annotations

import math
import numbers
from collections import OrderedDict

import numpy as np

import nncore
from nncore import Tensor, ops
from nncore._checks import checked_int
from nncore.functional import _pair
from nncore.random import generator, next_philox_stream

from .module import FUSED_AWAY, Module, Parameter

__all__ = ["Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
           "Softmax", "Flatten", "Dropout", "Identity", "Sequential"]


def _uniform_parameter(shape, bound: float, device: str) -> Parameter:
    """U(-bound, bound) from nncore's seeded generator (PyTorch's default layer init)."""
    values = generator().uniform(-bound, bound, size=shape).astype(np.float32)
    return Parameter(nncore.tensor(values, device=device))


def _window_outputs(sizes, kernel, stride, padding) -> tuple[int, int]:
    """Output sizes of a 2-D sliding window over ``sizes`` (H, W): (size + 2p - k) // s + 1 per
    axis (written out: this runs in every conv and pool forward)."""
    (h, w), (kh, kw), (sh, sw), (ph, pw) = sizes, kernel, stride, padding
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def _window_output_size(layer: Module, x: Tensor, kernel, stride, padding) -> None:
    """Raises ValueError naming ``layer`` when the padded input is smaller than the window."""
    if min(_window_outputs(x.shape[2:], kernel, stride, padding)) < 1:
        raise ValueError(f"{layer!r}: input {x.shape} is too small for a {kernel[0]}x{kernel[1]} "
                         f"window with padding {padding}")


# ---------------------------------------------------------------- layers with parameters


class Linear(Module):
    """y = x W^T + b; weight (out_features, in_features), input (N, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device: str = "cpu"):
        super().__init__()
        self.in_features = checked_int("Linear", "in_features", in_features, low=1)
        self.out_features = checked_int("Linear", "out_features", out_features, low=1)
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight = _uniform_parameter((out_features, in_features), bound, device)
        self.bias = _uniform_parameter((out_features,), bound, device) if bias else None

    def forward(self, x: Tensor, relu: bool = False) -> Tensor:
        """``relu=True`` also applies max(., 0), in the bias's pass over the output (Sequential
        does this for a Linear followed by a ReLU); backward then takes the gradient of that
        output and applies the ReLU's mask too, in the bias gradient's pass."""
        self._check_tensor(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"{self!r}: expected input (N, {self.in_features}), got {x.shape}")
        y = ops.linear_forward(x, self.weight.data, self.bias.data if self.bias else None,
                               relu=relu)
        self._saved = (x, y if relu else None)
        return y

    def _backward(self, saved, dy: Tensor, need_dx: bool):
        x, relu_y = saved
        return ops.linear_backward(x, self.weight.data, dy, self.weight.grad,
                                   self.bias.grad if self.bias else None, need_dx, relu_y=relu_y)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}" + ("" if self.bias else ", bias=False")


class Conv2d(Module):
    """2-D cross-correlation over NCHW input; weight (out_channels, in_channels, kh, kw).
    bias and device are keyword-only: PyTorch's sixth positional argument is dilation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, *,
                 bias: bool = True, device: str = "cpu"):
        super().__init__()
        self.in_channels = checked_int("Conv2d", "in_channels", in_channels, low=1)
        self.out_channels = checked_int("Conv2d", "out_channels", out_channels, low=1)
        self.kernel_size = _pair(kernel_size, "Conv2d: kernel_size")
        self.stride = _pair(stride, "Conv2d: stride")
        self.padding = _pair(padding, "Conv2d: padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Conv2d: need kernel_size >= 1, stride >= 1, padding >= 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.padding}")
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = _uniform_parameter((out_channels, in_channels, *self.kernel_size), bound, device)
        self.bias = _uniform_parameter((out_channels,), bound, device) if bias else None

    def forward(self, x: Tensor, relu: bool = False, pool: bool = False) -> Tensor:
        """``relu=True`` also applies max(., 0), and ``pool=True`` then a 2x2, stride-2 max pool,
        inside the convolution's own passes over the data (Sequential does this for a Conv2d
        followed by a ReLU and/or a MaxPool2d(2)); backward then takes the gradient of that
        output and applies the ReLU's mask and the pool's routing too."""
        self._check_tensor(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected input (N, {self.in_channels}, H, W), got {x.shape}")
        _window_output_size(self, x, self.kernel_size, self.stride, self.padding)
        args = (x, self.weight.data, self.bias.data if self.bias else None, *self.stride, *self.padding)
        if pool:
            y, argmax = ops.conv2d_pool_forward(*args, relu=relu)
        else:
            y, argmax = ops.conv2d_forward(*args, relu=relu), None
        self._saved = (x, y if relu else None, argmax)
        return y

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(OH, OW) of this convolution for an input of height x width."""
        return _window_outputs((height, width), self.kernel_size, self.stride, self.padding)

    def _backward(self, saved, dy: Tensor, need_dx: bool):
        x, relu_y, argmax = saved
        grads = (self.weight.grad, self.bias.grad if self.bias else None, *self.stride, *self.padding,
                 need_dx)
        if argmax is not None:
            return ops.conv2d_pool_backward(x, self.weight.data, dy, argmax, *grads, relu_y=relu_y)
        return ops.conv2d_backward(x, self.weight.data, dy, *grads, relu_y=relu_y)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        return text + ("" if self.bias else ", bias=False")


# ---------------------------------------------------------------- pooling


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _pair(kernel_size, f"{name}: kernel_size")
        self.stride = _pair(kernel_size if stride is None else stride, f"{name}: stride")
        self.padding = _pair(padding, f"{name}: padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"{name}: need kernel_size >= 1, stride >= 1, padding >= 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.padding}")
        if self.padding[0] * 2 > self.kernel_size[0] or self.padding[1] * 2 > self.kernel_size[1]:
            raise ValueError(f"{name}: padding {self.padding} must be at most half of kernel_size "
                             f"{self.kernel_size}")

    def _check_input(self, x: Tensor) -> None:
        self._check_tensor(x)
        if x.ndim != 4:
            raise ValueError(f"{self!r}: expected input (N, C, H, W), got {x.shape}")
        _window_output_size(self, x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max over each window (stride defaults to kernel_size); the argmax is kept for backward."""

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        y, argmax = ops.max_pool2d_forward(x, *self.kernel_size, *self.stride, *self.padding)
        self._saved = (argmax, x.shape)
        return y

    def _backward(self, saved, dy: Tensor, need_dx: bool):
        argmax, x_shape = saved
        return ops.max_pool2d_backward(dy, argmax, x_shape) if need_dx else None


class AvgPool2d(_Pool2d):
    """Mean over each window (stride defaults to kernel_size); padding counts as zeros by default.
    count_include_pad is keyword-only: PyTorch's fourth positional argument is ceil_mode."""

    def __init__(self, kernel_size, stride=None, padding=0, *, count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = bool(count_include_pad)

    def _window_args(self):
        return (*self.kernel_size, *self.stride, *self.padding, self.count_include_pad)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        self._saved = x.shape
        return ops.avg_pool2d_forward(x, *self._window_args())

    def _backward(self, x_shape, dy: Tensor, need_dx: bool):
        return ops.avg_pool2d_backward(dy, x_shape, *self._window_args()) if need_dx else None


# ---------------------------------------------------------------- activations and reshaping


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        self._check_tensor(x)
        self._saved = x
        return ops.relu_forward(x)

    def _backward(self, x, dy: Tensor, need_dx: bool):
        return ops.relu_backward(x, dy) if need_dx else None


class LeakyReLU(Module):
    """max(x, 0) + negative_slope * min(x, 0)."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        self._check_tensor(x)
        self._saved = x
        return ops.leaky_relu_forward(x, self.negative_slope)

    def _backward(self, x, dy: Tensor, need_dx: bool):
        return ops.leaky_relu_backward(x, dy, self.negative_slope) if need_dx else None

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class _OutputActivation(Module):
    """An activation whose derivative is computed from its output y."""

    forward_op = backward_op = None  # the kernels: y = f(x), dx = g(y, dy)

    def forward(self, x: Tensor) -> Tensor:
        self._check_tensor(x)
        y = type(self).forward_op(x)
        self._saved = y
        return y

    def _backward(self, y, dy: Tensor, need_dx: bool):
        return type(self).backward_op(y, dy) if need_dx else None


class Sigmoid(_OutputActivation):
    forward_op, backward_op = ops.sigmoid_forward, ops.sigmoid_backward


class Tanh(_OutputActivation):
    forward_op, backward_op = ops.tanh_forward, ops.tanh_backward


class Softmax(_OutputActivation):
    """Softmax over the last axis. For classification prefer CrossEntropyLoss on logits (fused, stable)."""

    forward_op, backward_op = ops.softmax_forward, ops.softmax_backward


class Identity(Module):
    def forward(self, x: Tensor) -> Tensor:
        self._check_tensor(x)
        self._saved = x.shape
        return x

    def _backward(self, x_shape, dy: Tensor, need_dx: bool):
        self._check_same_shape(dy, x_shape)
        return dy if need_dx else None


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...), a view."""

    def forward(self, x: Tensor) -> Tensor:
        self._check_tensor(x)
        if x.ndim < 2:
            raise ValueError(f"{self!r}: expected input (N, ...) with at least 2 dimensions, got {x.shape}")
        self._saved = x.shape
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # not -1: a batch of 0 has one answer

    def _backward(self, x_shape, dy: Tensor, need_dx: bool):
        self._check_same_shape(dy, (x_shape[0], math.prod(x_shape[1:])))
        return dy.reshape(*x_shape) if need_dx else None


class Dropout(Module):
    """Zeroes each value with probability p and scales the rest by 1/(1-p) in training; identity in eval.

    Masks come from nncore's Philox streams, so ``nncore.manual_seed`` makes them reproducible.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be a number in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        self._check_tensor(x)
        if not self.training or self.p == 0.0:
            self._saved = (None, x.shape)
            return x
        seed, offset = next_philox_stream(x.numel())
        y, mask = ops.dropout_forward(x, self.p, seed, offset)
        self._saved = (mask, x.shape)
        return y

    def _backward(self, saved, dy: Tensor, need_dx: bool):
        mask, x_shape = saved
        if mask is None:
            self._check_same_shape(dy, x_shape)
        if not need_dx:
            return None
        return dy if mask is None else ops.mul(dy, mask)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ---------------------------------------------------------------- containers


def _is_fusable_pool(layer: Module) -> bool:
    """A MaxPool2d that conv2d_pool_forward computes: 2x2 windows, stride 2, no padding."""
    return (type(layer) is MaxPool2d and layer.kernel_size == (2, 2) and layer.stride == (2, 2)
            and layer.padding == (0, 0))


class Sequential(Module):
    """Layers applied in order; children are named "0", "1", ... or by an OrderedDict's keys.

    ``backward(dy)`` runs the layers in reverse and returns dx like any layer; a training loop
    passes ``need_dx=False`` (a network's input needs no gradient: the first layer skips it).

    ``forward`` runs a ``Conv2d`` followed by a ``ReLU`` and/or a ``MaxPool2d(2)`` (2x2,
    stride 2, no padding) as one fused op with the same results (``ops.conv2d_pool_forward``;
    the bias gradient equal to rounding: it is summed in another order);
    ``backward`` then skips the fused layers. A ``Linear`` followed by a ``ReLU`` applies the
    ReLU in its bias pass, and the ReLU's mask in its bias gradient's pass.
    """

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], OrderedDict):
            for name, layer in layers[0].items():
                self.add_module(str(name), layer)
        else:
            for layer in layers:
                self.append(layer)

    def append(self, layer: Module) -> "Sequential":
        """Adds ``layer`` at the end (named by its position); returns self."""
        self.add_module(str(len(self._modules)), layer)
        return self

    add = append  # Keras spelling: model.add(layer)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        if isinstance(index, slice):  # the same layers under the same names (PyTorch's slice)
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return list(self._modules.values())[index]

    def forward(self, x: Tensor) -> Tensor:
        layers = list(self._modules.values())
        # A Conv2d followed by a ReLU and/or a 2x2, stride-2 MaxPool2d runs them inside the
        # convolution (one pass over the output instead of two or three, and with the pool the
        # full-size output is never stored); their positions are kept (as this container's
        # saved state) so that backward does not apply them twice.
        fused = set()
        position = 0
        while position < len(layers):
            layer = layers[position]
            relu = position + 1 < len(layers) and type(layers[position + 1]) is ReLU
            if type(layer) is Linear and relu:
                # The ReLU runs in the Linear's bias pass, and its backward in the Linear's bias
                # gradient pass. Its own backward would still work, from that output
                # ([y > 0] == [x > 0]).
                x = layer.forward(x, relu=True)
                layers[position + 1]._saved = x
                fused.add(position + 1)
                position += 2
                continue
            if type(layer) is not Conv2d:
                x = layer.forward(x)
                position += 1
                continue
            after = position + 1 + relu
            pool = (after < len(layers) and _is_fusable_pool(layers[after])
                    and isinstance(x, Tensor) and x.ndim == 4)
            if pool:
                conv_shape = (x.shape[0], layer.out_channels, *layer.output_size(*x.shape[2:]))
                pool = min(conv_shape[2:]) >= 2
            y = layer.forward(x, relu=relu, pool=pool)
            if relu:
                # [y > 0] == [x > 0]: the ReLU's own backward still works, unless its output
                # was pooled away.
                layers[position + 1]._saved = FUSED_AWAY if pool else y
                fused.add(position + 1)
            if pool:
                layers[after]._saved = (layer._saved[2], conv_shape)  # its argmax, input shape
                fused.add(after)
            x = y
            position = after + 1 if pool else after
        self._saved = fused
        return x

    def _backward(self, fused, dy: Tensor, need_dx: bool):
        layers = list(self._modules.values())
        for position in range(len(layers) - 1, -1, -1):
            if position in fused:  # the layer before it applies it
                continue
            dy = layers[position].backward(dy, need_dx=need_dx or position > 0)
        return dy
