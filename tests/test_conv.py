"""im2col/col2im and conv2d forward/backward against direct (window-sum) NumPy references."""
from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nncore as nc
import nncore.functional as F
from nncore import ops
import reference as ref
from reference import assert_close, dot_tol, to_numpy, to_tensor

# (N, Cin, H, W, Cout, kh, kw, sh, sw, ph, pw): strides 1/2/3, padding 0..2, rectangular kernels
# (3x2, 1x5, 5x1), kernel == padded input, 1x1 kernels, batch 1 and > 1, Cin/Cout 1 and > 1,
# primes and non-square images.
CONV_CASES = [
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0),
    (1, 1, 5, 5, 1, 3, 3, 1, 1, 0, 0),
    (2, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1),
    (1, 1, 8, 8, 1, 3, 3, 2, 2, 1, 1),
    (3, 2, 13, 11, 5, 3, 2, 2, 1, 1, 0),
    (2, 3, 9, 10, 2, 1, 5, 1, 3, 0, 2),
    (2, 2, 10, 9, 3, 5, 1, 3, 1, 2, 0),
    (1, 4, 6, 6, 3, 6, 6, 1, 1, 0, 0),       # kernel == input: 1x1 output
    (2, 3, 3, 4, 2, 5, 6, 1, 1, 1, 1),       # kernel == padded input
    (2, 1, 4, 4, 7, 8, 8, 1, 1, 2, 2),       # kernel == padded input, padding 2
    (4, 5, 7, 7, 6, 1, 1, 1, 1, 0, 0),       # 1x1 convolution
    (2, 3, 7, 7, 4, 1, 1, 2, 2, 1, 1),       # 1x1 with stride and padding
    (1, 6, 31, 17, 16, 5, 5, 1, 1, 2, 2),    # LeNet-like
    (5, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2),
    (2, 16, 10, 10, 13, 3, 3, 3, 3, 2, 2),
    (3, 7, 12, 5, 1, 4, 2, 2, 3, 1, 2),
    (1, 2, 1, 9, 3, 1, 3, 1, 2, 0, 1),       # H == 1
    (2, 3, 9, 9, 5, 3, 3, 3, 3, 0, 0),       # stride leaves border pixels unread
    (2, 33, 6, 6, 17, 3, 3, 1, 1, 1, 1),
]

IDS = ["N{}C{}H{}W{}O{}k{}x{}s{}x{}p{}x{}".format(*c) for c in CONV_CASES]


def conv_data(rng, N, Cin, H, W, Cout, kh, kw, sh, sw, ph, pw):
    x = rng.standard_normal((N, Cin, H, W)).astype(np.float32)
    w = rng.standard_normal((Cout, Cin, kh, kw)).astype(np.float32)
    b = rng.standard_normal(Cout).astype(np.float32)
    OH, OW = ref.conv_out_size(H, kh, sh, ph), ref.conv_out_size(W, kw, sw, pw)
    dy = rng.standard_normal((N, Cout, OH, OW)).astype(np.float32)
    return x, w, b, dy


@pytest.mark.parametrize("case", CONV_CASES, ids=IDS)
def test_im2col(device, rng, case):
    N, Cin, H, W, _, kh, kw, sh, sw, ph, pw = case
    x = rng.standard_normal((N, Cin, H, W)).astype(np.float32)
    col = ops.im2col(to_tensor(x, device), kh, kw, sh, sw, ph, pw)
    expected = ref.im2col(x, kh, kw, sh, sw, ph, pw)
    assert col.shape == expected.shape
    np.testing.assert_array_equal(to_numpy(col), expected)  # pure data movement: exact


@pytest.mark.parametrize("OW", range(1, 34))
def test_im2col_row_widths(device, rng, OW):
    """Stride 1: every output row length the CPU copies in its own way (scalars; chunks of 4, 8
    or 16, overlapping or not; a chunk of 8 and one exact move of 1, 2 or 4), unpadded and padded."""
    for ph, pw in ((0, 0), (1, 1)):
        x = rng.standard_normal((2, 2, 6, OW + 2 - 2 * pw)).astype(np.float32)
        col = ops.im2col(to_tensor(x, device), 3, 3, 1, 1, ph, pw)
        np.testing.assert_array_equal(to_numpy(col), ref.im2col(x, 3, 3, 1, 1, ph, pw))


@pytest.mark.parametrize("case", CONV_CASES, ids=IDS)
def test_col2im(device, rng, case):
    N, Cin, H, W, _, kh, kw, sh, sw, ph, pw = case
    OH, OW = ref.conv_out_size(H, kh, sh, ph), ref.conv_out_size(W, kw, sw, pw)
    col = rng.standard_normal((Cin * kh * kw, N * OH * OW)).astype(np.float32)
    x = ops.col2im(to_tensor(col, device), (N, Cin, H, W), kh, kw, sh, sw, ph, pw)
    expected = ref.col2im(col, (N, Cin, H, W), kh, kw, sh, sw, ph, pw)
    scale = ref.col2im(np.abs(col), (N, Cin, H, W), kh, kw, sh, sw, ph, pw)
    assert_close(x, expected, rtol=dot_tol(kh * kw), scale=scale)


def test_col2im_is_adjoint_of_im2col(device, rng):
    """<im2col(x), c> == <x, col2im(c)>, also checks the two references against each other."""
    N, C, H, W, kh, kw, sh, sw, ph, pw = 2, 3, 9, 8, 3, 2, 2, 3, 1, 2
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    OH, OW = ref.conv_out_size(H, kh, sh, ph), ref.conv_out_size(W, kw, sw, pw)
    c = rng.standard_normal((C * kh * kw, N * OH * OW)).astype(np.float32)
    lhs = (to_numpy(ops.im2col(to_tensor(x, device), kh, kw, sh, sw, ph, pw)) * c).sum()
    rhs = (x * to_numpy(ops.col2im(to_tensor(c, device), x.shape, kh, kw, sh, sw, ph, pw))).sum()
    assert abs(lhs - rhs) <= 1e-4 * (abs(lhs) + 1)
    rl = (ref.im2col(x, kh, kw, sh, sw, ph, pw) * c).sum()
    rr = (x * ref.col2im(c, x.shape, kh, kw, sh, sw, ph, pw)).sum()
    assert abs(rl - rr) <= 1e-10 * (abs(rl) + 1)


