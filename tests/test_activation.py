"""Activations, softmax and log-softmax, forward and backward, against the NumPy reference."""
from __future__ import annotations

import numpy as np
import pytest

import nncore.functional as F
from nncore import ops
import reference as ref
from reference import assert_close, dot_tol, to_numpy, to_tensor

# Elementwise: any rank; sizes across the OpenMP thresholds (2^12, 2^15) and odd vector tails.
SHAPES = [(1,), (7,), (13, 1), (3, 31), (2, 3, 65), (4, 1, 5, 7), (257, 129), (100003,)]


def data(rng, shape, scale=3.0):
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    return x, dy


@pytest.mark.parametrize("shape", SHAPES)
def test_relu(device, rng, shape):
    x, dy = data(rng, shape)
    assert_close(ops.relu_forward(to_tensor(x, device)), ref.relu_forward(x), rtol=0)
    assert_close(ops.relu_backward(to_tensor(x, device), to_tensor(dy, device)),
                 ref.relu_backward(x, dy), rtol=0)
    assert_close(F.relu(to_tensor(x, device)), ref.relu_forward(x), rtol=0)


# (256, 800) and (256, 6, 14, 14): MLP-800's and LeNet-5's pooled conv1 gradient at batch 256,
# the GPU summing the latter per channel in chunks of rows.
@pytest.mark.parametrize("shape", [(1,), (7,), (13, 1), (3, 31), (2, 3, 65), (4, 1, 5, 7),
                                   (257, 129), (256, 800), (256, 6, 14, 14), (0, 3), (3, 0)])
def test_relu_backward_with_the_bias_gradient(device, rng, shape):
    """dbias: the bias gradient of the layer before the ReLU, summed in the mask's pass. dx is
    relu_backward's, bit for bit (an inf or NaN masked away gives 0), and db is bias_grad_ of
    that dx, bit for bit, and the float64 sum to rounding."""
    x, dy = data(rng, shape)
    if dy.size:
        x.flat[0], dy.flat[0] = -1.0, np.nan  # masked away
    channels = shape[1] if len(shape) >= 2 else shape[0]
    db0 = rng.standard_normal(channels).astype(np.float32)
    xt, dyt, db = to_tensor(x, device), to_tensor(dy, device), to_tensor(db0, device)
    dx = ops.relu_backward(xt, dyt, dbias=db)
    want_dx = to_numpy(ops.relu_backward(xt, dyt))
    np.testing.assert_array_equal(to_numpy(dx), want_dx)
    assert np.isfinite(want_dx).all()
    db_sep = to_tensor(db0, device)
    ops.bias_grad_(to_tensor(want_dx, device), db_sep)
    np.testing.assert_array_equal(to_numpy(db), to_numpy(db_sep))
    g = ref.relu_backward(x, dy)
    summed = g.size // max(channels, 1)
    scale = (ref.bias_grad(np.abs(g)) if len(shape) >= 2 else np.abs(g)) + np.abs(db0)
    assert_close(db, db0 + (ref.bias_grad(g) if len(shape) >= 2 else g), rtol=dot_tol(summed),
                 scale=scale)


@pytest.mark.parametrize("slope", [0.01, 0.2, 1.5, -0.5])
@pytest.mark.parametrize("shape", SHAPES)
def test_leaky_relu(device, rng, shape, slope):
    x, dy = data(rng, shape)
    assert_close(ops.leaky_relu_forward(to_tensor(x, device), slope),
                 ref.leaky_relu_forward(x, np.float32(slope)), rtol=1e-7)
    assert_close(ops.leaky_relu_backward(to_tensor(x, device), to_tensor(dy, device), slope),
                 ref.leaky_relu_backward(x, dy, np.float32(slope)), rtol=1e-7)
    assert_close(F.leaky_relu(to_tensor(x, device), slope),
                 ref.leaky_relu_forward(x, np.float32(slope)), rtol=1e-7)


def test_relu_family_at_zero(device):
    """The derivative at exactly 0 is the left one: [x > 0]."""
    x = np.array([-1.0, 0.0, 2.0], np.float32)
    dy = np.array([5.0, 5.0, 5.0], np.float32)
    np.testing.assert_array_equal(
        to_numpy(ops.relu_backward(to_tensor(x, device), to_tensor(dy, device))), [0, 0, 5])
    np.testing.assert_allclose(to_numpy(ops.leaky_relu_backward(
        to_tensor(x, device), to_tensor(dy, device), 0.1)), [0.5, 0.5, 5], rtol=1e-6)
    assert to_numpy(F.leaky_relu(to_tensor(x, device)))[1] == 0.0


