"""GEMM, matmul, linear and bias ops against the float64 NumPy reference, on every device and
through every CPU micro-kernel path (avx512 14x32, avx2 6x16, generic 4x16)."""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

import nncore as nc
import nncore.functional as F
from nncore import ops
import reference as ref
from reference import assert_close, dot_tol, to_numpy, to_tensor

TRANSPOSES = list(itertools.product([False, True], repeat=2))

# (M, N, K): size 1, primes, non-multiples of every tile (mr 14/6/4, nr 32/16), K across the
# K-block boundary (kc 256/512), several N chunks (nb 512/640), the direct-B regime (M <= 4*mr)
# on both sides, M beyond one A panel (4096 rows), tall-skinny and short-wide.
GEMM_SHAPES = [
    (1, 1, 1), (1, 7, 13), (7, 1, 13), (13, 31, 1), (2, 3, 4), (31, 65, 127), (65, 127, 31),
    (127, 257, 65), (257, 13, 7), (14, 32, 384), (15, 33, 385), (28, 64, 769), (6, 16, 256),
    (5, 17, 257), (4, 16, 17), (56, 129, 11), (57, 129, 11), (24, 47, 3), (25, 48, 5),
    (1, 1000, 3), (1000, 1, 3), (3, 5, 1000), (9, 700, 9), (70, 1300, 5), (4100, 3, 5),
    (14, 32, 512), (15, 33, 513), (28, 64, 1025),
]


def make_gemm_operands(rng, M, N, K, trans_a, trans_b):
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
    c = rng.standard_normal((M, N)).astype(np.float32)
    return a, b, c


def check_gemm(device, rng, M, N, K, trans_a, trans_b, alpha=1.0, beta=0.0, nan_c=False):
    a, b, c = make_gemm_operands(rng, M, N, K, trans_a, trans_b)
    if nan_c:
        c[...] = np.nan
    ct = to_tensor(c, device)
    ops.gemm_(to_tensor(a, device), to_tensor(b, device), ct, trans_a, trans_b, alpha, beta)
    expected = ref.gemm(a, b, c, trans_a, trans_b, alpha, beta)
    # Error bound relative to the sum of |terms| of each entry (robust to cancellation).
    scale = ref.gemm(np.abs(a), np.abs(b), np.abs(c), trans_a, trans_b, abs(alpha), abs(beta))
    got = to_numpy(ct)
    assert np.all(np.isfinite(got)), "gemm produced non-finite values"
    tol = dot_tol(K)
    assert_close(got, expected, rtol=tol, atol=tol * 1e-3, scale=scale,
                 what=f"gemm M={M} N={N} K={K} ta={trans_a} tb={trans_b} a={alpha} b={beta}")


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("M,N,K", GEMM_SHAPES)
def test_gemm_shapes(device, rng, M, N, K, trans_a, trans_b):
    check_gemm(device, rng, M, N, K, trans_a, trans_b)


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 2.0), (-1.5, 0.25), (2.0, -1.0)])
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (13, 31, 7), (65, 33, 129), (130, 70, 400)])
def test_gemm_alpha_beta(device, rng, M, N, K, trans_a, trans_b, alpha, beta):
    check_gemm(device, rng, M, N, K, trans_a, trans_b, alpha, beta)


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (7, 13, 5), (31, 65, 300), (130, 70, 400)])
@pytest.mark.parametrize("alpha", [1.0, -0.5])
def test_gemm_beta0_ignores_nan_c(device, rng, M, N, K, trans_a, trans_b, alpha):
    check_gemm(device, rng, M, N, K, trans_a, trans_b, alpha, 0.0, nan_c=True)


def test_gemm_alpha0(device, rng):
    a, b, c = make_gemm_operands(rng, 9, 11, 5, False, False)
    nan_c = np.full_like(c, np.nan)
    ct = to_tensor(nan_c, device)
    ops.gemm_(to_tensor(a, device), to_tensor(b, device), ct, False, False, 0.0, 0.0)
    np.testing.assert_array_equal(to_numpy(ct), np.zeros_like(c))  # beta 0: C write-only
    ct = to_tensor(c, device)
    ops.gemm_(to_tensor(a, device), to_tensor(b, device), ct, False, False, 0.0, 0.5)
    assert_close(ct, 0.5 * c.astype(np.float64), rtol=1e-7)
    ct = to_tensor(c, device)
    ops.gemm_(to_tensor(a, device), to_tensor(b, device), ct, False, False, 0.0, 1.0)
    np.testing.assert_array_equal(to_numpy(ct), c)


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_gemm_large(device, rng, trans_a, trans_b):
    check_gemm(device, rng, 300, 500, 200, trans_a, trans_b, 1.0, 0.0)
    check_gemm(device, rng, 300, 500, 200, trans_a, trans_b, 0.75, 0.5)