def check_conv_forward(device, rng, case, with_bias=True, relu=False):
    N, Cin, H, W, Cout, kh, kw, sh, sw, ph, pw = case
    x, w, b, _ = conv_data(rng, *case)
    b = b if with_bias else None
    y = ops.conv2d_forward(to_tensor(x, device), to_tensor(w, device),
                           None if b is None else to_tensor(b, device), sh, sw, ph, pw, relu=relu)
    expected = ref.conv2d_forward(x, w, b, sh, sw, ph, pw)
    scale = ref.conv2d_forward(np.abs(x), np.abs(w), None if b is None else np.abs(b),
                               sh, sw, ph, pw)
    if relu:
        expected = np.maximum(expected, 0.0)
    assert y.shape == expected.shape
    assert_close(y, expected, rtol=dot_tol(Cin * kh * kw), scale=scale, what=f"conv fwd {case}")


def relu_output_like(rng, shape):
    """A stand-in for the output of a fused ReLU: about half zeros, the rest positive."""
    return np.maximum(rng.standard_normal(shape), 0.0).astype(np.float32)


def check_conv_backward(device, rng, case, relu=False, need_dx=True):
    N, Cin, H, W, Cout, kh, kw, sh, sw, ph, pw = case
    x, w, _, dy = conv_data(rng, *case)
    relu_y = relu_output_like(rng, dy.shape) if relu else None
    dw0 = rng.standard_normal(w.shape).astype(np.float32)
    db0 = rng.standard_normal(Cout).astype(np.float32)
    dw, db = to_tensor(dw0, device), to_tensor(db0, device)
    dx = ops.conv2d_backward(to_tensor(x, device), to_tensor(w, device), to_tensor(dy, device),
                             dw, db, sh, sw, ph, pw, need_dx,
                             relu_y=None if relu_y is None else to_tensor(relu_y, device))
    g = dy * (relu_y > 0) if relu else dy  # the fused ReLU's backward comes first
    rdx, rdw, rdb = ref.conv2d_backward(x, w, g, sh, sw, ph, pw)
    sdx, sdw, sdb = ref.conv2d_backward(np.abs(x), np.abs(w), np.abs(g), sh, sw, ph, pw)
    OH, OW = dy.shape[2:]
    if need_dx:
        assert dx.shape == x.shape
        assert_close(dx, rdx, rtol=dot_tol(Cout * kh * kw), scale=sdx, what=f"conv dx {case}")
    else:
        assert dx is None
    assert_close(dw, dw0 + rdw, rtol=dot_tol(N * OH * OW), scale=sdw + np.abs(dw0),
                 what=f"conv dw {case}")
    assert_close(db, db0 + rdb, rtol=dot_tol(N * OH * OW), scale=sdb + np.abs(db0),
                 what=f"conv db {case}")


# Padding past the kernel: windows that read only padding (zeros), and on the CPU buffers that
# hold only the part of the padded plane the windows on the image read.
LARGE_PADDING_CASES = [
    (2, 2, 4, 5, 3, 3, 3, 1, 1, 5, 7),
    (1, 1, 4, 4, 2, 3, 3, 700, 700, 1000, 1000),
    (2, 1, 6, 5, 2, 2, 3, 5, 4, 4, 6),
    (1, 2, 4, 4, 2, 3, 3, 4000, 2, 4000, 9),  # every row of windows on padding only
    (3, 2, 30, 30, 2, 3, 3, 30, 29, 40, 40),
]
LARGE_PADDING_IDS = ["N{}C{}H{}W{}O{}k{}x{}s{}x{}p{}x{}".format(*c) for c in LARGE_PADDING_CASES]


@pytest.mark.parametrize("case", LARGE_PADDING_CASES, ids=LARGE_PADDING_IDS)
def test_large_padding(device, rng, case):
    test_im2col(device, rng, case)
    test_col2im(device, rng, case)
    check_conv_forward(device, rng, case)
    check_conv_backward(device, rng, case)


