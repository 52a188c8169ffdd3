"""Small elementwise/indexing ops, and CPU-vs-CUDA equivalence of every op of nncore.ops."""
from __future__ import annotations

import numpy as np
import pytest

import nncore as nc
from nncore import ops
import reference as ref
from reference import assert_close, to_numpy, to_tensor


@pytest.mark.parametrize("shape", [(1,), (7, 13), (3, 5, 7), (100003,)])
def test_fill_axpy_scale_mul(device, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    y0 = rng.standard_normal(shape).astype(np.float32)
    y = to_tensor(y0, device)
    ops.axpy_(y, 0.75, to_tensor(x, device))
    assert_close(y, y0 + 0.75 * x.astype(np.float64), rtol=1e-6)
    ops.scale_(y, -2.0)
    assert_close(y, -2.0 * (y0 + 0.75 * x.astype(np.float64)), rtol=1e-6)
    assert_close(ops.mul(to_tensor(x, device), to_tensor(y0, device)),
                 x.astype(np.float64) * y0, rtol=1e-7)
    ops.fill_(y, 3.5)
    np.testing.assert_array_equal(to_numpy(y), np.full(shape, 3.5))
    y.zero_()
    np.testing.assert_array_equal(to_numpy(y), np.zeros(shape))
    y.fill_(-1.0)
    np.testing.assert_array_equal(to_numpy(y), np.full(shape, -1.0))


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_index_select_rows(device, rng, dtype):
    x = (rng.standard_normal((11, 3, 2)) * 100).astype(dtype)
    idx = np.array([10, 0, 0, 5, 3, 10, 7], np.int32)
    y = ops.index_select_rows(to_tensor(x, device), to_tensor(idx, device))
    assert y.shape == (7, 3, 2) and y.dtype == np.dtype(dtype).name
    np.testing.assert_array_equal(to_numpy(y), x[idx])


@pytest.mark.parametrize("shape", [(1, 1), (5, 10), (64, 127), (3, 1000)])
def test_argmax_rows(device, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    out = ops.argmax_rows(to_tensor(x, device))
    assert out.dtype == "int32" and out.shape == (shape[0],)
    np.testing.assert_array_equal(to_numpy(out), x.argmax(axis=1))


def test_argmax_rows_first_maximum(device):
    x = np.array([[1, 3, 3, 0], [2, 2, 2, 2], [-1, -1, -5, -1]], np.float32)
    np.testing.assert_array_equal(to_numpy(ops.argmax_rows(to_tensor(x, device))), [1, 0, 0])


@pytest.mark.parametrize("cols", [4, 37, 300])  # one vector, a vector and a tail, many
def test_argmax_rows_nan_is_the_maximum(device, rng, cols):
    """NumPy's rule: a NaN is the maximum and the first NaN wins, wherever it stands in the row;
    an all -inf row gives 0."""
    x = rng.standard_normal((6, cols)).astype(np.float32)
    x[0, 0] = np.nan
    x[1, cols // 2] = np.nan
    x[2, [1, cols - 1]] = np.nan
    x[3, cols - 1] = np.nan
    x[4] = -np.inf
    x[5, [2, cols // 2 + 1]] = [np.inf, np.nan]
    got = to_numpy(ops.argmax_rows(to_tensor(x, device)))
    np.testing.assert_array_equal(got, np.argmax(x, axis=1))


# ---- CPU vs CUDA: same inputs, (nearly) the same outputs for every op -------------------------

def _cases(rng):
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    labels = rng.integers(0, 10, 33).astype(np.int32)
    soft = rng.random((33, 10)).astype(np.float32)
    soft /= soft.sum(axis=1, keepdims=True)
    x4, w4 = f(3, 5, 13, 11), f(7, 5, 3, 2)
    dy4 = f(3, 7, 7, 10)
    xp = f(2, 3, 13, 11)
    cases = {
        "gemm_nn": (lambda T: _gemm(T, f(65, 31), f(31, 129), False, False, 1.0, 0.0), None),
        "gemm_nt": (lambda T: _gemm(T, f(65, 31), f(129, 31), False, True, 0.5, 1.0), None),
        "gemm_tn": (lambda T: _gemm(T, f(31, 65), f(31, 129), True, False, 1.0, 0.0), None),
        "gemm_tt": (lambda T: _gemm(T, f(31, 65), f(129, 31), True, True, -1.0, 2.0), None),
        "gemm_large": (lambda T: _gemm(T, f(300, 200), f(200, 500), False, False, 1.0, 0.0), None),
        "matmul": (lambda T: [ops.matmul(T(f(7, 300)), T(f(300, 9)))], None),
        "linear_forward": (lambda T: [ops.linear_forward(T(f(17, 33)), T(f(10, 33)), T(f(10)))],
                           None),
        "linear_backward": (lambda T: _linear_backward(T, f(17, 33), f(10, 33), f(17, 10)), None),
        "bias_add_grad": (lambda T: _bias(T, f(3, 5, 4, 4), f(5)), None),
        "im2col": (lambda T: [ops.im2col(T(x4), 3, 2, 2, 1, 1, 1)], None),
        "col2im": (lambda T: [ops.col2im(T(f(5 * 3 * 2, 3 * 7 * 12)), (3, 5, 13, 11), 3, 2, 2, 1,
                                         1, 1)], None),
        "conv2d_forward": (lambda T: [ops.conv2d_forward(T(x4), T(w4), T(f(7)), 2, 1, 1, 0)], None),
        "conv2d_backward": (lambda T: _conv_backward(T, x4, w4, dy4), None),
        "conv2d_pool_forward": (lambda T: list(ops.conv2d_pool_forward(T(x4), T(w4), T(f(7)), 1, 1,
                                                                       1, 0, relu=True)), None),
        "conv2d_pool_backward": (lambda T: _conv_pool_backward(T, x4, w4, f(7), f(3, 7, 6, 5)),
                                 None),
        "max_pool2d": (lambda T: _max_pool(T, xp, f(2, 3, 7, 6)), None),
        "avg_pool2d_incl": (lambda T: _avg_pool(T, xp, f(2, 3, 7, 6), True), None),
        "avg_pool2d_excl": (lambda T: _avg_pool(T, xp, f(2, 3, 7, 6), False), None),
        "relu": (lambda T: _act(T, "relu", f(5, 77), f(5, 77)), None),
        "leaky_relu": (lambda T: [ops.leaky_relu_forward(T(xp), 0.1),
                                  ops.leaky_relu_backward(T(xp), T(xp * 2), 0.1)], None),
        "sigmoid": (lambda T: _act(T, "sigmoid", f(5, 77), f(5, 77)), None),
        "tanh": (lambda T: _act(T, "tanh", f(5, 77), f(5, 77)), None),
        "softmax": (lambda T: _act(T, "softmax", f(33, 130), f(33, 130)), None),
        "log_softmax": (lambda T: _act(T, "log_softmax", f(33, 130), f(33, 130)), None),
        # rows over 1024 columns: the CUDA kernels' block-per-row path (not warp-per-row)
        "softmax_wide": (lambda T: _act(T, "softmax", f(5, 2500), f(5, 2500)), None),
        "log_softmax_wide": (lambda T: _act(T, "log_softmax", f(5, 2500), f(5, 2500)), None),
        "cross_entropy_labels": (lambda T: _ce(T, f(33, 10), labels), None),
        "cross_entropy_probs": (lambda T: _ce(T, f(33, 10), soft), None),
        "mse": (lambda T: [ops.mse_forward(T(f(1000)), T(f(1000))),
                           ops.mse_backward(T(f(1000)), T(f(1000)), 0.5)], None),
        "sgd": (lambda T: _sgd(T, f(300), f(300), f(300)), None),
        "adam": (lambda T: _adam(T, f(300), f(300)), None),
        "dropout": (lambda T: list(ops.dropout_forward(T(f(5000)), 0.4, 3, 17)), None),
        "elementwise": (lambda T: _elementwise(T, f(99), f(99)), None),
        "index_argmax": (lambda T: [ops.index_select_rows(T(f(9, 4)),
                                                          T(np.array([3, 1, 8], np.int32))),
                                    ops.argmax_rows(T(f(9, 40)))], None),
    }
    return cases


def _gemm(T, a, b, ta, tb, alpha, beta):
    M = a.shape[1] if ta else a.shape[0]
    N = b.shape[0] if tb else b.shape[1]
    c = T(np.linspace(-1, 1, M * N, dtype=np.float32).reshape(M, N))
    ops.gemm_(T(a), T(b), c, ta, tb, alpha, beta)
    return [c]


def _linear_backward(T, x, w, dy):
    dw, db = T(np.ones_like(w)), T(np.ones(w.shape[0], np.float32))
    dx = ops.linear_backward(T(x), T(w), T(dy), dw, db, True)
    return [dx, dw, db]


def _bias(T, y, b):
    yt = T(y)
    ops.bias_add_(yt, T(b))
    db = T(np.zeros_like(b))
    ops.bias_grad_(T(y), db)
    return [yt, db]


def _conv_backward(T, x, w, dy):
    dw, db = T(np.zeros_like(w)), T(np.zeros(w.shape[0], np.float32))
    dx = ops.conv2d_backward(T(x), T(w), T(dy), dw, db, 2, 1, 1, 0, True)
    return [dx, dw, db]


def _conv_pool_backward(T, x, w, b, dy):
    y, argmax = ops.conv2d_pool_forward(T(x), T(w), T(b), 1, 1, 1, 0, relu=True)
    dw, db = T(np.zeros_like(w)), T(np.zeros(w.shape[0], np.float32))
    dx = ops.conv2d_pool_backward(T(x), T(w), T(dy), argmax, dw, db, 1, 1, 1, 0, True, relu_y=y)
    return [dx, dw, db]


def _max_pool(T, x, dy):
    y, arg = ops.max_pool2d_forward(T(x), 3, 2, 2, 2, 1, 1)
    return [y, arg, ops.max_pool2d_backward(T(dy), arg, x.shape)]


def _avg_pool(T, x, dy, inc):
    return [ops.avg_pool2d_forward(T(x), 3, 2, 2, 2, 1, 1, inc),
            ops.avg_pool2d_backward(T(dy), x.shape, 3, 2, 2, 2, 1, 1, inc)]


def _act(T, name, x, dy):
    y = getattr(ops, name + "_forward")(T(x))
    saved = T(x) if name == "relu" else y
    return [y, getattr(ops, name + "_backward")(saved, T(dy))]


def _ce(T, logits, target):
    loss, probs = ops.cross_entropy_forward(T(logits), T(target))
    return [loss, probs, ops.cross_entropy_backward(probs, T(target), 2.0)]


def _sgd(T, p, g, buf):
    p, b = T(p), T(buf)
    for first in (True, False, False):
        ops.sgd_step_([p], [T(g)], [b], 0.1, 0.9, 0.0, 0.01, True, first)
    return [p, b]


def _adam(T, p, g):
    p, m, v = T(p), T(np.zeros_like(g)), T(np.zeros_like(g))
    for step in (1, 2, 3):
        ops.adam_step_([p], [T(g * step)], [m], [v], 0.01, 0.9, 0.999, 1e-8, 0.01, step)
    return [p, m, v]


def _elementwise(T, x, y):
    yt = T(y)
    ops.axpy_(yt, 0.5, T(x))
    ops.scale_(yt, 3.0)
    z = T(x)
    ops.fill_(z, 2.0)
    zs = [T(x), T(y)]
    ops.fill_tensors_(zs, -1.5)
    return [yt, ops.mul(T(x), T(y)), z, *zs]


CASE_NAMES = list(_cases(np.random.default_rng(0)).keys())


@pytest.mark.parametrize("name", CASE_NAMES)
def test_cpu_cuda_equivalence(cuda_device, name):
    fn, _ = _cases(np.random.default_rng(1))[name]
    cpu_out = fn(lambda a: to_tensor(a, "cpu"))
    fn, _ = _cases(np.random.default_rng(1))[name]
    gpu_out = fn(lambda a: to_tensor(a, "cuda"))
    assert len(cpu_out) == len(gpu_out)
    for k, (c, g) in enumerate(zip(cpu_out, gpu_out)):
        assert g.device == "cuda" and c.device == "cpu"
        assert c.shape == g.shape and c.dtype == g.dtype
        if c.dtype == "int32" or name == "dropout":
            np.testing.assert_array_equal(to_numpy(g), to_numpy(c), err_msg=f"{name}[{k}]")
        else:
            assert_close(to_numpy(g), to_numpy(c), rtol=2e-5, what=f"{name}[{k}]")


@pytest.mark.parametrize("name", CASE_NAMES)
def test_equivalence_cases_run_on_cpu(name):
    """The case table itself works (and is deterministic) without a GPU."""
    outs = [_cases(np.random.default_rng(1))[name][0](lambda a: to_tensor(a, "cpu"))
            for _ in range(2)]
    for a, b in zip(*outs):
        values = to_numpy(a)
        assert np.all(np.isfinite(values))
        np.testing.assert_array_equal(values, to_numpy(b))


def test_equivalence_table_covers_every_op():
    """Every op exported by nncore.ops appears in some CPU-vs-CUDA case."""
    import inspect
    source = inspect.getsource(_cases) + "".join(
        inspect.getsource(fn) for fn in (_gemm, _linear_backward, _bias, _conv_backward,
                                         _conv_pool_backward,
                                         _max_pool, _avg_pool, _ce, _sgd, _adam, _elementwise))
    names = [n for n in dir(ops) if not n.startswith("_") and callable(getattr(ops, n))]
    activations = {"relu", "sigmoid", "tanh", "softmax", "log_softmax"}
    missing = [n for n in names if f"ops.{n}" not in source
               and n.rsplit("_", 1)[0] not in activations]
    assert not missing, f"ops without a CPU-vs-CUDA case: {missing}"


def test_cuda_flags_are_consistent():
    assert isinstance(nc.cuda.is_compiled(), bool)
    assert isinstance(nc.cuda.is_available(), bool)
    if nc.cuda.is_available():
        assert nc.cuda.is_compiled()
    # references are importable and self-consistent on a trivial case
    assert ref.gemm(np.eye(2), np.eye(2), None).tolist() == [[1, 0], [0, 1]]
