"""NumPy float64 reference implementations: the ground truth every nncore kernel is tested against.

Written to be obviously correct, not fast: explicit loops or einsum straight from the formulas in
src/include/nncore/kernel_signatures.inc. In particular conv2d is computed directly over the
kernel windows (never through im2col), so it checks the im2col + GEMM path independently.
Every function takes and returns float64 arrays (integer arrays for labels/argmax).
"""
from __future__ import annotations

import numpy as np


def f64(a):
    return np.asarray(a, dtype=np.float64)


# ---- GEMM / linear / bias ------------------------------------------------------------------

def gemm(a, b, c, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """alpha * op(a) @ op(b) + beta * c; beta == 0 means c is not read (NaNs in c vanish)."""
    a, b = f64(a), f64(b)
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    out = alpha * (opa @ opb)
    if beta != 0.0:
        out = out + beta * f64(c)
    return out


def matmul(a, b, trans_a=False, trans_b=False):
    return gemm(a, b, None, trans_a, trans_b, 1.0, 0.0)


def linear_forward(x, w, b=None):
    """y = x w^T + b, w of shape (out, in)."""
    y = np.einsum("ni,oi->no", f64(x), f64(w))
    if b is not None:
        y = y + f64(b)[None, :]
    return y


def linear_backward(x, w, dy):
    """(dx, dw, db) for y = x w^T + b."""
    x, w, dy = f64(x), f64(w), f64(dy)
    return dy @ w, dy.T @ x, dy.sum(axis=0)


def bias_add(y, b):
    """y (N, C, ...) + b (C)."""
    y = f64(y)
    shape = [1] * y.ndim
    shape[1] = -1
    return y + f64(b).reshape(shape)


def bias_grad(dy):
    """Sum of dy over every axis but 1."""
    dy = f64(dy)
    return dy.sum(axis=tuple(i for i in range(dy.ndim) if i != 1))


# ---- convolution ---------------------------------------------------------------------------

def conv_out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def im2col(x, kh, kw, sh, sw, ph, pw):
    """Batched Caffe layout: col (C*kh*kw, N*OH*OW), row (c*kh + i)*kw + j, column
    (n*OH + oh)*OW + ow, col[r, n, oh, ow] = x[n, c, oh*sh - ph + i, ow*sw - pw + j] (0 outside)."""
    x = f64(x)
    N, C, H, W = x.shape
    OH, OW = conv_out_size(H, kh, sh, ph), conv_out_size(W, kw, sw, pw)
    col = np.zeros((C, kh, kw, N, OH, OW))
    for c, i, j, oh, ow, h, w in _in_image_taps(C, H, W, kh, kw, sh, sw, ph, pw):
        col[c, i, j, :, oh, ow] = x[:, c, h, w]
    return col.reshape(C * kh * kw, N * OH * OW)


def col2im(col, x_shape, kh, kw, sh, sw, ph, pw):
    """Adjoint of im2col: every col entry is added back to the pixel it was read from."""
    N, C, H, W = x_shape
    OH, OW = conv_out_size(H, kh, sh, ph), conv_out_size(W, kw, sw, pw)
    col = f64(col).reshape(C, kh, kw, N, OH, OW)
    x = np.zeros((N, C, H, W))
    for c, i, j, oh, ow, h, w in _in_image_taps(C, H, W, kh, kw, sh, sw, ph, pw):
        x[:, c, h, w] += col[c, i, j, :, oh, ow]
    return x


def _in_image_taps(C, H, W, kh, kw, sh, sw, ph, pw):
    """(c, i, j, oh, ow, h, w) for every kernel tap (i, j) of every window (oh, ow) that lands on
    an image pixel (h, w) = (oh*sh - ph + i, ow*sw - pw + j)."""
    OH, OW = conv_out_size(H, kh, sh, ph), conv_out_size(W, kw, sw, pw)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                for oh in range(OH):
                    h = oh * sh - ph + i
                    if not 0 <= h < H:
                        continue
                    for ow in range(OW):
                        w = ow * sw - pw + j
                        if 0 <= w < W:
                            yield c, i, j, oh, ow, h, w


def _pad(x, ph, pw, value=0.0):
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def conv2d_forward(x, w, b=None, sh=1, sw=1, ph=0, pw=0):
    """Cross-correlation, summed directly over the kernel taps (no im2col)."""
    x, w = f64(x), f64(w)
    N, C, H, W = x.shape
    Cout, Cin, kh, kw = w.shape
    assert Cin == C
    OH, OW = conv_out_size(H, kh, sh, ph), conv_out_size(W, kw, sw, pw)
    xp = _pad(x, ph, pw)
    y = np.zeros((N, Cout, OH, OW))
    for i in range(kh):
        for j in range(kw):
            window = xp[:, :, i:i + sh * (OH - 1) + 1:sh, j:j + sw * (OW - 1) + 1:sw]
            y += np.einsum("nchw,oc->nohw", window, w[:, :, i, j])
    if b is not None:
        y += f64(b)[None, :, None, None]
    return y


def conv2d_backward(x, w, dy, sh=1, sw=1, ph=0, pw=0):
    """(dx, dw, db) of conv2d_forward, directly over the kernel taps."""
    x, w, dy = f64(x), f64(w), f64(dy)
    N, C, H, W = x.shape
    Cout, Cin, kh, kw = w.shape
    OH, OW = dy.shape[2:]
    xp = _pad(x, ph, pw)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i in range(kh):
        for j in range(kw):
            hs = slice(i, i + sh * (OH - 1) + 1, sh)
            ws = slice(j, j + sw * (OW - 1) + 1, sw)
            dxp[:, :, hs, ws] += np.einsum("nohw,oc->nchw", dy, w[:, :, i, j])
            dw[:, :, i, j] = np.einsum("nohw,nchw->oc", dy, xp[:, :, hs, ws])
    dx = dxp[:, :, ph:ph + H, pw:pw + W]
    return dx, dw, dy.sum(axis=(0, 2, 3))


# ---- pooling (input (N, C, H, W) or (C, H, W)) ----------------------------------------------

def _as4d(x):
    x = f64(x)
    return (x[None], True) if x.ndim == 3 else (x, False)


def max_pool2d_forward(x, kh, kw, sh, sw, ph=0, pw=0):
    """(y, argmax): padding is -inf (never wins); scanning the window in row-major order, a tap
    takes over when greater or NaN (PyTorch's rule: the first maximum, or the last NaN);
    argmax = h*W + w inside the plane."""
    x, squeeze = _as4d(x)
    N, C, H, W = x.shape
    OH, OW = conv_out_size(H, kh, sh, ph), conv_out_size(W, kw, sw, pw)
    y = np.empty((N, C, OH, OW))
    arg = np.empty((N, C, OH, OW), dtype=np.int64)
    for oh in range(OH):
        for ow in range(OW):
            best = np.full((N, C), -np.inf)
            best_idx = np.full((N, C), -1, dtype=np.int64)
            for i in range(kh):
                h = oh * sh - ph + i
                if not 0 <= h < H:
                    continue
                for j in range(kw):
                    w = ow * sw - pw + j
                    if not 0 <= w < W:
                        continue
                    v = x[:, :, h, w]
                    better = (v > best) | np.isnan(v) | (best_idx < 0)
                    best = np.where(better, v, best)
                    best_idx = np.where(better, h * W + w, best_idx)
            y[:, :, oh, ow] = best
            arg[:, :, oh, ow] = best_idx
    return (y[0], arg[0]) if squeeze else (y, arg)


def max_pool2d_backward(dy, argmax, x_shape):
    dy, squeeze = _as4d(dy)
    argmax = np.asarray(argmax)
    if squeeze:
        argmax = argmax[None]
    N, C = dy.shape[:2]
    H, W = x_shape[-2:]
    dx = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            np.add.at(dx[n, c], argmax[n, c].ravel(), dy[n, c].ravel())
    dx = dx.reshape(N, C, H, W)
    return dx[0] if squeeze else dx


def _avg_divisor(oh, ow, H, W, kh, kw, sh, sw, ph, pw, count_include_pad):
    if count_include_pad:
        return kh * kw
    h0, w0 = oh * sh - ph, ow * sw - pw
    rows = min(h0 + kh, H) - max(h0, 0)
    cols = min(w0 + kw, W) - max(w0, 0)
    return rows * cols


def avg_pool2d_forward(x, kh, kw, sh, sw, ph=0, pw=0, count_include_pad=True):
    x, squeeze = _as4d(x)
    N, C, H, W = x.shape
    OH, OW = conv_out_size(H, kh, sh, ph), conv_out_size(W, kw, sw, pw)
    y = np.zeros((N, C, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            h0, w0 = oh * sh - ph, ow * sw - pw
            window = x[:, :, max(h0, 0):min(h0 + kh, H), max(w0, 0):min(w0 + kw, W)]
            div = _avg_divisor(oh, ow, H, W, kh, kw, sh, sw, ph, pw, count_include_pad)
            y[:, :, oh, ow] = window.sum(axis=(2, 3)) / div
    return y[0] if squeeze else y


def avg_pool2d_backward(dy, x_shape, kh, kw, sh, sw, ph=0, pw=0, count_include_pad=True):
    dy, squeeze = _as4d(dy)
    N, C, OH, OW = dy.shape
    H, W = x_shape[-2:]
    dx = np.zeros((N, C, H, W))
    for oh in range(OH):
        for ow in range(OW):
            h0, w0 = oh * sh - ph, ow * sw - pw
            div = _avg_divisor(oh, ow, H, W, kh, kw, sh, sw, ph, pw, count_include_pad)
            dx[:, :, max(h0, 0):min(h0 + kh, H), max(w0, 0):min(w0 + kw, W)] += (
                dy[:, :, oh, ow][:, :, None, None] / div)
    return dx[0] if squeeze else dx


# ---- activations ---------------------------------------------------------------------------

def relu_forward(x):
    return np.maximum(f64(x), 0.0)


def relu_backward(x, dy):
    """0 where x <= 0, else dy: a select, so an inf or NaN in dy where x <= 0 gives 0, and a NaN
    x passes dy (PyTorch's threshold_backward)."""
    return np.where(f64(x) <= 0, 0.0, f64(dy))


def leaky_relu_forward(x, slope=0.01):
    x = f64(x)
    return np.where(x > 0, x, slope * x)


def leaky_relu_backward(x, dy, slope=0.01):
    return f64(dy) * np.where(f64(x) > 0, 1.0, slope)


def sigmoid_forward(x):
    x = f64(x)
    # Stable both ways: exp of a non-positive number only.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_backward(y, dy):
    y = f64(y)
    return f64(dy) * y * (1.0 - y)


def tanh_forward(x):
    return np.tanh(f64(x))


def tanh_backward(y, dy):
    y = f64(y)
    return f64(dy) * (1.0 - y * y)


def softmax_forward(x):
    x = f64(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(y, dy):
    y, dy = f64(y), f64(dy)
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def log_softmax_forward(x):
    x = f64(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def log_softmax_backward(y, dy):
    y, dy = f64(y), f64(dy)
    return dy - np.exp(y) * dy.sum(axis=-1, keepdims=True)


# ---- losses --------------------------------------------------------------------------------

def cross_entropy_forward(logits, target):
    """(mean loss, probs); target int labels (N,) or probabilities (N, C)."""
    logp = log_softmax_forward(logits)
    target = np.asarray(target)
    if target.ndim == 1:
        loss = -logp[np.arange(len(target)), target.astype(np.int64)].mean()
    else:
        loss = -(f64(target) * logp).sum(axis=1).mean()
    return loss, np.exp(logp)


def cross_entropy_backward(probs, target, grad_scale=1.0):
    """grad_scale * d(mean loss)/dlogits."""
    probs = f64(probs)
    rows = probs.shape[0]
    target = np.asarray(target)
    if target.ndim == 1:
        t = np.zeros_like(probs)
        t[np.arange(rows), target.astype(np.int64)] = 1.0
        g = probs - t
    else:
        t = f64(target)
        g = probs * t.sum(axis=1, keepdims=True) - t
    return g * grad_scale / rows


def mse_forward(pred, target):
    d = f64(pred) - f64(target)
    return (d * d).mean()


def mse_backward(pred, target, grad_scale=1.0):
    pred, target = f64(pred), f64(target)
    return grad_scale * 2.0 * (pred - target) / pred.size


# ---- optimizers (torch.optim.SGD / torch.optim.Adam semantics) -----------------------------

def sgd_step(param, grad, buf, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, first_step=False):
    """Returns (new_param, new_buf)."""
    p, g = f64(param), f64(grad)
    g = g + weight_decay * p
    if momentum != 0.0:
        buf = g.copy() if first_step else momentum * f64(buf) + (1.0 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


def adam_step(param, grad, m, v, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
              step=1):
    """Returns (new_param, new_m, new_v); step starts at 1."""
    p, g = f64(param), f64(grad)
    g = g + weight_decay * p
    m = beta1 * f64(m) + (1.0 - beta1) * g
    v = beta2 * f64(v) + (1.0 - beta2) * g * g
    m_hat = m / (1.0 - beta1 ** step)
    v_hat = v / (1.0 - beta2 ** step)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


# ---- dropout -------------------------------------------------------------------------------

_M32 = np.uint64(0xFFFFFFFF)


def philox_uniform(seed, offset, n):
    """Element i of the Philox4x32-10 stream (seed, offset), as in src/include/nncore/philox.h:
    block offset + i//4, word i%4, top 24 bits / 2^24."""
    idx = np.arange(n, dtype=np.uint64)
    block = np.uint64(offset) + idx // np.uint64(4)
    c0 = block & _M32
    c1 = block >> np.uint64(32)
    c2 = np.zeros_like(c0)
    c3 = np.zeros_like(c0)
    k0 = np.uint64(seed & 0xFFFFFFFF)
    k1 = np.uint64((seed >> 32) & 0xFFFFFFFF)
    mul0, mul1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    for _ in range(10):
        p0 = mul0 * c0
        p1 = mul1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & _M32
        hi1, lo1 = p1 >> np.uint64(32), p1 & _M32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + np.uint64(0x9E3779B9)) & _M32
        k1 = (k1 + np.uint64(0xBB67AE85)) & _M32
    words = np.stack([c0, c1, c2, c3])
    out = words[(idx % np.uint64(4)).astype(np.int64), np.arange(n)]
    return (out >> np.uint64(8)).astype(np.float64) / 16777216.0


def dropout_mask(n, p, seed, offset):
    """Inverted dropout mask: 1/(1-p) where philox_uniform >= p, else 0."""
    u = philox_uniform(seed, offset, n)
    return np.where(u >= p, 1.0 / (1.0 - p), 0.0)


def dropout_kept_fraction_bounds(n, p, sigmas=6.0):
    """Interval the kept fraction of n Bernoulli(1-p) draws falls in with overwhelming odds."""
    sd = np.sqrt(p * (1 - p) / n)
    return (1 - p) - sigmas * sd, (1 - p) + sigmas * sd


# ---- test utilities (comparison, conversion, central differences) --------------------------

def to_tensor(array, device="cpu", dtype=None):
    import nncore as nc
    return nc.tensor(np.asarray(array), device=device, dtype=dtype)


def to_numpy(t):
    """A float64/int64 copy of a tensor's values (any device)."""
    a = np.array(t.numpy())
    return a.astype(np.float64) if a.dtype.kind == "f" else a.astype(np.int64)


def assert_close(actual, expected, rtol=1e-5, atol=None, scale=None, what=""):
    """|actual - expected| <= atol + rtol * scale elementwise, where scale defaults to
    |expected| and atol to rtol * max|expected| (error relative to the array's magnitude, so
    cancellation to ~0 in one entry does not demand impossible relative precision)."""
    if hasattr(actual, "numpy") and not isinstance(actual, np.ndarray):
        actual = to_numpy(actual)
    actual, expected = f64(actual), f64(expected)
    assert actual.shape == expected.shape, f"{what} shape {actual.shape} != {expected.shape}"
    assert np.all(np.isfinite(actual)) == np.all(np.isfinite(expected)), (
        f"{what} non-finite values: got {actual}")
    magnitude = float(np.max(np.abs(expected))) if expected.size else 0.0
    if atol is None:
        atol = rtol * magnitude + 1e-30
    scale = np.abs(expected) if scale is None else f64(scale)
    err = np.abs(actual - expected)
    bound = atol + rtol * scale
    bad = ~(err <= bound)
    if np.any(bad):
        idx = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), err.shape)
        raise AssertionError(
            f"{what} mismatch at {len(np.flatnonzero(bad))}/{err.size} elements; worst at "
            f"{idx}: got {actual[idx]!r}, expected {expected[idx]!r} (|err| {err[idx]:.3g} > "
            f"bound {bound[idx]:.3g}); max |err| {err.max():.3g}, max |expected| {magnitude:.3g}")


def dot_tol(K, factor=2e-6):
    """Relative tolerance for a float32 K-term dot product against the sum of |terms|."""
    return factor * np.sqrt(max(K, 1)) + 1e-6


def numerical_grad(loss_fn, x, eps=1e-2, indices=None):
    """Central differences of the float64 scalar loss_fn(float32 array) w.r.t. x (float32).

    The step actually taken is measured in float32 (x+eps and x-eps are rounded), so the quotient
    uses the exact perturbation. `indices` (flat) limits the coordinates probed."""
    x = np.asarray(x, dtype=np.float32)
    grad = np.zeros(x.size)
    flat_indices = range(x.size) if indices is None else indices
    for k in flat_indices:
        xp = x.copy().ravel()
        xm = x.copy().ravel()
        xp[k] = np.float32(xp[k] + eps)
        xm[k] = np.float32(xm[k] - eps)
        step = float(xp[k]) - float(xm[k])
        grad[k] = (loss_fn(xp.reshape(x.shape)) - loss_fn(xm.reshape(x.shape))) / step
    return grad.reshape(x.shape)


def check_grad(loss_fn, x, analytic, eps=1e-2, rtol=3e-3, indices=None, what="gradient"):
    """Asserts the analytic gradient matches central differences and is not all zeros."""
    analytic = f64(analytic)
    assert analytic.shape == np.shape(x)
    assert np.any(analytic != 0), f"{what}: analytic gradient is all zeros (vacuous check)"
    numeric = numerical_grad(loss_fn, x, eps, indices)
    if indices is not None:
        mask = np.zeros(analytic.size, dtype=bool)
        mask[list(indices)] = True
        analytic = analytic.ravel()[mask]
        numeric = numeric.ravel()[mask]
        assert np.any(analytic != 0), f"{what}: probed gradient entries are all zeros"
    assert np.any(numeric != 0), f"{what}: numerical gradient is all zeros"
    scale = float(np.max(np.abs(analytic)))
    err = np.abs(numeric - analytic)
    assert np.all(err <= rtol * scale + rtol * np.abs(analytic)), (
        f"{what}: max |numeric - analytic| = {err.max():.3g} (scale {scale:.3g})\n"
        f"numeric={numeric.ravel()[:8]}\nanalytic={analytic.ravel()[:8]}")


def restore_cpu_gemm_kernel():
    """Undo nncore._C._force_cpu_gemm_kernel: back to autodetection ("") or, when the suite runs
    under NNCORE_CPU_KERNEL=..., back to that requested path."""
    import os
    import nncore as nc
    nc._C._force_cpu_gemm_kernel(os.environ.get("NNCORE_CPU_KERNEL", ""))


# Child-process code (Linux: RLIMIT_AS and /proc) defining limit_address_space(margin), which caps
# the process's address space at what it used when this code ran plus `margin` bytes.
ADDRESS_LIMIT_PRELUDE = """
import resource as _resource
_used = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
def limit_address_space(margin):
    _resource.setrlimit(_resource.RLIMIT_AS, (_used + margin, _resource.RLIM_INFINITY))
"""