def test_gemm_large_many_k_blocks(device, rng):
    check_gemm(device, rng, 96, 80, 2000, False, False, 1.0, 1.0)
    check_gemm(device, rng, 96, 80, 2000, True, True, 1.0, 0.0)



@pytest.mark.parametrize("beta,nan_c", [(0.0, True), (1.0, False)], ids=["beta0-nan-c", "beta1"])
def test_gemm_long_k_few_tiles(device, rng, beta, nan_c):
    """Weight-gradient shapes: C of a tile or a few, K = batch x pixels (LeNet-5's conv1 dW is
    6 x 25 x 200704 at batch 256). The GPU splits K over blocks and adds the slices' products in
    a fixed order: right, and the same bits every time."""
    for M, N, K, ta, tb in [(6, 25, 40000, False, True), (16, 150, 6400, False, True),
                            (25, 6, 9000, True, False)]:
        check_gemm(device, rng, M, N, K, ta, tb, 0.5, beta, nan_c=nan_c)
        a, b, c = make_gemm_operands(rng, M, N, K, ta, tb)
        at, bt = to_tensor(a, device), to_tensor(b, device)
        results = []
        for _ in range(2):
            ct = to_tensor(c, device)
            ops.gemm_(at, bt, ct, ta, tb, 1.0, beta)
            results.append(to_numpy(ct))
        np.testing.assert_array_equal(results[0], results[1])

@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_gemm_large_a_panel(device, rng, trans_a, trans_b):
    """Over 1 MiB of packed A per grid row (the AVX-512 kernel at 2+ threads): the threads of a
    row share one packed panel, with barriers, instead of each packing its own."""
    check_gemm(device, rng, 1200, 1280, 520, trans_a, trans_b, 1.0, 0.0)


def test_gemm_zero_k(device):
    """K == 0: the product is empty, so C = beta * C (beta 0: zeros)."""
    a = nc.zeros((3, 0), device=device)
    b = nc.zeros((0, 4), device=device)
    np.testing.assert_array_equal(to_numpy(ops.matmul(a, b)), np.zeros((3, 4)))
    c = to_tensor(np.full((3, 4), 2.0, np.float32), device)
    ops.gemm_(a, b, c, False, False, 1.0, 0.5)
    np.testing.assert_array_equal(to_numpy(c), np.full((3, 4), 1.0))


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (7, 13, 31), (65, 1, 127), (33, 257, 64)])
def test_matmul(device, rng, M, N, K, trans_a, trans_b):
    a, b, _ = make_gemm_operands(rng, M, N, K, trans_a, trans_b)
    y = ops.matmul(to_tensor(a, device), to_tensor(b, device), trans_a, trans_b)
    assert y.shape == (M, N) and y.device == device and y.dtype == "float32"
    scale = ref.matmul(np.abs(a), np.abs(b), trans_a, trans_b)
    assert_close(y, ref.matmul(a, b, trans_a, trans_b), rtol=dot_tol(K), scale=scale)


def test_functional_matmul(device, rng):
    a = rng.standard_normal((17, 23)).astype(np.float32)
    b = rng.standard_normal((23, 9)).astype(np.float32)
    y = F.matmul(to_tensor(a, device), to_tensor(b, device))
    assert_close(y, ref.matmul(a, b), rtol=dot_tol(23))
    # NumPy inputs are accepted (converted to CPU tensors).
    assert_close(F.matmul(a, b), ref.matmul(a, b), rtol=dot_tol(23))


# ---- property-based shapes ------------------------------------------------------------------