def test_padding_far_larger_than_the_image(device):
    """Paddings whose padded plane could not be held in memory: the windows on padding give 0."""
    x, w = nc.tensor(np.ones((1, 1, 4, 4), np.float32), device), \
        nc.tensor(np.ones((1, 1, 3, 3), np.float32), device)
    # PyTorch: torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3),
    # stride=2**17, padding=2**17) is [[0, 0, 0], [0, 9, 0], [0, 0, 0]].
    y = F.conv2d(x, w, stride=2**17, padding=2**17)
    np.testing.assert_array_equal(y.numpy(), [[[[0, 0, 0], [0, 9, 0], [0, 0, 0]]]])
    col = ops.im2col(x, 3, 3, 2**17, 2**17, 2**17, 2**17)
    expected = np.zeros((9, 9), np.float32)
    expected[:, 4] = 1.0  # only the middle window reaches the image, all of its taps on it
    np.testing.assert_array_equal(col.numpy(), expected)
    for stride, padding in (((2**62, 2**62), (2**61, 2**61)), ((2**62, 1), (2**61, 0))):
        y = ops.conv2d_forward(x, w, None, *stride, *padding)  # every window on padding
        np.testing.assert_array_equal(y.numpy(), np.zeros(y.shape))
    # width: windows 0 and 2 on padding, window 1 on columns 0..2; height: stride 1, padding 1
    x_back = ops.col2im(nc.tensor(np.ones((9, 12), np.float32), device), (1, 1, 4, 4), 3, 3,
                        1, 2**40, 1, 2**40)
    np.testing.assert_array_equal(x_back.numpy()[0, 0], [[2, 2, 2, 0], [3, 3, 3, 0],
                                                         [3, 3, 3, 0], [2, 2, 2, 0]])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_im2col_buffer_allocation_failure_is_a_memory_error():
    """A failed allocation inside the kernel's OpenMP region surfaces as MemoryError (an
    exception leaving the region called std::terminate). Run in a child under an address-space
    limit that leaves no room for the im2col buffer (the box of 4001 x 4001 floats that the
    windows on the image read)."""
    code = textwrap.dedent("""
        import numpy as np, nncore as nc
        x = nc.tensor(np.ones((1, 1, 4000, 4000), np.float32))
    """) + ref.ADDRESS_LIMIT_PRELUDE + textwrap.dedent("""
        limit_address_space(40 << 20)
        try:
            nc.ops.im2col(x, 2, 2, 3999, 3999, 1, 1)
        except MemoryError:
            print("MemoryError")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "MemoryError", result.stderr


@pytest.mark.parametrize("kernel", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("cin,k", [(2, 2), (1, 3), (6, 3), (1, 4)])  # K = 8, 9, 54, 16 taps
def test_direct_weight_gradient_reads_only_written_tap_offsets(kernel, cin, k):
    """The direct algorithm's weight gradient takes dot tiles of 6 taps (AVX2, generic) or 8
    (AVX-512) over the K = C*kh*kw tap offsets, which were zero-padded only to a multiple of 8:
    at K = 8 or 16 a 6-tap tile read offsets that were never written, and with a scratch block
    left holding other data they pointed anywhere (SIGSEGV; found by fuzzing against PyTorch).
    A child process, so that a crash fails this test rather than ending the run; the kernel
    is clamped to what the CPU runs."""
    code = textwrap.dedent(f"""
        import sys
        import numpy as np, nncore as nc
        from nncore import ops
        nc._C._force_cpu_gemm_kernel("{kernel}")
        nc._C._force_cpu_conv_algorithm("direct")
        junk = [nc.tensor(np.full(s, 1e9, np.float32)) for s in range(1, 20000, 3)]
        del junk  # the allocator's cache now holds blocks full of 1e9
        rng = np.random.default_rng(0)
        x = rng.standard_normal((3, {cin}, 7, 5)).astype(np.float32)
        w = rng.standard_normal((2, {cin}, {k}, {k})).astype(np.float32)
        dy = rng.standard_normal((3, 2, 10 - {k}, 8 - {k})).astype(np.float32)
        dw = nc.zeros(w.shape)
        ops.conv2d_backward(nc.tensor(x), nc.tensor(w), nc.tensor(dy), dw, None, 1, 1, 1, 1,
                            False)
        np.save(sys.stdout.buffer, dw.numpy())
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    dw = np.load(io.BytesIO(result.stdout))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, cin, 7, 5)).astype(np.float32)
    w = rng.standard_normal((2, cin, k, k)).astype(np.float32)
    dy = rng.standard_normal((3, 2, 10 - k, 8 - k)).astype(np.float32)
    assert_close(dw, ref.conv2d_backward(x, w, dy, 1, 1, 1, 1)[1], rtol=1e-5)


@pytest.mark.parametrize("case", CONV_CASES, ids=IDS)
def test_conv2d_forward(device, rng, case):
    check_conv_forward(device, rng, case)


@pytest.mark.parametrize("case", CONV_CASES[:6], ids=IDS[:6])
def test_conv2d_forward_no_bias(device, rng, case):
    check_conv_forward(device, rng, case, with_bias=False)


@pytest.mark.parametrize("case", CONV_CASES, ids=IDS)
def test_conv2d_backward(device, rng, case):
    check_conv_backward(device, rng, case)


@pytest.mark.parametrize("case", CONV_CASES, ids=IDS)
def test_conv2d_fused_relu_forward(device, rng, case):
    check_conv_forward(device, rng, case, relu=True)
    if case in CONV_CASES[:6]:
        check_conv_forward(device, rng, case, with_bias=False, relu=True)


@pytest.mark.parametrize("case", CONV_CASES, ids=IDS)
def test_conv2d_fused_relu_backward(device, rng, case):
    check_conv_backward(device, rng, case, relu=True)


def test_conv2d_fused_relu_matches_separate_ops_exactly(device, rng):
    """Fused bias + ReLU give the very bits of conv, then relu; NaN stays NaN, like relu."""
    case = (3, 2, 9, 8, 5, 3, 3, 1, 1, 1, 1)
    N, Cin, H, W, Cout, kh, kw, sh, sw, ph, pw = case
    x, w, b, dy = conv_data(rng, *case)
    x[1, 0, 4, 4] = np.nan
    xt, wt, bt = to_tensor(x, device), to_tensor(w, device), to_tensor(b, device)
    fused = to_numpy(ops.conv2d_forward(xt, wt, bt, sh, sw, ph, pw, relu=True))
    separate = to_numpy(ops.relu_forward(ops.conv2d_forward(xt, wt, bt, sh, sw, ph, pw)))
    assert np.isnan(fused[1]).any() and not np.isnan(fused[0]).any()
    np.testing.assert_array_equal(fused, separate)
    # Backward: the mask of relu_y, then the plain backward of the masked gradient.
    y = to_tensor(np.nan_to_num(fused), device)
    dw1, db1 = nc.zeros(w.shape, device=device), nc.zeros((Cout,), device=device)
    dw2, db2 = nc.zeros(w.shape, device=device), nc.zeros((Cout,), device=device)
    xt = to_tensor(np.nan_to_num(x), device)
    dyt = to_tensor(dy, device)
    dx1 = ops.conv2d_backward(xt, wt, dyt, dw1, db1, sh, sw, ph, pw, True, relu_y=y)
    dx2 = ops.conv2d_backward(xt, wt, ops.relu_backward(y, dyt), dw2, db2, sh, sw, ph, pw, True)
    np.testing.assert_array_equal(to_numpy(dx1), to_numpy(dx2))
    np.testing.assert_array_equal(to_numpy(dw1), to_numpy(dw2))
    assert_close(db1, db2, rtol=1e-6, what="db fused vs separate")