def test_relu_bits_match_pytorch(device):
    """Bit for bit PyTorch's relu and threshold_backward (dx = x <= 0 ? 0 : dy) on every pair of
    special values: a NaN x passes dy, dy NaN or inf where x <= 0 gives 0; also through the
    fused bias gradient (dbias=)."""
    torch = pytest.importorskip("torch")
    vals = np.array([0.0, -0.0, 1.5, -2.25, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3e38, -3e38],
                    np.float32)
    x, dy = np.repeat(vals, vals.size), np.tile(vals, vals.size)
    x_t = torch.tensor(x, requires_grad=True)
    y_t = torch.relu(x_t)
    y_t.backward(torch.tensor(dy))
    want_y, want_dx = y_t.detach().numpy(), x_t.grad.numpy()
    got_y = to_numpy(ops.relu_forward(to_tensor(x, device)))
    got_dx = to_numpy(ops.relu_backward(to_tensor(x, device), to_tensor(dy, device)))
    db = to_tensor(np.zeros(1, np.float32), device)
    fused_dx = to_numpy(ops.relu_backward(to_tensor(x.reshape(-1, 1), device),
                                          to_tensor(dy.reshape(-1, 1), device), dbias=db))
    for got, want in ((got_y, want_y), (got_dx, want_dx), (fused_dx.ravel(), want_dx)):
        np.testing.assert_array_equal(got, want)
        finite_or_inf = ~np.isnan(want)
        np.testing.assert_array_equal(np.signbit(got[finite_or_inf]), np.signbit(want[finite_or_inf]))


@pytest.mark.parametrize("slope", [0.01, -0.5, 0.0, -0.0, 2.0])
def test_leaky_relu_bits(device, slope):
    """Bit for bit the select x > 0 ? x : slope*x (dy : slope*dy), as PyTorch computes it:
    signed zeros (slope*(+0) is -0 for a negative slope), infinities, NaN, subnormals."""
    vals = np.array([0.0, -0.0, 1.5, -2.25, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3e38, -3e38],
                    np.float32)
    x, dy = np.repeat(vals, vals.size), np.tile(vals, vals.size)
    s = np.float32(slope)
    with np.errstate(invalid="ignore", over="ignore"):  # 0 * inf, 2 * 3e38
        want_y = np.where(x > 0, x, s * x)
        want_dx = np.where(x > 0, dy, s * dy)
    got_y = to_numpy(ops.leaky_relu_forward(to_tensor(x, device), slope))
    got_dx = to_numpy(ops.leaky_relu_backward(to_tensor(x, device), to_tensor(dy, device), slope))
    for got, want in ((got_y, want_y), (got_dx, want_dx)):
        np.testing.assert_array_equal(got, want)  # values, NaN where NaN (+0 == -0 here)
        finite_or_inf = ~np.isnan(want)
        np.testing.assert_array_equal(np.signbit(got[finite_or_inf]), np.signbit(want[finite_or_inf]))


@pytest.mark.parametrize("shape", SHAPES)
def test_sigmoid(device, rng, shape):
    x, dy = data(rng, shape, scale=6.0)
    y = ops.sigmoid_forward(to_tensor(x, device))
    assert_close(y, ref.sigmoid_forward(x), rtol=2e-6)
    yv = to_numpy(y).astype(np.float32)
    assert_close(ops.sigmoid_backward(to_tensor(yv, device), to_tensor(dy, device)),
                 ref.sigmoid_backward(yv, dy), rtol=2e-6)
    assert_close(F.sigmoid(to_tensor(x, device)), ref.sigmoid_forward(x), rtol=2e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_tanh(device, rng, shape):
    x, dy = data(rng, shape)
    y = ops.tanh_forward(to_tensor(x, device))
    assert_close(y, ref.tanh_forward(x), rtol=2e-6)
    yv = to_numpy(y).astype(np.float32)
    assert_close(ops.tanh_backward(to_tensor(yv, device), to_tensor(dy, device)),
                 ref.tanh_backward(yv, dy), rtol=2e-6)
    assert_close(F.tanh(to_tensor(x, device)), ref.tanh_forward(x), rtol=2e-6)


def test_tanh_backward_where_one_minus_y_squared_cancels(device, rng):
    """|y| -> 1, where 1 - y*y loses up to 1e-4 of relative precision: dx = dy (1 - y)(1 + y)
    stays within 2 ulp of the exact value elementwise (and has the same bits on every device)."""
    y = (1 - 2.0 ** -np.arange(1, 24)).astype(np.float32)
    y = np.concatenate([y, -y, np.float32([0.7615942, -0.9640276, 0.3])])
    dy = rng.uniform(0.5, 2.0, y.size).astype(np.float32)
    got = ops.tanh_backward(to_tensor(y, device), to_tensor(dy, device))
    assert_close(got, ref.tanh_backward(y, dy), rtol=2.4e-7, atol=0)


def test_sigmoid_tanh_extremes(device):
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4, -np.inf, np.inf], np.float32)
    s = to_numpy(ops.sigmoid_forward(to_tensor(x, device)))
    t = to_numpy(ops.tanh_forward(to_tensor(x, device)))
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(t))
    assert_close(s, ref.sigmoid_forward(x), rtol=1e-6)
    assert_close(t, ref.tanh_forward(x), rtol=1e-6)


# ---- softmax / log-softmax over the last axis ------------------------------------------------