try:
    from hypothesis import given, strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    @given(M=st.integers(1, 80), N=st.integers(1, 80), K=st.integers(1, 300),
           trans_a=st.booleans(), trans_b=st.booleans(),
           alpha=st.sampled_from([1.0, -1.0, 0.5, 3.0]), beta=st.sampled_from([0.0, 1.0, -0.5]),
           seed=st.integers(0, 2**31 - 1))
    def test_gemm_property(device, M, N, K, trans_a, trans_b, alpha, beta, seed):
        check_gemm(device, np.random.default_rng(seed), M, N, K, trans_a, trans_b, alpha, beta,
                   nan_c=(beta == 0.0))


# ---- every CPU micro-kernel path --------------------------------------------------------------

CPU_KERNELS = ["avx512", "avx2", "generic"]


@pytest.fixture(params=CPU_KERNELS)
def cpu_gemm_kernel(request):
    """Forces one CPU GEMM micro-kernel for the test, then restores autodetection ("")."""
    name = request.param
    nc._C._force_cpu_gemm_kernel(name)
    try:
        active = nc._C.cpu_gemm_kernel()
        if active != name:
            pytest.skip(f"CPU GEMM kernel {name!r} cannot run on this CPU (clamped to {active!r})")
        yield name
    finally:
        ref.restore_cpu_gemm_kernel()


# Per kernel (mr x nr = 14x32, 6x16, 4x16): full tiles, every row remainder, partial N slivers,
# several K blocks, direct-B path (M <= 4*mr, B not transposed) and the packed path. With
# trans_b and not trans_a, K >= 256 and N <= 32 or M*N <= 4096 take the inner-product path
# (tiles 6x4 / 4x3): row and column remainders, K tails off the vector width, several K blocks.
KERNEL_SHAPES = [
    (1, 1, 1), (3, 5, 2), (4, 16, 8), (6, 16, 16), (14, 32, 32), (5, 15, 7), (13, 31, 9),
    (15, 33, 17), (17, 47, 300), (29, 65, 385), (56, 97, 13), (57, 97, 13), (43, 255, 260),
    (97, 130, 515), (200, 100, 50), (1, 300, 1), (300, 1, 300), (127, 1100, 3),
    (6, 25, 1031), (16, 150, 1700), (23, 31, 257), (1, 1, 2500), (61, 64, 263),
]


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("M,N,K", KERNEL_SHAPES)
def test_cpu_gemm_kernel_paths(cpu_gemm_kernel, rng, M, N, K, trans_a, trans_b):
    check_gemm("cpu", rng, M, N, K, trans_a, trans_b, 1.0, 0.0, nan_c=True)
    check_gemm("cpu", rng, M, N, K, trans_a, trans_b, -0.5, 1.5)


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_cpu_gemm_kernel_large(cpu_gemm_kernel, rng, trans_a, trans_b):
    check_gemm("cpu", rng, 300, 500, 200, trans_a, trans_b, 1.0, 0.0, nan_c=True)


def test_cpu_gemm_kernels_agree(rng):
    """Every runnable path gives (nearly) the same answer as the auto-selected one."""
    a = rng.standard_normal((61, 77)).astype(np.float32)
    b = rng.standard_normal((77, 45)).astype(np.float32)
    auto = nc._C.cpu_gemm_kernel()
    results = {}
    try:
        for name in CPU_KERNELS:
            nc._C._force_cpu_gemm_kernel(name)
            results[nc._C.cpu_gemm_kernel()] = to_numpy(ops.matmul(to_tensor(a), to_tensor(b)))
    finally:
        ref.restore_cpu_gemm_kernel()
    assert "generic" in results
    for name, value in results.items():
        assert_close(value, results["generic"], rtol=1e-5, what=name)
    assert nc._C.cpu_gemm_kernel() == auto


def test_cpu_gemm_force_restore():
    initial = nc._C.cpu_gemm_kernel()
    assert initial in CPU_KERNELS
    try:
        nc._C._force_cpu_gemm_kernel("")
        best = nc._C.cpu_gemm_kernel()  # autodetected: the best path this CPU runs
        assert CPU_KERNELS.index(best) <= CPU_KERNELS.index(initial)
        if "NNCORE_CPU_KERNEL" not in os.environ:
            assert best == initial
        nc._C._force_cpu_gemm_kernel("generic")
        assert nc._C.cpu_gemm_kernel() == "generic"
        nc._C._force_cpu_gemm_kernel("auto")
        assert nc._C.cpu_gemm_kernel() == best
        nc._C._force_cpu_gemm_kernel("generic")
        nc._C._force_cpu_gemm_kernel("")
        assert nc._C.cpu_gemm_kernel() == best
    finally:
        ref.restore_cpu_gemm_kernel()
    assert nc._C.cpu_gemm_kernel() == initial