def test_conv2d_relu_y_is_validated(device, rng):
    x, w, _, dy = conv_data(rng, 2, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1)
    xt, wt, dyt = to_tensor(x, device), to_tensor(w, device), to_tensor(dy, device)
    dw = nc.zeros(w.shape, device=device)
    with pytest.raises(ValueError, match="relu_y"):
        ops.conv2d_backward(xt, wt, dyt, dw, None, 1, 1, 1, 1, True,
                            relu_y=to_tensor(dy[:1], device))
    with pytest.raises(TypeError, match="relu_y"):
        ops.conv2d_backward(xt, wt, dyt, dw, None, 1, 1, 1, 1, True,
                            relu_y=to_tensor(dy.astype(np.int32), device))


def test_conv2d_backward_accumulates_and_options(device, rng):
    case = (2, 3, 7, 6, 4, 3, 2, 2, 1, 1, 1)
    N, Cin, H, W, Cout, kh, kw, sh, sw, ph, pw = case
    x, w, _, dy = conv_data(rng, *case)
    xt, wt, dyt = to_tensor(x, device), to_tensor(w, device), to_tensor(dy, device)
    dw, db = nc.zeros(w.shape, device=device), nc.zeros((Cout,), device=device)
    assert ops.conv2d_backward(xt, wt, dyt, dw, db, sh, sw, ph, pw, False) is None
    once_w, once_b = to_numpy(dw), to_numpy(db)
    assert np.any(once_w != 0) and np.any(once_b != 0)
    ops.conv2d_backward(xt, wt, dyt, dw, db, sh, sw, ph, pw, False)
    assert_close(dw, 2 * once_w, rtol=1e-6, what="dw twice")
    assert_close(db, 2 * once_b, rtol=1e-6, what="db twice")
    # Without a bias gradient, dw still accumulates and dx is returned.
    dw2 = nc.zeros(w.shape, device=device)
    dx = ops.conv2d_backward(xt, wt, dyt, dw2, None, sh, sw, ph, pw, True)
    rdx, rdw, _ = ref.conv2d_backward(x, w, dy, sh, sw, ph, pw)
    assert_close(dx, rdx, rtol=1e-5)
    assert_close(dw2, rdw, rtol=1e-5)