# Rows of 1025 and 4099: over 1024 columns the CUDA kernels use a block per row, not a warp.
SOFTMAX_SHAPES = [(1,), (1, 1), (7,), (3, 1), (5, 10), (2, 3, 13), (64, 127), (4, 1000),
                  (300, 31), (2, 2, 2, 257), (3, 1025), (2, 4099)]


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
def test_softmax(device, rng, shape):
    x, dy = data(rng, shape)
    y = ops.softmax_forward(to_tensor(x, device))
    assert y.shape == shape
    assert_close(y, ref.softmax_forward(x), rtol=1e-5)
    yv = to_numpy(y).astype(np.float32)
    assert_close(ops.softmax_backward(to_tensor(yv, device), to_tensor(dy, device)),
                 ref.softmax_backward(yv, dy), rtol=2e-5)
    assert_close(F.softmax(to_tensor(x, device)), ref.softmax_forward(x), rtol=1e-5)


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
def test_log_softmax(device, rng, shape):
    x, dy = data(rng, shape)
    y = ops.log_softmax_forward(to_tensor(x, device))
    assert y.shape == shape
    assert_close(y, ref.log_softmax_forward(x), rtol=1e-5)
    yv = to_numpy(y).astype(np.float32)
    assert_close(ops.log_softmax_backward(to_tensor(yv, device), to_tensor(dy, device)),
                 ref.log_softmax_backward(yv, dy), rtol=2e-5)
    assert_close(F.log_softmax(to_tensor(x, device)), ref.log_softmax_forward(x), rtol=1e-5)


def test_softmax_large_logits_are_stable(device, rng):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4 - 1.0, 1e4 - 3.0],
                  [3e4, -3e4, 1e4]], np.float32)
    for fwd, reference in ((ops.softmax_forward, ref.softmax_forward),
                           (ops.log_softmax_forward, ref.log_softmax_forward)):
        y = to_numpy(fwd(to_tensor(x, device)))
        assert np.all(np.isfinite(y)), f"{fwd.__name__}: {y}"
        assert_close(y, reference(x), rtol=1e-6, atol=1e-5)
    p = to_numpy(ops.softmax_forward(to_tensor(x, device)))
    assert_close(p.sum(axis=-1), np.ones(4), rtol=1e-6)
    big = (rng.standard_normal((8, 50)) * 1e4).astype(np.float32)
    assert_close(ops.log_softmax_forward(to_tensor(big, device)), ref.log_softmax_forward(big),
                 rtol=1e-6)


def test_softmax_rows_sum_to_one(device, rng):
    x = (rng.standard_normal((37, 129)) * 10).astype(np.float32)
    p = to_numpy(ops.softmax_forward(to_tensor(x, device)))
    assert np.all(p >= 0)
    assert_close(p.sum(axis=1), np.ones(37), rtol=1e-6)


# ---- central-difference gradient checks ------------------------------------------------------

def away_from_zero(rng, shape, margin=0.1):
    x = rng.standard_normal(shape) * 2
    return (np.sign(x) * (np.abs(x) + margin)).astype(np.float32)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh", "softmax",
                                  "log_softmax"])
def test_activation_gradcheck(rng, name):
    shape = (3, 7)
    x = away_from_zero(rng, shape)  # kinks of relu/leaky_relu stay out of the +-eps stencil
    r = rng.standard_normal(shape)
    fwd = {
        "relu": ops.relu_forward, "leaky_relu": lambda t: ops.leaky_relu_forward(t, 0.2),
        "sigmoid": ops.sigmoid_forward, "tanh": ops.tanh_forward,
        "softmax": ops.softmax_forward, "log_softmax": ops.log_softmax_forward,
    }[name]
    xt, rt = to_tensor(x), to_tensor(r.astype(np.float32))
    if name == "relu":
        dx = ops.relu_backward(xt, rt)
    elif name == "leaky_relu":
        dx = ops.leaky_relu_backward(xt, rt, 0.2)
    else:
        bwd = getattr(ops, name + "_backward")
        dx = bwd(fwd(xt), rt)  # these take the forward output
    loss = lambda xx: float((to_numpy(fwd(to_tensor(xx))) * r).sum())
    ref.check_grad(loss, x, to_numpy(dx), eps=1e-2, what=f"{name} dx")


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softmax", "log_softmax", "leaky_relu"])
def test_reference_activation_backward_matches_central_differences(rng, name):
    x = away_from_zero(rng, (4, 6)).astype(np.float64)
    r = rng.standard_normal(x.shape)
    fwd = getattr(ref, name + "_forward")
    if name == "leaky_relu":
        analytic = ref.leaky_relu_backward(x, r, 0.01)
    else:
        analytic = getattr(ref, name + "_backward")(fwd(x), r)
    eps = 1e-6
    num = np.zeros(x.size)
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = eps
        e = e.reshape(x.shape)
        num[k] = ((fwd(x + e) * r).sum() - (fwd(x - e) * r).sum()) / (2 * eps)
    np.testing.assert_allclose(num.reshape(x.shape), analytic, rtol=1e-6, atol=1e-8)
    assert np.any(analytic != 0)