# ---- linear and bias ------------------------------------------------------------------------

LINEAR_SHAPES = [(1, 1, 1), (1, 7, 13), (5, 3, 1), (13, 31, 7), (64, 65, 127), (200, 10, 784),
                 (3, 257, 31)]


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("N,IN,OUT", LINEAR_SHAPES)
def test_linear_forward(device, rng, N, IN, OUT, with_bias):
    x = rng.standard_normal((N, IN)).astype(np.float32)
    w = rng.standard_normal((OUT, IN)).astype(np.float32)
    b = rng.standard_normal(OUT).astype(np.float32) if with_bias else None
    y = ops.linear_forward(to_tensor(x, device), to_tensor(w, device),
                           None if b is None else to_tensor(b, device))
    assert y.shape == (N, OUT)
    scale = ref.linear_forward(np.abs(x), np.abs(w), None if b is None else np.abs(b))
    assert_close(y, ref.linear_forward(x, w, b), rtol=dot_tol(IN), scale=scale)
    y2 = F.linear(to_tensor(x, device), to_tensor(w, device),
                  None if b is None else to_tensor(b, device))
    np.testing.assert_array_equal(to_numpy(y2), to_numpy(y))


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("N,IN,OUT", LINEAR_SHAPES[::2])
def test_linear_forward_relu_is_linear_then_relu(device, rng, N, IN, OUT, with_bias):
    """relu=True applies ReLU in the bias pass: the bits of linear_forward then relu_forward,
    NaN and infinities included."""
    x = rng.standard_normal((N, IN)).astype(np.float32)
    x[0, 0] = np.nan
    if N > 1:
        x[-1, -1] = np.inf
    w = rng.standard_normal((OUT, IN)).astype(np.float32)
    b = rng.standard_normal(OUT).astype(np.float32) if with_bias else None
    args = (to_tensor(x, device), to_tensor(w, device), None if b is None else to_tensor(b, device))
    fused = to_numpy(ops.linear_forward(*args, relu=True))
    separate = to_numpy(ops.relu_forward(ops.linear_forward(*args)))
    np.testing.assert_array_equal(fused, separate)
    assert np.isnan(fused[0]).all() and (fused[~np.isnan(fused)] >= 0).all()
    if N * OUT >= 32:  # the ReLU both kept and zeroed values
        assert (fused == 0).any() and (fused > 0).any()


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("N,IN,OUT", LINEAR_SHAPES + [(1, 4096, 10), (256, 400, 120)])
def test_linear_forward_is_the_gemm_then_the_bias_pass(device, rng, N, IN, OUT, with_bias, relu):
    """linear_forward applies bias and ReLU after the GEMM (on the GPU in the GEMM's epilogue, or
    in its split-K sum for a long K and few tiles, e.g. (1, 4096, 10)): the bits of gemm_, then
    bias_add_, then relu_forward, NaN and -0 included."""
    x = rng.standard_normal((N, IN)).astype(np.float32)
    x[0, 0] = np.nan
    w = rng.standard_normal((OUT, IN)).astype(np.float32)
    b = rng.standard_normal(OUT).astype(np.float32)
    b[0] = -0.0
    xt, wt, bt = to_tensor(x, device), to_tensor(w, device), to_tensor(b, device)
    fused = to_numpy(ops.linear_forward(xt, wt, bt if with_bias else None, relu=relu))
    y = nc.zeros((N, OUT), device=device)
    ops.gemm_(xt, wt, y, trans_b=True)
    if with_bias:
        ops.bias_add_(y, bt)
    separate = to_numpy(ops.relu_forward(y) if relu else y)
    np.testing.assert_array_equal(fused, separate)
    numbers = ~np.isnan(separate)
    np.testing.assert_array_equal(np.signbit(fused[numbers]), np.signbit(separate[numbers]))