def test_functional_conv2d_int_and_pair_args(device, rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    xt, wt, bt = to_tensor(x, device), to_tensor(w, device), to_tensor(b, device)
    assert_close(F.conv2d(xt, wt, bt, stride=2, padding=1),
                 ref.conv2d_forward(x, w, b, 2, 2, 1, 1), rtol=1e-5)
    assert_close(F.conv2d(xt, wt, None, stride=(1, 3), padding=(2, 0)),
                 ref.conv2d_forward(x, w, None, 1, 3, 2, 0), rtol=1e-5)
    assert_close(F.conv2d(xt, wt), ref.conv2d_forward(x, w), rtol=1e-5)
    # NumPy integers, as nn.Conv2d takes them (F.conv2d raised "not iterable")
    assert_close(F.conv2d(xt, wt, bt, stride=np.int64(2), padding=(np.int32(1), 1)),
                 ref.conv2d_forward(x, w, b, 2, 2, 1, 1), rtol=1e-5)
    assert F.max_pool2d(xt, np.int64(2)).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("case", [(2, 2, 5, 6, 3, 3, 2, 2, 1, 1, 1),
                                  (1, 3, 4, 4, 2, 3, 3, 1, 1, 0, 0),
                                  (2, 1, 5, 5, 2, 1, 5, 1, 3, 0, 2)])
def test_conv2d_gradcheck(rng, case):
    N, Cin, H, W, Cout, kh, kw, sh, sw, ph, pw = case
    x, w, b, r = conv_data(rng, *case)
    r = r.astype(np.float64)

    def loss(xx=x, ww=w, bb=b):
        y = ops.conv2d_forward(to_tensor(xx), to_tensor(ww), to_tensor(bb), sh, sw, ph, pw)
        return float((to_numpy(y) * r).sum())

    dw, db = nc.zeros(w.shape), nc.zeros((Cout,))
    dx = ops.conv2d_backward(to_tensor(x), to_tensor(w), to_tensor(r.astype(np.float32)), dw, db,
                             sh, sw, ph, pw, True)
    ref.check_grad(lambda xx: loss(xx=xx), x, to_numpy(dx), what="conv dx")
    ref.check_grad(lambda ww: loss(ww=ww), w, to_numpy(dw), what="conv dw")
    ref.check_grad(lambda bb: loss(bb=bb), b, to_numpy(db), what="conv db")


def test_reference_conv_backward_matches_central_differences(rng):
    """The reference backward itself agrees with float64 central differences."""
    x, w, b, r = conv_data(rng, 2, 2, 5, 4, 3, 3, 2, 2, 1, 1, 1)
    dx, dw, db = ref.conv2d_backward(x, w, r, 2, 1, 1, 1)
    f = lambda xx: (ref.conv2d_forward(xx, w, b, 2, 1, 1, 1) * r).sum()
    eps = 1e-6
    num = np.zeros(x.size)
    xf = x.astype(np.float64).ravel()
    for k in range(x.size):
        e = np.zeros_like(xf)
        e[k] = eps
        num[k] = (f((xf + e).reshape(x.shape)) - f((xf - e).reshape(x.shape))) / (2 * eps)
    np.testing.assert_allclose(num.reshape(x.shape), dx, rtol=1e-6, atol=1e-8)
    assert np.any(dx != 0)


@contextlib.contextmanager
def cpu_conv_algorithm(name):
    """Run the CPU convolutions in the block with `name` ("im2col" or "direct"; direct needs
    stride 1, other strides still run im2col)."""
    nc._C._force_cpu_conv_algorithm(name)
    try:
        yield
    finally:
        nc._C._force_cpu_conv_algorithm("auto")


CPU_CONV_ALGORITHMS = ["im2col", "direct"]


@pytest.mark.parametrize("kernel", ["avx512", "avx2", "generic"])
def test_conv2d_every_cpu_gemm_kernel(rng, kernel):
    """Both CPU algorithms through each micro-kernel family (the direct kernels follow the
    SGEMM's choice)."""
    nc._C._force_cpu_gemm_kernel(kernel)
    try:
        if nc._C.cpu_gemm_kernel() != kernel:
            pytest.skip(f"CPU GEMM kernel {kernel!r} cannot run on this CPU")
        for algorithm in CPU_CONV_ALGORITHMS:
            with cpu_conv_algorithm(algorithm):
                for case in (CONV_CASES[2], CONV_CASES[4], CONV_CASES[9], CONV_CASES[12],
                             CONV_CASES[18], MULTI_PASS_CASES[0]):
                    check_conv_forward("cpu", rng, case, relu=True)
                    check_conv_backward("cpu", rng, case, relu=True)
    finally:
        ref.restore_cpu_gemm_kernel()


@pytest.mark.parametrize("algorithm", CPU_CONV_ALGORITHMS)
@pytest.mark.parametrize("case", CONV_CASES, ids=IDS)
def test_conv2d_each_cpu_algorithm(rng, algorithm, case):
    """Every case through each CPU algorithm, whichever the shape would pick: forward with and
    without bias and ReLU, backward with and without dx and the fused ReLU."""
    with cpu_conv_algorithm(algorithm):
        check_conv_forward("cpu", rng, case, relu=True)
        check_conv_forward("cpu", rng, case, with_bias=False)
        check_conv_backward("cpu", rng, case, relu=True)
        check_conv_backward("cpu", rng, case, need_dx=False)


def test_cpu_conv_algorithm_choice():
    """The documented choice (src/cpu/conv.cpp): direct forward for stride 1; direct backward
    for at most 32 taps, or at most 128 with output rows wider than 16, and with dx only from
    6 input channels up; im2col otherwise."""
    choose = nc._C.cpu_conv_algorithm
    lenet_conv1 = (1, 28, 28, 6, 5, 5, 2, 2, 1, 1)   # C, H, W, Cout, kh, kw, ph, pw, sh, sw
    lenet_conv2 = (6, 14, 14, 16, 5, 5, 0, 0, 1, 1)  # 150 taps
    assert choose(*lenet_conv1) == "direct"
    assert choose(*lenet_conv1, backward=True, need_dx=False) == "direct"
    assert choose(*lenet_conv1, backward=True, need_dx=True) == "im2col"
    assert choose(*lenet_conv2) == "direct"
    assert choose(*lenet_conv2, backward=True, need_dx=False) == "im2col"
    assert choose(8, 28, 28, 8, 3, 3, 1, 1, 1, 1, backward=True) == "direct"  # 72 taps, OW 28
    assert choose(8, 14, 14, 16, 3, 3, 0, 0, 1, 1, backward=True) == "im2col"  # OW 12
    assert choose(8, 14, 14, 16, 3, 3, 0, 0, 1, 1, backward=True, need_dx=False) == "im2col"
    assert choose(3, 16, 16, 16, 3, 3, 0, 0, 1, 1, backward=True, need_dx=False) == "direct"
    strided = (6, 14, 14, 16, 5, 5, 0, 0, 2, 2)
    assert choose(*strided) == "im2col"
    with cpu_conv_algorithm("direct"):
        assert choose(*strided) == "im2col"  # direct needs stride 1
        assert choose(*lenet_conv2, backward=True) == "direct"
    with cpu_conv_algorithm("im2col"):
        assert choose(*lenet_conv1) == "im2col"


try:
    from hypothesis import given, strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    @st.composite
    def conv_configs(draw):
        kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        H = draw(st.integers(max(1, kh - 2 * ph), 12))
        W = draw(st.integers(max(1, kw - 2 * pw), 12))
        return (draw(st.integers(1, 3)), draw(st.integers(1, 4)), H, W, draw(st.integers(1, 5)),
                kh, kw, draw(st.integers(1, 3)), draw(st.integers(1, 3)), ph, pw)

    @given(case=conv_configs(), seed=st.integers(0, 2**31 - 1))
    def test_conv2d_property(device, case, seed):
        rng = np.random.default_rng(seed)
        check_conv_forward(device, rng, case)
        check_conv_backward(device, rng, case)

    @pytest.mark.parametrize("algorithm", CPU_CONV_ALGORITHMS)
    @given(case=conv_configs(), seed=st.integers(0, 2**31 - 1), relu=st.booleans(),
           need_dx=st.booleans())
    def test_conv2d_property_each_cpu_algorithm(algorithm, case, seed, relu, need_dx):
        rng = np.random.default_rng(seed)
        with cpu_conv_algorithm(algorithm):
            check_conv_forward("cpu", rng, case, relu=relu)
            check_conv_backward("cpu", rng, case, relu=relu, need_dx=need_dx)
            N, Cin, H, W, Cout, kh, kw, sh, sw, ph, pw = case
            if (H + 2 * ph - kh) // sh + 1 >= 2 and (W + 2 * pw - kw) // sw + 1 >= 2:
                check_conv_pool("cpu", rng, case, relu=relu, with_bias=not relu)


# Batches large enough that the CPU splits them into several im2col + GEMM passes (each pass
# keeps about 512 KiB of columns in cache), the last pass partial: 23 images of 60 KB of
# columns each -> passes of 8 + 8 + 7; 29 images of 78 KB -> 4 x 6 + 5.
MULTI_PASS_CASES = [(23, 6, 14, 14, 5, 5, 5, 1, 1, 0, 0), (29, 1, 28, 28, 3, 5, 5, 1, 1, 2, 2)]


@pytest.mark.parametrize("case", MULTI_PASS_CASES, ids=["lenet-conv2-like", "lenet-conv1-like"])
def test_conv2d_batches_spanning_several_passes(device, rng, case):
    check_conv_forward(device, rng, case)
    check_conv_backward(device, rng, case)
    check_conv_forward(device, rng, case, relu=True)
    check_conv_backward(device, rng, case, relu=True)
    check_conv_backward(device, rng, case, relu=True, need_dx=False)


@pytest.mark.parametrize("algorithm", CPU_CONV_ALGORITHMS)
@pytest.mark.parametrize("case", MULTI_PASS_CASES, ids=["lenet-conv2-like", "lenet-conv1-like"])
def test_conv2d_several_passes_each_cpu_algorithm(rng, algorithm, case):
    with cpu_conv_algorithm(algorithm):
        check_conv_forward("cpu", rng, case, relu=True)
        check_conv_backward("cpu", rng, case, relu=True)
        check_conv_backward("cpu", rng, case, need_dx=False)


def test_conv2d_no_input_channels(device):
    """Cin == 0: y is the bias (then the ReLU), and only the bias has a gradient."""
    x = nc.zeros((2, 0, 5, 5), device=device)
    w = nc.zeros((3, 0, 3, 3), device=device)
    b = to_tensor(np.array([1.0, -2.0, 3.0], np.float32), device)
    y = ops.conv2d_forward(x, w, b, 1, 1, 1, 1, relu=True)
    np.testing.assert_array_equal(to_numpy(y), np.broadcast_to([1.0, 0.0, 3.0], (2, 5, 5, 3))
                                  .transpose(0, 3, 1, 2))
    dy = to_tensor(np.ones(y.shape, np.float32), device)
    dw, db = nc.zeros(w.shape, device=device), nc.zeros((3,), device=device)
    dx = ops.conv2d_backward(x, w, dy, dw, db, 1, 1, 1, 1, True, relu_y=y)
    assert dx.shape == (2, 0, 5, 5)
    np.testing.assert_array_equal(to_numpy(db), [50.0, 0.0, 50.0])


# ---- convolution + ReLU + 2x2 max pool, fused ------------------------------------------------
# (N, Cin, H, W, Cout, kh, kw, sh, sw, ph, pw) whose output takes a 2x2 pool: LeNet's two (pooled
# widths 14 and 5), odd output sizes (the last row/column is dropped), pooled widths below 4 and
# 17, a strided convolution (im2col) and the smallest output, 2x2.
POOL_CONV_CASES = [
    (2, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2),
    (3, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0),
    (2, 3, 9, 8, 4, 3, 3, 1, 1, 0, 0),
    (1, 2, 36, 35, 3, 3, 3, 1, 1, 1, 1),
    (2, 3, 11, 13, 5, 3, 2, 2, 1, 1, 0),
    (1, 1, 2, 2, 2, 1, 1, 1, 1, 0, 0),
]
POOL_IDS = ["N{}C{}H{}W{}O{}k{}x{}s{}x{}p{}x{}".format(*c) for c in POOL_CONV_CASES]


def check_conv_pool(device, rng, case, relu=True, with_bias=True):
    """conv2d_pool_forward/backward against the separate ops they fuse: forward bit-equal (y and
    argmax), dw and dx bit-equal, db to rounding (summed in another order); forward also against
    the float64 reference."""
    N, Cin, H, W, Cout, kh, kw, sh, sw, ph, pw = case
    x, w, b, _ = conv_data(rng, *case)
    T = lambda a: to_tensor(a, device)
    X, Wt, B = T(x), T(w), T(b) if with_bias else None
    y, argmax = ops.conv2d_pool_forward(X, Wt, B, sh, sw, ph, pw, relu=relu)
    full = ops.conv2d_forward(X, Wt, B, sh, sw, ph, pw, relu=relu)
    y_sep, argmax_sep = ops.max_pool2d_forward(full, 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(to_numpy(y), to_numpy(y_sep))
    np.testing.assert_array_equal(to_numpy(argmax), to_numpy(argmax_sep))
    expected = ref.conv2d_forward(x, w, b if with_bias else None, sh, sw, ph, pw)
    expected = np.maximum(expected, 0.0) if relu else expected
    scale = ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b) if with_bias else None,
                               sh, sw, ph, pw)
    ry, _ = ref.max_pool2d_forward(expected, 2, 2, 2, 2)
    rscale, _ = ref.max_pool2d_forward(scale, 2, 2, 2, 2)
    assert_close(y, ry, rtol=dot_tol(Cin * kh * kw), scale=rscale, what=f"conv pool fwd {case}")

    dy = rng.standard_normal(y.shape).astype(np.float32)
    g = ops.max_pool2d_backward(T(dy), argmax_sep, full.shape)
    g = ops.relu_backward(full, g) if relu else g
    for need_dx in (True, False):  # (the CPU may pick another algorithm without dx)
        dw, db = nc.zeros(w.shape, device=device), nc.zeros((Cout,), device=device)
        dx = ops.conv2d_pool_backward(X, Wt, T(dy), argmax, dw, db, sh, sw, ph, pw, need_dx,
                                      relu_y=y if relu else None)
        dw_sep, db_sep = nc.zeros(w.shape, device=device), nc.zeros((Cout,), device=device)
        dx_sep = ops.conv2d_backward(X, Wt, g, dw_sep, db_sep, sh, sw, ph, pw, need_dx)
        if need_dx:
            np.testing.assert_array_equal(to_numpy(dx), to_numpy(dx_sep))
        else:
            assert dx is None
        np.testing.assert_array_equal(to_numpy(dw), to_numpy(dw_sep))
        # summed in another order: to rounding of the sum of |terms|, not of the (cancelling) sum
        assert_close(db, to_numpy(db_sep), rtol=1e-6, scale=np.abs(dy).sum(axis=(0, 2, 3)),
                     what="conv pool db")


