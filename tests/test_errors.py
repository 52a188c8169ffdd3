"""Bad inputs raise ValueError/TypeError whose message names the op and the shapes; nothing
crashes the process."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nncore as nc
import nncore.functional as F
from nncore import ops
from reference import ADDRESS_LIMIT_PRELUDE


def shape_re(*shapes):
    """A regex matching every shape, in order, as the messages print them: (2, 3)."""
    return ".*".join(re.escape(str(tuple(s))) for s in shapes)


@pytest.fixture
def T(device):
    def make(*shape, dtype=np.float32):
        return nc.tensor(np.ones(shape, dtype), device=device)
    return make


def I(values, device):  # noqa: E743 - int32 tensor helper
    return nc.tensor(np.asarray(values, np.int32), device=device)


# ---- GEMM / linear ---------------------------------------------------------------------------

def test_matmul_shape_mismatch(T):
    with pytest.raises(ValueError, match="^matmul: .*" + shape_re((2, 3), (4, 5))):
        ops.matmul(T(2, 3), T(4, 5))
    with pytest.raises(ValueError, match="^matmul: .*" + shape_re((2, 3), (4, 5))):
        F.matmul(T(2, 3), T(4, 5))
    with pytest.raises(ValueError, match="^matmul: .*" + shape_re((3, 2), (4, 5))):
        ops.matmul(T(3, 2), T(4, 5), True, False)


def test_matmul_wrong_rank(T):
    with pytest.raises(ValueError, match="^matmul: .*2-D.*" + shape_re((2, 3, 1))):
        ops.matmul(T(2, 3, 1), T(3, 5))
    with pytest.raises(ValueError, match="^matmul: .*2-D"):
        ops.matmul(T(3), T(3, 5))


def test_gemm_bad_c_and_inner(T):
    with pytest.raises(ValueError, match="^gemm: .*" + shape_re((2, 4))):
        ops.gemm_(T(2, 3), T(3, 5), T(2, 4), False, False, 1.0, 0.0)
    with pytest.raises(ValueError, match="^gemm: .*" + shape_re((2, 3), (4, 5))):
        ops.gemm_(T(2, 3), T(4, 5), T(2, 5), False, False, 1.0, 0.0)


def test_matmul_int_dtype(T):
    with pytest.raises(TypeError, match="^matmul: .*int32"):
        ops.matmul(T(2, 3, dtype=np.int32), T(3, 2))


def test_gemm_output_may_not_share_memory_with_an_input(T):
    a = T(3, 3)
    with pytest.raises(ValueError, match="^gemm: c and a share memory"):
        ops.gemm_(a, T(3, 3), a)
    b = T(3, 3)
    with pytest.raises(ValueError, match="^gemm: c and b share memory"):
        ops.gemm_(T(3, 3), b, b, beta=1.0)


def test_backward_outputs_may_not_share_memory_with_inputs(T):
    """dweight and dbias accumulate while the inputs are read: linear_backward with dweight = x
    (n = 256) gave dW off by 10.5 (relative) before it was refused. Views overlap partially."""
    x, dy, relu_y, w = T(4, 3), T(4, 3), T(4, 3), T(3, 3)
    with pytest.raises(ValueError, match="^linear_backward: dw and x share memory"):
        ops.linear_backward(x, T(3, 3), T(4, 3), x[1:4], need_dx=False)
    with pytest.raises(ValueError, match="^linear_backward: dw and weight share memory"):
        ops.linear_backward(x, w, T(4, 3), w)
    with pytest.raises(ValueError, match="^linear_backward: dbias and dy share memory"):
        ops.linear_backward(x, T(3, 3), dy, T(3, 3), dy.reshape(12)[9:12])
    with pytest.raises(ValueError, match="^linear_backward: dw and relu_y share memory"):
        ops.linear_backward(x, T(3, 3), T(4, 3), relu_y[1:4], relu_y=relu_y)
    dw = T(3, 3)
    with pytest.raises(ValueError, match="^linear_backward: dw and dbias share memory"):
        ops.linear_backward(x, T(3, 3), T(4, 3), dw, dw.reshape(9)[3:6])
    with pytest.raises(ValueError, match="^relu_backward: dbias and dy share memory"):
        ops.relu_backward(x, dy, dy.reshape(12)[0:3])
    with pytest.raises(ValueError, match="^bias_add_: y and bias share memory"):
        ops.bias_add_(dy, dy.reshape(12)[0:3])
    with pytest.raises(ValueError, match="^bias_grad_: dbias and dy share memory"):
        ops.bias_grad_(dy, dy.reshape(12)[3:6])
    img, cdy = T(2, 1, 4, 4), T(2, 2, 2, 2)
    with pytest.raises(ValueError, match="^conv2d_backward: dw and input share memory"):
        ops.conv2d_backward(img, T(2, 1, 3, 3), cdy, img.reshape(32)[0:18].reshape(2, 1, 3, 3))
    with pytest.raises(ValueError, match="^conv2d_backward: dbias and dy share memory"):
        ops.conv2d_backward(img, T(2, 1, 3, 3), cdy, T(2, 1, 3, 3), cdy.reshape(16)[0:2])
    pdy = T(1, 1, 2, 2)
    with pytest.raises(ValueError, match="^conv2d_pool_backward: dw and dy share memory"):
        ops.conv2d_pool_backward(T(1, 1, 5, 5), T(1, 1, 2, 2), pdy, T(1, 1, 2, 2, dtype=np.int32),
                                 pdy)


def test_axpy_refuses_a_partial_overlap(device):
    """y[1:] += y[:-1] read elements it had already updated (1 2 3 4 ..., numpy: 1 2 2 2 ...);
    y += alpha * y itself is fine."""
    t = nc.tensor(np.arange(6, dtype=np.float32), device=device)
    with pytest.raises(ValueError, match="^axpy_: y and x share memory"):
        ops.axpy_(t[1:6], 1.0, t[0:5])
    np.testing.assert_array_equal(t.numpy(), np.arange(6))
    ops.axpy_(t, 0.5, t)
    np.testing.assert_array_equal(t.numpy(), 1.5 * np.arange(6))


def test_linear_feature_mismatch(T):
    with pytest.raises(ValueError, match="^linear: .*" + shape_re((4, 3), (5, 4))):
        F.linear(T(4, 3), T(5, 4))
    with pytest.raises(ValueError, match="^linear"):
        ops.linear_forward(T(4, 3), T(5, 4), None)


def test_linear_bias_mismatch_names_linear(T):
    """The user called linear, so the message should say linear (not an internal helper)."""
    with pytest.raises(ValueError, match="^linear.*" + shape_re((4,))):
        F.linear(T(4, 3), T(5, 3), T(4))


def test_linear_backward_bad_shapes(T):
    with pytest.raises(ValueError, match="^linear_backward: .*" + shape_re((4, 4))):
        ops.linear_backward(T(4, 3), T(5, 3), T(4, 4), T(5, 3), None, True)
    with pytest.raises(ValueError, match="^linear_backward: .*" + shape_re((5, 4), (5, 3))):
        ops.linear_backward(T(4, 3), T(5, 3), T(4, 5), T(5, 4), None, True)
    with pytest.raises(ValueError, match="^linear_backward: relu_y .*" + shape_re((4, 4), (4, 5))):
        ops.linear_backward(T(4, 3), T(5, 3), T(4, 5), T(5, 3), None, True, relu_y=T(4, 4))
    with pytest.raises(TypeError, match="^linear_backward: relu_y .*int32"):
        ops.linear_backward(T(4, 3), T(5, 3), T(4, 5), T(5, 3), T(5), True,
                            relu_y=T(4, 5, dtype=np.int32))


def test_relu_backward_bias_mismatch(T):
    with pytest.raises(ValueError, match="^relu_backward: dbias .*" + shape_re((4,), (2, 3, 5))):
        ops.relu_backward(T(2, 3, 5), T(2, 3, 5), dbias=T(4))
    with pytest.raises(ValueError, match="^relu_backward: .*" + shape_re((2, 3), (2, 4))):
        ops.relu_backward(T(2, 3), T(2, 4), dbias=T(4))
    with pytest.raises(TypeError, match="^relu_backward: dy .*int32"):
        ops.relu_backward(T(2, 3), T(2, 3, dtype=np.int32), dbias=T(3))


# ---- convolution -----------------------------------------------------------------------------

def test_conv_channel_mismatch(T):
    with pytest.raises(ValueError, match="^conv2d: .*" + shape_re((1, 3, 5, 5), (2, 4, 3, 3))):
        F.conv2d(T(1, 3, 5, 5), T(2, 4, 3, 3))


def test_conv_int_input_is_type_error(T):
    with pytest.raises(TypeError, match="^conv2d: .*float32.*int32"):
        F.conv2d(T(1, 3, 5, 5, dtype=np.int32), T(2, 3, 3, 3))
    with pytest.raises(TypeError, match="^conv2d: .*float32.*int32"):
        F.conv2d(T(1, 3, 5, 5), T(2, 3, 3, 3, dtype=np.int32))


def test_conv_wrong_rank(T):
    with pytest.raises(ValueError, match="^conv2d: .*4-D.*" + shape_re((3, 5, 5))):
        F.conv2d(T(3, 5, 5), T(2, 3, 3, 3))
    with pytest.raises(ValueError, match="^conv2d: .*4-D.*" + shape_re((2, 3, 3))):
        F.conv2d(T(1, 3, 5, 5), T(2, 3, 3))


@pytest.mark.parametrize("kernel,padding", [((8, 3), 1), ((3, 6), 0), ((5, 5), (0, 0))])
def test_conv_kernel_larger_than_padded_input(T, kernel, padding):
    with pytest.raises(ValueError, match="^conv2d: .*larger than the padded input"):
        F.conv2d(T(1, 3, 5, 4), T(2, 3, *kernel), padding=padding)


@pytest.mark.parametrize("stride,padding", [(0, 0), (-1, 0), ((1, 0), 0), (1, -1), (1, (0, -2))])
def test_conv_bad_stride_padding(T, stride, padding):
    with pytest.raises(ValueError, match="^conv2d: .*stride"):
        F.conv2d(T(1, 3, 5, 5), T(2, 3, 3, 3), stride=stride, padding=padding)


def test_conv_padding_overflowing_64_bits(T):
    with pytest.raises(ValueError, match="^conv2d: the padded input .* does not fit in 64 bits"):
        F.conv2d(T(1, 1, 4, 4), T(1, 1, 3, 3), padding=(2**62, 0))
    with pytest.raises(ValueError, match="^im2col: the padded input .* along width"):
        ops.im2col(T(1, 1, 4, 4), 3, 3, 1, 1, 0, 2**63 - 3)


def test_im2col_col2im_too_many_elements(T):
    # im2col's matrix would have (1 * 2**41) * 2**41 columns (a wrapped count gave a small one)
    with pytest.raises(ValueError, match="^im2col: .* too many elements"):
        ops.im2col(T(1, 1, 4, 4), 3, 3, 1, 1, 2**40, 2**40)
    with pytest.raises(ValueError, match="^col2im: .* too many elements"):
        ops.col2im(T(9, 4), (2**62, 1, 4, 4), 3, 3, 1, 1, 0, 0)


def test_conv_bias_mismatch_names_conv2d(T):
    with pytest.raises(ValueError, match="^conv2d.*" + shape_re((3,))):
        F.conv2d(T(1, 3, 5, 5), T(2, 3, 3, 3), T(3))


def test_conv_backward_bad_shapes(T):
    with pytest.raises(ValueError, match="^conv2d_backward: .*" + shape_re((1, 2, 4, 4))):
        ops.conv2d_backward(T(1, 3, 5, 5), T(2, 3, 3, 3), T(1, 2, 4, 4), T(2, 3, 3, 3), None,
                            1, 1, 0, 0, True)
    with pytest.raises(ValueError, match="^conv2d_backward: .*" + shape_re((2, 3, 3, 2))):
        ops.conv2d_backward(T(1, 3, 5, 5), T(2, 3, 3, 3), T(1, 2, 3, 3), T(2, 3, 3, 2), None,
                            1, 1, 0, 0, True)


def test_im2col_col2im_bad_shapes(T):
    with pytest.raises(ValueError, match="^im2col: .*" + shape_re((3, 5, 5))):
        ops.im2col(T(3, 5, 5), 2, 2, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="^col2im: .*" + shape_re((12, 15))):
        ops.col2im(T(12, 15), (1, 3, 5, 5), 2, 2, 1, 1, 0, 0)


# ---- pooling ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pool_wrong_rank(T, name):
    fn = getattr(F, name)
    with pytest.raises(ValueError, match=f"^{name}: .*" + shape_re((5, 5))):
        fn(T(5, 5), 2)
    with pytest.raises(ValueError, match=f"^{name}: .*" + shape_re((1, 1, 1, 5, 5))):
        fn(T(1, 1, 1, 5, 5), 2)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pool_bad_geometry(T, name):
    fn = getattr(F, name)
    with pytest.raises(ValueError, match=f"^{name}: .*larger than the padded input"):
        fn(T(1, 1, 3, 3), 4)
    with pytest.raises(ValueError, match=f"^{name}: .*stride"):
        fn(T(1, 1, 6, 6), 2, stride=0)
    with pytest.raises(ValueError, match=f"^{name}: .*stride"):
        fn(T(1, 1, 6, 6), 2, stride=-2)
    with pytest.raises(ValueError, match=f"^{name}: .*padding"):
        fn(T(1, 1, 6, 6), 2, padding=2)
    with pytest.raises(TypeError, match=f"^{name}: .*int32"):
        fn(T(1, 1, 4, 4, dtype=np.int32), 2)


def test_pool_backward_input_shape_too_large(T):
    y, argmax = ops.max_pool2d_forward(T(1, 1, 4, 4), 2, 2, 2, 2, 0, 0)
    with pytest.raises(ValueError, match="too many elements"):  # 2**64 elements: wrapped to 0
        ops.max_pool2d_backward(y, argmax, (1, 1, 2**32, 2**32))


def test_pool_backward_bad_shapes(T, device):
    with pytest.raises(ValueError, match="^max_pool2d_backward: .*" + shape_re((1, 1, 2, 2))):
        ops.max_pool2d_backward(T(1, 1, 2, 2), I(np.zeros((1, 1, 3, 3)), device), (1, 1, 4, 4))
    with pytest.raises(ValueError, match="^avg_pool2d_backward: .*" + shape_re((1, 1, 3, 3))):
        ops.avg_pool2d_backward(T(1, 1, 3, 3), (1, 1, 4, 4), 2, 2, 2, 2, 0, 0, True)


# ---- losses ----------------------------------------------------------------------------------

@pytest.mark.parametrize("labels", [[0, 4, 1], [0, -1, 1], [0, 1, 1000000]])
def test_cross_entropy_label_out_of_range(T, device, labels):
    if device == "cpu":
        with pytest.raises(ValueError, match=r"^cross_entropy: label -?\d+ at row \d+ .*4 classes"):
            ops.cross_entropy_forward(T(3, 4), I(labels, device))
        with pytest.raises(ValueError, match=r"^cross_entropy_backward: label"):
            ops.cross_entropy_backward(T(3, 4), I(labels, device), 1.0)
    else:
        # Contract (kernel_signatures.inc): CUDA writes NaN for a bad label unless dispatch checks.
        try:
            loss, _ = ops.cross_entropy_forward(T(3, 4), I(labels, device))
        except ValueError as e:
            assert str(e).startswith("cross_entropy")
        else:
            assert np.isnan(loss.item())


def test_cross_entropy_bad_target_shapes(T, device):
    with pytest.raises(ValueError, match="^cross_entropy: .*" + shape_re((2,), (3, 4))):
        ops.cross_entropy_forward(T(3, 4), I([0, 1], device))
    with pytest.raises(ValueError, match="^cross_entropy: .*" + shape_re((3, 5), (3, 4))):
        ops.cross_entropy_forward(T(3, 4), T(3, 5))
    with pytest.raises(ValueError, match="^cross_entropy: .*" + shape_re((3, 4, 2))):
        ops.cross_entropy_forward(T(3, 4, 2), I([0, 1, 1], device))
    # float class ids: the message says labels are int32 (it only spoke of probability targets)
    with pytest.raises(ValueError, match=r"^cross_entropy: .*\(class labels must be int32, not float32\)"):
        F.cross_entropy(T(3, 4), T(3))


def test_mse_shape_mismatch(T):
    with pytest.raises(ValueError, match="^mse_loss: .*" + shape_re((3, 4), (4, 3))):
        F.mse_loss(T(3, 4), T(4, 3))
    with pytest.raises(ValueError, match="^mse_loss.*" + shape_re((3, 4), (12,))):
        ops.mse_backward(T(3, 4), T(12), 1.0)


# ---- activations and elementwise ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax", "log_softmax"])
def test_activation_int_input(T, name):
    with pytest.raises(TypeError, match=f"^{name}: .*int32"):
        getattr(F, name)(T(3, dtype=np.int32))


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh", "softmax",
                                  "log_softmax"])
def test_activation_backward_shape_mismatch(T, name):
    args = (T(3), T(4), 0.1) if name == "leaky_relu" else (T(3), T(4))
    with pytest.raises(ValueError, match=f"^{name}_backward: .*" + shape_re((3,), (4,))):
        getattr(ops, name + "_backward")(*args)


def test_softmax_of_scalar(device):
    with pytest.raises(ValueError, match="^softmax: .*scalar"):
        F.softmax(nc.zeros((), device=device))


def test_elementwise_mismatch(T):
    with pytest.raises(ValueError, match="^mul: .*" + shape_re((3,), (4,))):
        ops.mul(T(3), T(4))
    with pytest.raises(ValueError, match="^axpy_: .*" + shape_re((3,), (4,))):
        ops.axpy_(T(3), 1.0, T(4))
    with pytest.raises(ValueError, match="^bias_add_: .*" + shape_re((4,), (2, 3))):
        ops.bias_add_(T(2, 3), T(4))
    with pytest.raises(ValueError, match="^bias_grad_: .*" + shape_re((4,), (2, 3))):
        ops.bias_grad_(T(2, 3), T(4))


def test_indexing_errors(T, device):
    if device == "cpu":
        with pytest.raises(ValueError, match="^index_select_rows: index 3 .*" + shape_re((3, 2))):
            ops.index_select_rows(T(3, 2), I([0, 3], device))
        with pytest.raises(ValueError, match="^index_select_rows: index -1"):
            ops.index_select_rows(T(3, 2), I([-1], device))
    else:  # the indices stay on the GPU (checking would sync): a bad one gives all-one bits
        x = nc.tensor(np.arange(6, dtype=np.float32).reshape(3, 2), device=device)
        y = ops.index_select_rows(x, I([1, 3, -1, 2**31 - 1], device)).numpy()
        np.testing.assert_array_equal(y[0], [2, 3])
        assert (y[1:].view(np.uint32) == 0xFFFFFFFF).all()  # NaN as float32 (-1 as int32)
        xi = nc.tensor(np.arange(6, dtype=np.int32).reshape(3, 2), device=device)
        np.testing.assert_array_equal(ops.index_select_rows(xi, I([3, 0], device)).numpy(),
                                      [[-1, -1], [0, 1]])
    with pytest.raises(TypeError, match="^index_select_rows: index must be int32"):
        ops.index_select_rows(T(3, 2), T(1))
    with pytest.raises(ValueError, match="^argmax_rows: .*" + shape_re((3,))):
        ops.argmax_rows(T(3))


# ---- optimizers and dropout --------------------------------------------------------------------

def test_optimizer_errors(T):
    with pytest.raises(ValueError, match="^sgd_step: .*" + shape_re((3,), (4,))):
        ops.sgd_step_([T(3)], [T(4)], None, 0.1, 0.0, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match="^sgd_step: .*momentum buffers"):
        ops.sgd_step_([T(3)], [T(3)], None, 0.1, 0.9, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match="^sgd_step: Nesterov"):
        ops.sgd_step_([T(3)], [T(3)], [T(3)], 0.1, 0.9, 0.1, 0.0, True, False)
    with pytest.raises(ValueError, match="^sgd_step: lr"):
        ops.sgd_step_([T(3)], [T(3)], None, -0.1, 0.0, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match=r"^sgd_step: .*dampening \(nan\)"):  # was unchecked
        ops.sgd_step_([T(3)], [T(3)], [T(3)], 0.1, 0.9, float("nan"), 0.0, False, False)
    with pytest.raises(ValueError, match="^adam_step: .*" + shape_re((3,), (2,))):
        ops.adam_step_([T(3)], [T(3)], [T(3)], [T(2)], 0.1, 0.9, 0.999, 1e-8, 0.0, 1)
    with pytest.raises(ValueError, match="^adam_step: step"):
        ops.adam_step_([T(3)], [T(3)], [T(3)], [T(3)], 0.1, 0.9, 0.999, 1e-8, 0.0, 0)
    with pytest.raises(ValueError, match="^adam_step: betas"):
        ops.adam_step_([T(3)], [T(3)], [T(3)], [T(3)], 0.1, 1.0, 0.999, 1e-8, 0.0, 1)


def test_optimizer_list_errors(T):
    """The list ops name the tensor at fault and refuse a parameter listed twice."""
    with pytest.raises(ValueError, match=r"^sgd_step: grads holds 1 tensors but params holds 2"):
        ops.sgd_step_([T(3), T(2)], [T(3)], None, 0.1)
    with pytest.raises(ValueError, match=r"^sgd_step: params\[1\] \(2,\) and grads\[1\] \(3,\)"):
        ops.sgd_step_([T(3), T(2)], [T(3), T(3)], None, 0.1)
    with pytest.raises(ValueError, match=r"^adam_step: params\[1\] \(2,\) and v\[1\] \(5,\)"):
        ops.adam_step_([T(3), T(2)], [T(3), T(2)], [T(3), T(2)], [T(3), T(5)], 0.1, 0.9, 0.9,
                       1e-8, 0.0, 1)
    with pytest.raises(TypeError, match=r"^sgd_step: grads\[0\] must be float32"):
        ops.sgd_step_([T(3)], [T(3, dtype=np.int32)], None, 0.1)
    p = T(4, 3)
    with pytest.raises(ValueError, match=r"^sgd_step: params\[0\] and params\[2\] share memory"):
        ops.sgd_step_([p, T(5), p], [T(4, 3), T(5), T(4, 3)], None, 0.1)
    with pytest.raises(ValueError, match=r"^adam_step: params\[0\] and params\[1\] share memory"):
        ops.adam_step_([p, p.reshape((12,))], [T(4, 3), T(12)], [T(4, 3), T(12)],
                       [T(4, 3), T(12)], 0.1, 0.9, 0.9, 1e-8, 0.0, 1)
    # Every buffer an update reads or writes is its own: one momentum buffer for two params
    # updated it twice with both gradients, m = v mixed Adam's moments.
    buf, q = T(3), T(3)
    with pytest.raises(ValueError, match=r"^sgd_step: momentum_bufs\[0\] and momentum_bufs\[1\] "
                                         "share memory"):
        ops.sgd_step_([T(3), T(3)], [T(3), T(3)], [buf, buf], 0.1, 0.9)
    with pytest.raises(ValueError, match=r"^sgd_step: params\[0\] and grads\[0\] share memory"):
        ops.sgd_step_([q], [q], None, 0.1)
    with pytest.raises(ValueError, match=r"^adam_step: m\[0\] and v\[0\] share memory"):
        ops.adam_step_([T(3)], [T(3)], [buf], [buf], 0.1, 0.9, 0.9, 1e-8, 0.0, 1)
    with pytest.raises(ValueError, match=r"^adam_step: grads\[1\] and m\[0\] share memory"):
        ops.adam_step_([T(4, 3), T(2)], [T(4, 3), p.reshape(12)[10:12]], [p, T(2)],
                       [T(4, 3), T(2)], 0.1, 0.9, 0.9, 1e-8, 0.0, 1)
    with pytest.raises(TypeError, match=r"^fill_tensors_: tensors\[1\] must be float32"):
        ops.fill_tensors_([T(2), T(3, dtype=np.int32)], 0.0)
    ops.fill_tensors_([p, p], 0.0)  # filling twice is harmless


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_dropout_bad_p(T, p):
    with pytest.raises(ValueError, match="^dropout: p"):
        ops.dropout_forward(T(3), p, 0, 0)


# ---- tensors ---------------------------------------------------------------------------------

def test_negative_sizes_and_bad_arguments():
    with pytest.raises(ValueError, match=r"negative dimension.*\(-1, 3\)"):
        nc.zeros((-1, 3))
    with pytest.raises(TypeError):
        ops.relu_forward(None)
    with pytest.raises(TypeError):
        ops.relu_forward(np.ones(3, np.float32))  # raw ops take Tensors only


def test_mixed_devices(cuda_device):
    a = nc.tensor(np.ones((2, 3), np.float32))
    b = nc.tensor(np.ones((3, 4), np.float32), device=cuda_device)
    with pytest.raises(ValueError, match="^matmul: .*device"):
        ops.matmul(a, b)
    with pytest.raises(ValueError, match="^linear: .*device"):
        F.linear(nc.tensor(np.ones((2, 3), np.float32), device="cuda"),
                 nc.tensor(np.ones((4, 3), np.float32)))
    with pytest.raises(ValueError, match="^mse_loss: .*device"):
        F.mse_loss(nc.tensor(np.ones(3, np.float32)), nc.tensor(np.ones(3, np.float32),
                                                                 device="cuda"))
    with pytest.raises(ValueError, match="^cross_entropy: .*device"):
        ops.cross_entropy_forward(nc.tensor(np.ones((2, 3), np.float32), device="cuda"),
                                  nc.tensor(np.array([0, 1], np.int32)))
    with pytest.raises(ValueError, match=r"^sgd_step: all tensors must be on one device.*grads\[1\]"):
        ops.sgd_step_([a, b], [nc.tensor(np.ones((2, 3), np.float32)), nc.tensor(np.ones((3, 4), np.float32))],
                      None, 0.1)


def test_float_to_int32_conversion_is_checked():
    """dtype="int32" on floats truncates toward zero like NumPy's cast, but NaN, infinities and
    values outside int32 are errors (NumPy's cast made them -2**31 with only a warning)."""
    got = nc.tensor([2.9, -2.9, 2147483647.0, -2147483648.0], dtype="int32").numpy()
    np.testing.assert_array_equal(got, [2, -2, 2147483647, -2147483648])
    for bad in ([1e10], [np.nan], [-np.inf], [-2147483649.0], np.float32([2147483648.0])):
        with pytest.raises(ValueError, match="int32"):
            nc.tensor(bad, dtype="int32")
    # The bounds are compared in double: in float32, -2**31 - 1 rounded to -2**31 and refused
    # float32's -2**31; float16's 2**31 overflowed with a RuntimeWarning at every call.
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nc.tensor(np.float32([-2147483648.0]), dtype="int32").numpy()[0] == -(2**31)
        np.testing.assert_array_equal(nc.tensor(np.float16([1.5, 7]), dtype="int32").numpy(), [1, 7])


def test_argmax_rows_beyond_the_int32_result_is_an_error(device):
    """The index of a column past 2**31 came back negative (-2147483633 for 2147483663)."""
    x = nc.empty((1, 2**31 + 1), device=device)  # 8 GiB of address space, never touched
    with pytest.raises(ValueError, match=r"argmax_rows: x has 2147483649 columns, more than "
                                         r"the int32 result can index \(2\*\*31\)"):
        ops.argmax_rows(x)


@pytest.mark.parametrize("call", [
    lambda x: F.relu(None), lambda x: F.matmul(x, None), lambda x: F.linear(x, None),
    lambda x: F.conv2d(None, x), lambda x: F.max_pool2d(None, 2), lambda x: F.softmax(None),
    lambda x: F.cross_entropy(x, None), lambda x: F.mse_loss(None, x)])
def test_functional_none_is_a_clear_error(call):
    """None for a tensor argument names the op and the argument, where pybind listed its
    overloads (None stays the way to leave out a bias)."""
    with pytest.raises(TypeError, match=r"^(relu|matmul|linear|conv2d|max_pool2d|softmax|"
                                        r"cross_entropy|mse_loss): \w+ must be a tensor or an "
                                        r"array, got None$"):
        call(nc.tensor(np.ones((2, 2), np.float32)))


def test_leaky_relu_slope_must_be_a_number():
    x = nc.tensor(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="^leaky_relu: negative_slope must be a number, got NoneType$"):
        F.leaky_relu(x, None)
    assert F.leaky_relu(x, 0.2).shape == (3,)


def test_device_none_is_the_default_device():
    """device=None is PyTorch's default device (the CPU), and to(None) keeps the tensor's; a
    device that is not a string is a TypeError, not pybind's overload list."""
    assert nc.tensor([1.0], device=None).device == "cpu"
    assert nc.zeros(3, device=None).device == "cpu" and nc.empty(2, device=None).device == "cpu"
    t = nc.tensor([1.0, 2.0])
    assert t.to(None).device == "cpu"
    with pytest.raises(TypeError, match="device must be a string such as 'cpu' or 'cuda', got "
                                        "<class 'int'>"):
        nc.tensor([1.0], device=0)
    with pytest.raises(TypeError, match="device must be a string"):
        t.to(1)


@pytest.mark.parametrize("call", [nc.memory_stats, nc.reset_peak_memory_stats, nc.empty_cache])
def test_memory_functions_reject_unknown_devices(call):
    """"gpu" or "CUDA" meant the CPU's allocator; they are errors, as for tensors."""
    for name in ("gpu", "CUDA", "cpu:1"):
        with pytest.raises(ValueError, match=f"unknown device '{name}'"):
            call(name)
    call("cpu")


# Ops whose kernels took buffers inside a parallel region (a GEMM at two threads, or the GEMM of
# each conv pass), with operands that make those buffers large. (setup, the op)
ALLOCATING_OPS = {
    "gemm-rows": ("a, b, c = T(4096, 512), T(512, 64), T(4096, 64)", "ops.gemm_(a, b, c)"),
    "gemm-shared-panel": ("a, b, c = T(2000, 520), T(520, 2048), T(2000, 2048)",
                          "ops.gemm_(a, b, c)"),
    **{f"conv-{algo}-{way}": (
        f"nc._C._force_cpu_conv_algorithm('{algo}')\n"
        "x, w, dy, dw = T(32, 64, 16, 16), T(128, 64, 3, 3), T(32, 128, 14, 14), T(128, 64, 3, 3)",
        "ops.conv2d_forward(x, w, None, 1, 1, 0, 0)" if way == "forward" else
        "ops.conv2d_backward(x, w, dy, dw, None, 1, 1, 0, 0, True, None)")
       for algo in ("im2col", "direct") for way in ("forward", "backward")},
    # Every op of a training step; a step still runs after failed ones.
    "lenet5-training-step": (
        "import nncore.nn as nn\nfrom nncore.models import lenet5\n"
        "model, loss_fn = lenet5(), nn.CrossEntropyLoss()\n"
        "opt = nc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)\n"
        "x, t = T(256, 1, 28, 28), nc.tensor(np.arange(256) % 10, dtype='int32')",
        "loss_fn(model(x), t); opt.zero_grad(); "
        "model.backward(loss_fn.backward(), need_dx=False); opt.step()"),
}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
@pytest.mark.parametrize("case", sorted(ALLOCATING_OPS))
def test_allocation_failure_inside_a_kernel_is_a_memory_error(case):
    """An allocation failing anywhere in an op raises MemoryError. The GEMM took its packing
    buffers inside its OpenMP region, where bad_alloc called std::terminate (SIGABRT); so did
    the GEMM of each conv pass, whose threads also first touched their thread_local scratch
    there (glibc aborts when it cannot allocate a library's thread-local block). The calling
    thread now takes them before the region, and a pass's GEMM packs into the conv's workspace.
    A child process runs the op under address-space limits from the memory in use upward, in
    32 KiB steps, until it succeeds: every large allocation of the op fails in turn, and each
    try must raise MemoryError (or succeed). Allocations of 64 KiB and more are mapped alone (a
    fixed glibc mmap threshold), so one that fails takes nothing from the first MiB of the
    margin, which is left for small ones: libgomp exits the process when those fail."""
    setup, op = ALLOCATING_OPS[case]
    code = textwrap.dedent("""
        import numpy as np, nncore as nc
        from nncore import ops
        def T(*shape):
            return nc.tensor(np.ones(shape, np.float32))
        ops.gemm_(T(64, 512), T(512, 64), T(64, 64))  # the OpenMP threads start before the limits
        {setup}
    """).format(setup=setup) + ADDRESS_LIMIT_PRELUDE + textwrap.dedent("""
        for margin in range(1 << 20, 256 << 20, 32 << 10):
            limit_address_space(margin)
            try:
                {op}
            except MemoryError:
                continue
            print("succeeded at", margin >> 10, "KiB")
            break
    """).format(op=op)
    env = dict(os.environ, OMP_NUM_THREADS="2", MALLOC_MMAP_THRESHOLD_=str(64 << 10))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    margin_kib = int(result.stdout.split()[2])
    assert margin_kib > 1024, "the op fit in the first MiB: the limits tested nothing"