@pytest.mark.parametrize("N,IN,OUT", LINEAR_SHAPES)
def test_linear_backward(device, rng, N, IN, OUT):
    x = rng.standard_normal((N, IN)).astype(np.float32)
    w = rng.standard_normal((OUT, IN)).astype(np.float32)
    dy = rng.standard_normal((N, OUT)).astype(np.float32)
    dw0 = rng.standard_normal((OUT, IN)).astype(np.float32)
    db0 = rng.standard_normal(OUT).astype(np.float32)
    dw, db = to_tensor(dw0, device), to_tensor(db0, device)
    dx = ops.linear_backward(to_tensor(x, device), to_tensor(w, device), to_tensor(dy, device),
                             dw, db, True)
    rdx, rdw, rdb = ref.linear_backward(x, w, dy)
    sdx, sdw, sdb = ref.linear_backward(np.abs(x), np.abs(w), np.abs(dy))
    assert_close(dx, rdx, rtol=dot_tol(OUT), scale=sdx, what="dx")
    # dw and db are accumulated into what was there.
    assert_close(dw, dw0 + rdw, rtol=dot_tol(N), scale=sdw + np.abs(dw0), what="dw")
    assert_close(db, db0 + rdb, rtol=dot_tol(N), scale=sdb + np.abs(db0), what="db")


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("N,IN,OUT", LINEAR_SHAPES)
def test_linear_backward_relu_is_relu_then_linear(device, rng, N, IN, OUT, with_bias):
    """relu_y applies the fused ReLU's mask in the bias gradient's pass: dx, dw and db are the
    bits of relu_backward then linear_backward (and match the float64 reference)."""
    x = rng.standard_normal((N, IN)).astype(np.float32)
    w = rng.standard_normal((OUT, IN)).astype(np.float32)
    relu_y = np.maximum(rng.standard_normal((N, OUT)), 0).astype(np.float32)
    dy = rng.standard_normal((N, OUT)).astype(np.float32)
    dy[0, 0] = np.inf if relu_y[0, 0] == 0 else dy[0, 0]  # masked away: gives 0, not NaN
    dw0 = rng.standard_normal((OUT, IN)).astype(np.float32)
    db0 = rng.standard_normal(OUT).astype(np.float32)
    xt, wt, yt, dyt = (to_tensor(a, device) for a in (x, w, relu_y, dy))
    dw, db = to_tensor(dw0, device), to_tensor(db0, device) if with_bias else None
    dx = ops.linear_backward(xt, wt, dyt, dw, db, True, relu_y=yt)
    dw_sep = to_tensor(dw0, device)
    db_sep = to_tensor(db0, device) if with_bias else None
    dx_sep = ops.linear_backward(xt, wt, ops.relu_backward(yt, dyt), dw_sep, db_sep, True)
    np.testing.assert_array_equal(to_numpy(dx), to_numpy(dx_sep))
    np.testing.assert_array_equal(to_numpy(dw), to_numpy(dw_sep))
    g = ref.relu_backward(relu_y, dy)
    rdx, rdw, rdb = ref.linear_backward(x, w, g)
    sdx, sdw, sdb = ref.linear_backward(np.abs(x), np.abs(w), np.abs(g))
    assert_close(dx, rdx, rtol=dot_tol(OUT), scale=sdx, what="dx")
    assert_close(dw, dw0 + rdw, rtol=dot_tol(N), scale=sdw + np.abs(dw0), what="dw")
    if with_bias:
        np.testing.assert_array_equal(to_numpy(db), to_numpy(db_sep))
        assert_close(db, db0 + rdb, rtol=dot_tol(N), scale=sdb + np.abs(db0), what="db")
    assert ops.linear_backward(xt, wt, dyt, dw, db, False, relu_y=yt) is None


def test_linear_backward_accumulates(device, rng):
    x = rng.standard_normal((9, 13)).astype(np.float32)
    w = rng.standard_normal((7, 13)).astype(np.float32)
    dy = rng.standard_normal((9, 7)).astype(np.float32)
    xt, wt, dyt = to_tensor(x, device), to_tensor(w, device), to_tensor(dy, device)
    dw, db = nc.zeros((7, 13), device=device), nc.zeros((7,), device=device)
    ops.linear_backward(xt, wt, dyt, dw, db, False)
    once_w, once_b = to_numpy(dw), to_numpy(db)
    assert np.any(once_w != 0) and np.any(once_b != 0)
    ops.linear_backward(xt, wt, dyt, dw, db, False)
    assert_close(dw, 2 * once_w, rtol=1e-6, what="dw twice")
    assert_close(db, 2 * once_b, rtol=1e-6, what="db twice")