@pytest.mark.parametrize("case", POOL_CONV_CASES, ids=POOL_IDS)
@pytest.mark.parametrize("relu", [True, False], ids=["relu", "no-relu"])
def test_conv2d_pool_matches_separate_ops(device, rng, case, relu):
    check_conv_pool(device, rng, case, relu=relu, with_bias=relu)


@pytest.mark.parametrize("algorithm", CPU_CONV_ALGORITHMS)
@pytest.mark.parametrize("case", POOL_CONV_CASES, ids=POOL_IDS)
def test_conv2d_pool_each_cpu_algorithm(rng, algorithm, case):
    with cpu_conv_algorithm(algorithm):
        check_conv_pool("cpu", rng, case)


def test_conv2d_pool_several_passes(device, rng):
    """A batch the CPU splits into several passes (and threads), the last one partial."""
    check_conv_pool(device, rng, (37, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0))
    check_conv_pool(device, rng, (29, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2))


def test_conv2d_pool_nan_and_ties(device):
    """The fused pool keeps max_pool2d's rules: the first maximum in window order, a NaN wins."""
    x = np.zeros((1, 1, 4, 10), np.float32)
    x[0, 0, 1, 0] = np.nan            # window 0: NaN below the first tap
    x[0, 0, 0, 3] = x[0, 0, 1, 2] = 2.0  # window 1: tie, the top-right one comes first
    w = np.ones((1, 1, 1, 1), np.float32)
    y, argmax = ops.conv2d_pool_forward(to_tensor(x, device), to_tensor(w, device), None, relu=True)
    y, argmax = to_numpy(y), to_numpy(argmax)
    assert np.isnan(y[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 10
    assert y[0, 0, 0, 1] == 2.0 and argmax[0, 0, 0, 1] == 3
    assert y[0, 0, 1, 0] == 0.0 and argmax[0, 0, 1, 0] == 20  # all zero: the first tap



# (N, Cin, H, W, Cout, kh, kw, padding): pooled rows of 3 (one window at a time), 5, 8 and 17
# (each vector chunk width), batch 1, odd sizes.
POOL_NAN_CASES = [(1, 1, 6, 6, 1, 1, 1, 0), (2, 2, 9, 11, 3, 3, 3, 1), (1, 3, 16, 18, 2, 3, 3, 0),
                  (3, 1, 7, 35, 2, 1, 1, 0)]


@pytest.mark.parametrize("algorithm", ["auto", *CPU_CONV_ALGORITHMS])
@pytest.mark.parametrize("need_dx", [True, False], ids=["dx", "no-dx"])
@pytest.mark.parametrize("relu", [True, False], ids=["relu", "no-relu"])
@pytest.mark.parametrize("case", POOL_NAN_CASES,
                         ids=["N{}C{}H{}W{}O{}k{}x{}p{}".format(*c) for c in POOL_NAN_CASES])
def test_conv2d_pool_nan_windows_like_torch(device, rng, case, relu, need_dx, algorithm):
    """NaN and inf inputs make windows of the convolution's output with several NaNs: the fused
    pool's y and argmax are PyTorch's (conv2d, relu, max_pool2d: the last NaN of a window), and
    so are its backward's dx, dw and db (the routing, and the ReLU passing the gradient of a NaN
    output), by each CPU algorithm. Small integers make every finite sum exact and sums with an
    inf or NaN come out the same in any order."""
    torch = pytest.importorskip("torch")
    if device != "cpu" and algorithm != "auto":
        pytest.skip("the CPU's algorithms")
    with cpu_conv_algorithm(algorithm):
        _check_conv2d_pool_nan_windows(torch, device, case, relu, need_dx)


def _check_conv2d_pool_nan_windows(torch, device, case, relu, need_dx):
    N, Cin, H, W, Cout, kh, kw, pad = case
    rng = np.random.default_rng(list(case) + [relu])  # the same data for every algorithm
    for _ in range(100):  # until some windows have several NaNs and some none
        x = rng.integers(-2, 3, size=(N, Cin, H, W)).astype(np.float32)
        rate = 1 - 0.6 ** (1 / (Cin * kh * kw))  # about 40% of the outputs see a NaN or an inf
        x[rng.random(x.shape) < rate / 2] = np.inf
        x[rng.random(x.shape) < rate / 2] = np.nan
        w = rng.integers(-2, 3, size=(Cout, Cin, kh, kw)).astype(np.float32)
        b = rng.integers(-2, 3, size=Cout).astype(np.float32)
        xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))
        full = torch.nn.functional.conv2d(xt, wt, bt, 1, pad)
        full = torch.relu(full) if relu else full
        nans_per_window = 4 * torch.nn.functional.avg_pool2d(torch.isnan(full).float(), 2, 2)
        if (nans_per_window >= 2).any() and (nans_per_window == 0).any():
            break
    else:
        raise AssertionError("no draw made windows with several NaNs and windows with none")
    xt.requires_grad_()
    ty, targ = torch.nn.functional.max_pool2d(full, 2, 2, return_indices=True)
    T = lambda a: to_tensor(a, device)
    y, argmax = ops.conv2d_pool_forward(T(x), T(w), T(b), 1, 1, pad, pad, relu=relu)
    np.testing.assert_array_equal(to_numpy(y), ty.detach().numpy())
    np.testing.assert_array_equal(to_numpy(argmax), targ.numpy())
    dy = rng.integers(-4, 5, size=ty.shape).astype(np.float32)
    wt.requires_grad_()
    bt.requires_grad_()
    full = torch.nn.functional.conv2d(xt, wt, bt, 1, pad)
    pooled = torch.nn.functional.max_pool2d(torch.relu(full) if relu else full, 2, 2)
    pooled.backward(torch.from_numpy(dy))
    dw, db = nc.zeros(w.shape, device=device), nc.zeros((Cout,), device=device)
    dx = ops.conv2d_pool_backward(T(x), T(w), T(dy), argmax, dw, db, 1, 1, pad, pad, need_dx,
                                  relu_y=y if relu else None)
    if need_dx:
        np.testing.assert_array_equal(to_numpy(dx), xt.grad.numpy())
    np.testing.assert_array_equal(to_numpy(dw), wt.grad.numpy())
    np.testing.assert_array_equal(to_numpy(db), bt.grad.numpy())


@pytest.mark.parametrize("relu", [True, False], ids=["relu", "no-relu"])
@pytest.mark.parametrize("width", [6, 10, 20, 42])  # pooled rows of 3, 5, 10, 21: every chunk width
def test_conv2d_pool_adds_the_bias_before_the_max(device, width, relu):
    """Inputs that differ only below the rounding of x + bias tie once the bias is added, so the
    fused pool, like conv2d then max_pool2d, takes the first tap of each window (a pool that took
    the maximum first and added the bias after would take the larger bottom row)."""
    x = np.ones((1, 1, 2, width), np.float32)
    x[0, 0, 1, :] += np.float32(2.0**-20)  # 1024 + (1 + 2^-20) rounds to 1025, like 1024 + 1
    w, b = np.ones((1, 1, 1, 1), np.float32), np.array([1024.0], np.float32)
    args = [to_tensor(a, device) for a in (x, w, b)]
    y, argmax = ops.conv2d_pool_forward(*args, relu=relu)
    full = ops.conv2d_forward(*args, relu=relu)
    y_sep, argmax_sep = ops.max_pool2d_forward(full, 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(to_numpy(y), np.full((1, 1, 1, width // 2), 1025.0))
    np.testing.assert_array_equal(to_numpy(argmax), 2 * np.arange(width // 2).reshape(1, 1, 1, -1))
    np.testing.assert_array_equal(to_numpy(argmax), to_numpy(argmax_sep))
    np.testing.assert_array_equal(to_numpy(y), to_numpy(y_sep))

def test_conv2d_pool_is_validated(device, rng):
    x, w, _, _ = conv_data(rng, 2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1)
    xt, wt = to_tensor(x, device), to_tensor(w, device)
    y, argmax = ops.conv2d_pool_forward(xt, wt, None, 1, 1, 1, 1, relu=True)
    dw = nc.zeros(w.shape, device=device)
    full_dy = to_tensor(np.ones((2, 4, 8, 8), np.float32), device)
    with pytest.raises(ValueError, match="dy"):
        ops.conv2d_pool_backward(xt, wt, full_dy, argmax, dw, None, 1, 1, 1, 1, True)
    with pytest.raises(TypeError, match="argmax"):
        ops.conv2d_pool_backward(xt, wt, y, y, dw, None, 1, 1, 1, 1, True)
    with pytest.raises(ValueError, match="argmax"):
        ops.conv2d_pool_backward(xt, wt, y, to_tensor(np.zeros((2, 4, 4, 3), np.int32), device),
                                 dw, None, 1, 1, 1, 1, True)
    with pytest.raises(ValueError, match="too small"):
        ops.conv2d_pool_forward(xt, to_tensor(np.ones((4, 3, 8, 8), np.float32), device), None)
    if device == "cpu":  # (the GPU kernels skip out-of-range entries instead)
        bad = to_numpy(argmax).astype(np.int32)
        bad[1, 2, 3, 0] = 8 * 8
        with pytest.raises(ValueError, match="argmax value"):
            ops.conv2d_pool_backward(xt, wt, y, to_tensor(bad, device), dw, None, 1, 1, 1, 1, True)


@pytest.mark.parametrize("need_dx", [True, False], ids=["dx", "no-dx"])
@pytest.mark.parametrize("algorithm", CPU_CONV_ALGORITHMS)
def test_conv2d_non_finite_values_like_the_exact_sums(rng, algorithm, need_dx):
    """An inf in the input and one in the weights: y, dw and dx have the exact sums' infs and
    NaNs, entry for entry. The direct algorithm's vector sums also run over dropped columns (zero
    gradients times the pixels there) and over g's zero frame (times the weights): with such
    operands it sums over the valid terms only; before, the inf pixel made the dw of taps that
    never read it NaN. (The forward multiplies the zero padding by the weights, as im2col and
    the reference do.)"""
    x = rng.standard_normal((2, 6, 9, 9)).astype(np.float32)
    w = rng.standard_normal((8, 6, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 8, 9, 9)).astype(np.float32)
    x[1, 2, 4, 8] = np.inf
    w[3, 1, 0, 2] = -np.inf
    rdx, rdw, _ = ref.conv2d_backward(x, w, dy, 1, 1, 1, 1)
    with cpu_conv_algorithm(algorithm):
        assert nc._C.cpu_conv_algorithm(6, 9, 9, 8, 3, 3, 1, 1, 1, 1, True, need_dx) == algorithm
        y = to_numpy(ops.conv2d_forward(to_tensor(x), to_tensor(w), None, 1, 1, 1, 1))
        dw = nc.zeros(w.shape)
        dx = ops.conv2d_backward(to_tensor(x), to_tensor(w), to_tensor(dy), dw, None, 1, 1, 1, 1,
                                 need_dx)
    with np.errstate(invalid="ignore"):
        ry = ref.conv2d_forward(x, w, None, 1, 1, 1, 1)
    results = [(y, ry, "y"), (to_numpy(dw), rdw, "dw")] + ([(to_numpy(dx), rdx, "dx")] if need_dx else [])
    for got, want, what in results:
        for kind in (np.isnan, np.isposinf, np.isneginf):
            np.testing.assert_array_equal(kind(got), kind(want), err_msg=f"{what} {kind.__name__}")
        finite = np.isfinite(want)
        assert np.allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4), what