def test_linear_backward_options(device, rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    w = rng.standard_normal((5, 6)).astype(np.float32)
    dy = rng.standard_normal((4, 5)).astype(np.float32)
    dw = nc.zeros((5, 6), device=device)
    assert ops.linear_backward(to_tensor(x, device), to_tensor(w, device), to_tensor(dy, device),
                               dw, None, False) is None
    _, rdw, _ = ref.linear_backward(x, w, dy)
    assert_close(dw, rdw, rtol=1e-5)


def test_linear_gradcheck(rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    w = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    r = rng.standard_normal((3, 4))
    dw, db = nc.zeros((4, 5)), nc.zeros((4,))
    dx = ops.linear_backward(to_tensor(x), to_tensor(w), to_tensor(r.astype(np.float32)), dw,
                             db, True)
    loss_x = lambda xx: float((to_numpy(ops.linear_forward(to_tensor(xx), to_tensor(w),
                                                           to_tensor(b))) * r).sum())
    loss_w = lambda ww: float((to_numpy(ops.linear_forward(to_tensor(x), to_tensor(ww),
                                                           to_tensor(b))) * r).sum())
    loss_b = lambda bb: float((to_numpy(ops.linear_forward(to_tensor(x), to_tensor(w),
                                                           to_tensor(bb))) * r).sum())
    ref.check_grad(loss_x, x, to_numpy(dx), what="linear dx")
    ref.check_grad(loss_w, w, to_numpy(dw), what="linear dw")
    ref.check_grad(loss_b, b, to_numpy(db), what="linear db")


# (256, 6, 28, 28): LeNet-5 conv1's gradient at batch 256, few channels of many values (the GPU
# sums each channel in chunks of rows, then the chunks in order).
@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (3, 13, 1), (2, 5, 7), (2, 3, 4, 5),
                                   (4, 65, 3, 3), (2, 1, 31, 17), (256, 6, 28, 28)])
def test_bias_add_and_grad(device, rng, shape):
    y = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape[1]).astype(np.float32)
    yt = to_tensor(y, device)
    ops.bias_add_(yt, to_tensor(b, device))
    assert_close(yt, ref.bias_add(y, b), rtol=1e-6)
    db0 = rng.standard_normal(shape[1]).astype(np.float32)
    db = to_tensor(db0, device)
    ops.bias_grad_(to_tensor(y, device), db)
    n = y.size // shape[1]
    scale = ref.bias_grad(np.abs(y)) + np.abs(db0)
    assert_close(db, db0 + ref.bias_grad(y), rtol=dot_tol(n), scale=scale)


# ---- float32 matmul precision: TF32 tensor cores on the GPU, opt-in --------------------------

@pytest.fixture
def restore_matmul_precision():
    yield
    nc.set_float32_matmul_precision("highest")


def round_to_tf32(x):
    """x rounded to TF32 as cvt.rna.tf32.f32 does (finite x): 10 mantissa bits, to nearest, ties
    away from zero (add half of the dropped 13 bits' range to the magnitude bits, then cut)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def test_round_to_tf32_helper():
    # 1 + 2**-11 is a tie between 1 and 1 + 2**-10: away from zero; just below it rounds down.
    x = np.array([1 + 2**-11, -(1 + 2**-11), 1 + 2**-11 - 2**-23, 3.0, 0.0], np.float32)
    assert round_to_tf32(x).tolist() == [1 + 2**-10, -(1 + 2**-10), 1.0, 3.0, 0.0]


def test_matmul_precision_default_and_set(restore_matmul_precision):
    assert nc.get_float32_matmul_precision() == "highest"
    nc.set_float32_matmul_precision("high")
    assert nc.get_float32_matmul_precision() == "high"
    if nc.cuda.is_compiled():
        assert nc._C.cuda.allow_tf32()
    nc.set_float32_matmul_precision("highest")
    assert nc.get_float32_matmul_precision() == "highest"
    if nc.cuda.is_compiled():
        assert not nc._C.cuda.allow_tf32()


@pytest.mark.parametrize("bad,error,match", [
    ("medium", ValueError, "one of 'highest', 'high', got 'medium'"),
    ("HIGH", ValueError, "got 'HIGH'"), ("", ValueError, "got ''"),
    (1, TypeError, "must be a str, got int"), (None, TypeError, "got NoneType")])
def test_matmul_precision_refuses(restore_matmul_precision, bad, error, match):
    nc.set_float32_matmul_precision("high")
    with pytest.raises(error, match=match):
        nc.set_float32_matmul_precision(bad)
    assert nc.get_float32_matmul_precision() == "high"  # a refused call changes nothing


def test_matmul_precision_high_leaves_the_cpu_in_fp32(restore_matmul_precision, rng):
    a, b, c = make_gemm_operands(rng, 300, 260, 150, False, False)
    outputs = []
    for precision in ("highest", "high"):
        nc.set_float32_matmul_precision(precision)
        ct = to_tensor(c)
        ops.gemm_(to_tensor(a), to_tensor(b), ct, False, False, 1.0, 0.5)
        outputs.append(ct.numpy())
    assert np.array_equal(outputs[0], outputs[1])


@pytest.fixture
def tf32_rows(cuda_device) -> int:
    """Rows M for which an M x 2048 output fills this GPU with 128 x 128 tiles (16 per 128 rows;
    at least 2048), so that "high" takes the TF32 kernel. Skips below compute capability 8.0,
    where "high" stays FP32."""
    props = nc.cuda.get_device_properties()
    if props.major < 8:
        pytest.skip(f"TF32 tensor cores need compute capability 8.0; {props.name} has "
                    f"{props.major}.{props.minor}")
    return 128 * max(16, -(-props.multi_processor_count // 16))


# K = 100: a partial slice of 16.
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_tf32_gemm_on_cuda(cuda_device, tf32_rows, restore_matmul_precision, rng, trans_a,
                          trans_b):
    M, N, K = tf32_rows, 2048, 100
    a, b, c = make_gemm_operands(rng, M, N, K, trans_a, trans_b)
    nc.set_float32_matmul_precision("high")
    ct = to_tensor(c, cuda_device)
    ops.gemm_(to_tensor(a, cuda_device), to_tensor(b, cuda_device), ct, trans_a, trans_b, 0.5, 0.25)
    got = to_numpy(ct)
    scale = ref.gemm(np.abs(a), np.abs(b), np.abs(c), trans_a, trans_b, 0.5, 0.25)
    expected = ref.gemm(round_to_tf32(a), round_to_tf32(b), c, trans_a, trans_b, 0.5, 0.25)
    what = f"TF32 gemm ta={trans_a} tb={trans_b}"
    assert_close(got, expected, rtol=dot_tol(K), atol=0.0, scale=scale, what=what)
    # TF32 in effect: against the unrounded operands the error is ~1e-4 of the scale (FP32: ~1e-7).
    fp32_exact = ref.gemm(a, b, c, trans_a, trans_b, 0.5, 0.25)
    assert np.max(np.abs(got - fp32_exact) / scale) > 2e-5, f"{what}: the result looks FP32"


@pytest.mark.parametrize("relu", [False, True])
def test_tf32_linear_forward_on_cuda(cuda_device, tf32_rows, restore_matmul_precision, rng, relu):
    x = rng.standard_normal((tf32_rows, 100)).astype(np.float32)
    w = rng.standard_normal((2048, 100)).astype(np.float32)
    b = rng.standard_normal(2048).astype(np.float32)
    nc.set_float32_matmul_precision("high")
    y = ops.linear_forward(to_tensor(x, cuda_device), to_tensor(w, cuda_device),
                           to_tensor(b, cuda_device), relu)
    expected = ref.linear_forward(round_to_tf32(x), round_to_tf32(w), b)
    scale = ref.linear_forward(np.abs(x), np.abs(w), np.abs(b))
    if relu:
        expected = np.maximum(expected, 0.0)
    assert_close(y, expected, rtol=dot_tol(100), atol=0.0, scale=scale, what="TF32 linear")
