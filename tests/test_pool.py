"""max_pool2d / avg_pool2d forward and backward against the NumPy reference."""
from __future__ import annotations

import numpy as np
import pytest

import nncore as nc
import nncore.functional as F
import nncore.nn as nn
from nncore import ops
import reference as ref
from reference import assert_close, to_numpy, to_tensor

# (shape, kh, kw, sh, sw, ph, pw): 3-D and 4-D inputs, strides 1/2/3, padding up to k/2,
# rectangular windows, overlapping windows, window == input, odd/prime sizes.
POOL_CASES = [
    ((1, 1, 1, 1), 1, 1, 1, 1, 0, 0),
    ((2, 3, 8, 8), 2, 2, 2, 2, 0, 0),
    ((1, 2, 7, 7), 3, 3, 2, 2, 1, 1),
    ((2, 1, 13, 11), 3, 2, 1, 2, 1, 1),
    ((3, 2, 9, 10), 1, 5, 1, 3, 0, 2),
    ((2, 2, 10, 9), 5, 1, 3, 1, 2, 0),
    ((1, 3, 6, 6), 6, 6, 1, 1, 0, 0),       # window == input
    ((2, 4, 5, 5), 4, 4, 1, 1, 2, 2),       # window == padded input... and beyond the image
    ((3, 7, 7), 2, 2, 2, 2, 0, 0),          # 3-D (C, H, W)
    ((5, 9, 8), 3, 3, 2, 3, 1, 1),          # 3-D with padding
    ((1, 31, 17), 3, 3, 3, 3, 1, 0),
    ((2, 16, 28, 28), 2, 2, 2, 2, 0, 0),    # LeNet pooling
    ((1, 1, 1, 9), 1, 3, 1, 2, 0, 1),       # H == 1
    ((2, 3, 11, 11), 3, 3, 3, 3, 0, 0),     # stride leaves border pixels out
    ((1, 2, 3, 600), 3, 3, 2, 2, 1, 1),     # 300 outputs a row: the CPU backward's 256-chunks
    ((1, 1, 2, 1030), 1, 3, 1, 1, 0, 1),    # 1030: four chunks, the last partial
]
IDS = ["x{}_k{}x{}_s{}x{}_p{}x{}".format("x".join(map(str, c[0])), *c[1:]) for c in POOL_CASES]


@pytest.mark.parametrize("case", POOL_CASES, ids=IDS)
def test_max_pool2d_forward_backward(device, rng, case):
    shape, kh, kw, sh, sw, ph, pw = case
    x = rng.standard_normal(shape).astype(np.float32)
    y, arg = ops.max_pool2d_forward(to_tensor(x, device), kh, kw, sh, sw, ph, pw)
    ry, rarg = ref.max_pool2d_forward(x, kh, kw, sh, sw, ph, pw)
    assert y.shape == ry.shape and arg.shape == ry.shape and arg.dtype == "int32"
    np.testing.assert_array_equal(to_numpy(y), ry)  # max is exact
    np.testing.assert_array_equal(to_numpy(arg), rarg)
    dy = rng.standard_normal(ry.shape).astype(np.float32)
    dx = ops.max_pool2d_backward(to_tensor(dy, device), arg, shape)
    assert dx.shape == shape
    assert_close(dx, ref.max_pool2d_backward(dy, rarg, shape), rtol=1e-6)
    assert_close(F.max_pool2d(to_tensor(x, device), (kh, kw), (sh, sw), (ph, pw)), ry, rtol=0)


def test_max_pool2d_padding_never_wins(device):
    x = -np.arange(1, 1 + 2 * 5 * 5, dtype=np.float32).reshape(2, 1, 5, 5) - 100.0
    y, arg = ops.max_pool2d_forward(to_tensor(x, device), 3, 3, 2, 2, 1, 1)
    ry, rarg = ref.max_pool2d_forward(x, 3, 3, 2, 2, 1, 1)
    assert np.all(to_numpy(y) < -100)
    np.testing.assert_array_equal(to_numpy(y), ry)
    np.testing.assert_array_equal(to_numpy(arg), rarg)


def test_max_pool2d_ties_pick_first(device):
    """Equal values: the first tap in row-major window order wins (and gets the gradient)."""
    x = np.ones((1, 2, 4, 6), np.float32)
    y, arg = ops.max_pool2d_forward(to_tensor(x, device), 2, 3, 2, 3, 0, 0)
    np.testing.assert_array_equal(to_numpy(arg)[0, 0], [[0, 3], [12, 15]])
    _, rarg = ref.max_pool2d_forward(x, 2, 3, 2, 3, 0, 0)
    np.testing.assert_array_equal(to_numpy(arg), rarg)
    # Overlapping windows: one pixel can be the max of several windows; gradients add up.
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 1, 1] = 5.0
    y, arg = ops.max_pool2d_forward(to_tensor(x, device), 2, 2, 1, 1, 0, 0)
    dx = ops.max_pool2d_backward(to_tensor(np.ones((1, 1, 2, 2), np.float32), device), arg,
                                 (1, 1, 3, 3))
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 4.0
    np.testing.assert_array_equal(to_numpy(dx), expected)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", POOL_CASES, ids=IDS)
def test_avg_pool2d_forward_backward(device, rng, case, count_include_pad):
    shape, kh, kw, sh, sw, ph, pw = case
    x = rng.standard_normal(shape).astype(np.float32)
    y = ops.avg_pool2d_forward(to_tensor(x, device), kh, kw, sh, sw, ph, pw, count_include_pad)
    ry = ref.avg_pool2d_forward(x, kh, kw, sh, sw, ph, pw, count_include_pad)
    scale = ref.avg_pool2d_forward(np.abs(x), kh, kw, sh, sw, ph, pw, count_include_pad)
    assert y.shape == ry.shape
    assert_close(y, ry, rtol=1e-6 * (kh * kw) ** 0.5 + 1e-6, scale=scale, what="avg fwd")
    dy = rng.standard_normal(ry.shape).astype(np.float32)
    dx = ops.avg_pool2d_backward(to_tensor(dy, device), shape, kh, kw, sh, sw, ph, pw,
                                 count_include_pad)
    rdx = ref.avg_pool2d_backward(dy, shape, kh, kw, sh, sw, ph, pw, count_include_pad)
    sdx = ref.avg_pool2d_backward(np.abs(dy), shape, kh, kw, sh, sw, ph, pw, count_include_pad)
    assert dx.shape == shape
    assert_close(dx, rdx, rtol=3e-6, scale=sdx, what="avg bwd")
    fy = F.avg_pool2d(to_tensor(x, device), (kh, kw), (sh, sw), (ph, pw),
                     count_include_pad=count_include_pad)
    assert_close(fy, ry, rtol=1e-6, scale=scale)


def test_avg_pool2d_count_include_pad_divisor(device):
    x = np.ones((1, 1, 3, 3), np.float32)
    inc = to_numpy(ops.avg_pool2d_forward(to_tensor(x, device), 3, 3, 1, 1, 1, 1, True))
    exc = to_numpy(ops.avg_pool2d_forward(to_tensor(x, device), 3, 3, 1, 1, 1, 1, False))
    assert_close(inc[0, 0], np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9.0, rtol=1e-6)
    assert_close(exc, np.ones((1, 1, 3, 3)), rtol=1e-6)


@pytest.mark.parametrize("kernel,pad", [(2**40, 2**39), (2**62, 2**61)])
def test_pool_windows_far_larger_than_the_image(device, kernel, pad):
    """A window padded as much as PyTorch allows (pad = kernel / 2) over a 4x4 image covers all
    of it at each of the 5x5 outputs: the kernels visit only taps inside the image (the CPU
    walked every column of the window: a hang) and the count_include_pad divisor kernel^2 is
    taken in float (it overflowed 64 bits)."""
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    xt = to_tensor(x, device)
    window = (kernel, kernel, 1, 1, pad, pad)
    assert_close(ops.avg_pool2d_forward(xt, *window, False), np.full((1, 1, 5, 5), 7.5), rtol=0)
    assert_close(ops.avg_pool2d_forward(xt, *window, True),
                 np.full((1, 1, 5, 5), np.float32(120) / np.float32(kernel) ** 2), rtol=1e-6)
    y, argmax = ops.max_pool2d_forward(xt, *window)
    assert_close(y, np.full((1, 1, 5, 5), 15.0), rtol=0)
    np.testing.assert_array_equal(to_numpy(argmax), 15)
    ones = to_tensor(np.ones((1, 1, 5, 5), np.float32), device)
    assert_close(ops.avg_pool2d_backward(ones, x.shape, *window, False),
                 np.full(x.shape, 25 / 16), rtol=1e-6)
    dx = np.zeros(16, np.float32)
    dx[15] = 25
    assert_close(ops.max_pool2d_backward(ones, argmax, x.shape), dx.reshape(x.shape), rtol=0)


def test_pooled_plane_beyond_the_int32_argmax_is_an_error(device):
    """argmax holds int32 indices into one input plane, so a plane of over 2**31 elements is an
    error: the max at index 2**31 came back as -2**31 (found by fuzzing). The conv's fused pool
    checks its (unpooled) output plane alike; a padded 1x1 input gives one of 131073 x 131073."""
    x = nc.empty((1, 1, 2, 2**30 + 1), device=device)  # 8 GiB of address space, never touched
    with pytest.raises(ValueError, match="max_pool2d: the pooled plane 2 x 1073741825 has more "
                       "elements than the int32 argmax can index"):
        ops.max_pool2d_forward(x, 1, 1, 1, 1, 0, 0)
    one = to_tensor(np.ones((1, 1, 1, 1), np.float32), device)
    with pytest.raises(ValueError, match="conv2d_pool: the pooled plane 131073 x 131073"):
        ops.conv2d_pool_forward(one, one, None, 1, 1, 2**16, 2**16, False)


def test_count_include_pad_is_keyword_only(device):
    """PyTorch's next positional argument after padding is ceil_mode: F.avg_pool2d(x, 2, 2, 0,
    True) and nn.AvgPool2d(2, 2, 0, True) meant count_include_pad here and ran silently with
    other semantics (a 2x2 output where PyTorch gives 3x3). Now TypeError."""
    x = to_tensor(np.ones((1, 1, 5, 5), np.float32), device)
    with pytest.raises(TypeError):
        F.avg_pool2d(x, 2, 2, 0, True)
    with pytest.raises(TypeError):
        nn.AvgPool2d(2, 2, 0, True)
    assert F.avg_pool2d(x, 2, 2, 0, count_include_pad=False).shape == (1, 1, 2, 2)


def test_functional_pool_defaults(device, rng):
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    # stride defaults to kernel_size
    assert_close(F.max_pool2d(to_tensor(x, device), 3), ref.max_pool2d_forward(x, 3, 3, 3, 3)[0],
                 rtol=0)
    assert_close(F.avg_pool2d(to_tensor(x, device), 3), ref.avg_pool2d_forward(x, 3, 3, 3, 3),
                 rtol=1e-6)


@pytest.mark.parametrize("case", [((2, 2, 5, 6), 3, 2, 2, 1, 1, 1), ((3, 7, 7), 2, 2, 2, 2, 0, 0),
                                  ((1, 1, 6, 6), 3, 3, 1, 1, 1, 1)])
def test_max_pool2d_gradcheck(rng, case):
    shape, kh, kw, sh, sw, ph, pw = case
    # Distinct values at least 0.1 apart: a step of 1e-2 never changes which tap wins.
    x = (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0).astype(np.float32)
    r = rng.standard_normal(ref.max_pool2d_forward(x, kh, kw, sh, sw, ph, pw)[0].shape)
    _, arg = ops.max_pool2d_forward(to_tensor(x), kh, kw, sh, sw, ph, pw)
    dx = ops.max_pool2d_backward(to_tensor(r.astype(np.float32)), arg, shape)
    loss = lambda xx: float(
        (to_numpy(ops.max_pool2d_forward(to_tensor(xx), kh, kw, sh, sw, ph, pw)[0]) * r).sum())
    ref.check_grad(loss, x, to_numpy(dx), what="max_pool2d dx")


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", [((2, 2, 5, 6), 3, 2, 2, 1, 1, 1), ((3, 7, 7), 2, 2, 1, 2, 1, 0)])
def test_avg_pool2d_gradcheck(rng, case, count_include_pad):
    shape, kh, kw, sh, sw, ph, pw = case
    x = rng.standard_normal(shape).astype(np.float32)
    r = rng.standard_normal(ref.avg_pool2d_forward(x, kh, kw, sh, sw, ph, pw).shape)
    dx = ops.avg_pool2d_backward(to_tensor(r.astype(np.float32)), shape, kh, kw, sh, sw, ph, pw,
                                 count_include_pad)
    loss = lambda xx: float((to_numpy(ops.avg_pool2d_forward(
        to_tensor(xx), kh, kw, sh, sw, ph, pw, count_include_pad)) * r).sum())
    ref.check_grad(loss, x, to_numpy(dx), what="avg_pool2d dx")


def test_max_pool2d_2x2_stride2_ties_and_nan(device):
    """LeNet's 2x2/stride-2 pooling has its own CPU path: same tie and NaN rules as the rest."""
    x = np.array([[[[1.0, np.nan, 3.0, 3.0, 0.0, 0.0],
                    [np.nan, 2.0, 3.0, 3.0, 0.0, -1.0]]]], np.float32)
    y, arg = ops.max_pool2d_forward(to_tensor(x, device), 2, 2, 2, 2, 0, 0)
    y, arg = to_numpy(y), to_numpy(arg)
    assert np.isnan(y[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 6  # the last NaN wins (PyTorch)
    assert y[0, 0, 0, 1] == 3.0 and arg[0, 0, 0, 1] == 2     # ties: first in window order
    assert y[0, 0, 0, 2] == 0.0 and arg[0, 0, 0, 2] == 4


# Widths that take each chunk width of the vectorized 2x2/stride-2 CPU path: 4-float chunks
# (OW 4, 5), 8 (OW 8, 14: LeNet's conv1), 16 (OW 16, 17), odd W and H (a column/row no window
# reads).
POOL_2X2_SHAPES = [(2, 3, 8, 8), (1, 2, 10, 10), (1, 1, 5, 16), (2, 6, 28, 28), (1, 2, 32, 32),
                   (1, 1, 7, 35)]


@pytest.mark.parametrize("shape", POOL_2X2_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_max_pool2d_2x2_stride2_vector_widths(device, rng, shape):
    """Ties (values from a small set), then NaNs: the first maximum (or the last NaN) in window
    order wins, and the backward gives each window's dy to exactly that tap; the average pool's
    vector path on the same shapes."""
    x = rng.integers(-2, 3, size=shape).astype(np.float32)
    ry, rarg = ref.max_pool2d_forward(x, 2, 2, 2, 2)
    y, arg = ops.max_pool2d_forward(to_tensor(x, device), 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(to_numpy(y), ry)
    np.testing.assert_array_equal(to_numpy(arg), rarg)
    dy = rng.standard_normal(ry.shape).astype(np.float32)
    dx = ops.max_pool2d_backward(to_tensor(dy, device), arg, shape)
    np.testing.assert_array_equal(to_numpy(dx), ref.max_pool2d_backward(dy, rarg, shape))

    # The average pool's vector path too: sums of small integers and /4 are exact.
    for include_pad in (True, False):
        ya = ops.avg_pool2d_forward(to_tensor(x, device), 2, 2, 2, 2, 0, 0, include_pad)
        np.testing.assert_array_equal(to_numpy(ya), ref.avg_pool2d_forward(x, 2, 2, 2, 2, 0, 0,
                                                                           include_pad))
        dxa = ops.avg_pool2d_backward(to_tensor(dy, device), shape, 2, 2, 2, 2, 0, 0, include_pad)
        assert_close(dxa, ref.avg_pool2d_backward(dy, shape, 2, 2, 2, 2, 0, 0, include_pad),
                     rtol=1e-7)

    x[rng.random(shape) < 0.1] = np.nan
    y, arg = ops.max_pool2d_forward(to_tensor(x, device), 2, 2, 2, 2, 0, 0)
    y, arg = to_numpy(y), to_numpy(arg)
    H, W = shape[-2:]
    for index in np.ndindex(*ry.shape):
        *plane, oh, ow = index
        taps = [(2 * oh + i) * W + 2 * ow + j for i in (0, 1) for j in (0, 1)]
        values = x[tuple(plane)].reshape(-1)[taps]
        nan = np.flatnonzero(np.isnan(values))
        if nan.size:
            assert np.isnan(y[index]) and arg[index] == taps[nan[-1]], index
        else:
            assert y[index] == values.max() and arg[index] == taps[int(np.argmax(values))], index


def max_pool_with_torch(torch, x, dy, kh, kw, sh, sw, ph, pw):
    """PyTorch's max_pool2d of x: (y, argmax, dx), dx the gradient its autograd gives x for dy."""
    xt = torch.from_numpy(x).requires_grad_()
    y, argmax = torch.nn.functional.max_pool2d(xt, (kh, kw), (sh, sw), (ph, pw),
                                               return_indices=True)
    y.backward(torch.from_numpy(dy))
    return y.detach().numpy(), argmax.numpy(), xt.grad.numpy()


def check_max_pool_like_torch(torch, device, x, dy, kh, kw, sh, sw, ph, pw):
    """y (NaN where PyTorch's is), argmax and max_pool2d_backward's dx equal to PyTorch's, to
    the bit (dy holds small integers, so overlapping windows add up exactly in any order); the
    NumPy reference's argmax too."""
    ty, targ, tdx = max_pool_with_torch(torch, x, dy, kh, kw, sh, sw, ph, pw)
    np.testing.assert_array_equal(ref.max_pool2d_forward(x, kh, kw, sh, sw, ph, pw)[1], targ)
    y, arg = ops.max_pool2d_forward(to_tensor(x, device), kh, kw, sh, sw, ph, pw)
    np.testing.assert_array_equal(to_numpy(y), ty)
    np.testing.assert_array_equal(to_numpy(arg), targ)
    dx = ops.max_pool2d_backward(to_tensor(dy, device), arg, x.shape)
    np.testing.assert_array_equal(to_numpy(dx), tdx)


def test_max_pool2d_several_nans_like_torch(device):
    """A window with several NaNs routes its gradient to the last one, as PyTorch does (the
    review's cases: nncore took the first NaN, argmax 0, and backward fed the wrong input)."""
    torch = pytest.importorskip("torch")
    nan = np.nan
    for x, (kh, kw), want in ((np.array([[[[nan, nan], [1.0, 2.0]]]]), (2, 2), 1),
                              (np.array([[[[nan, 1.0, nan]]]]), (1, 3), 2)):
        x = x.astype(np.float32)
        y, arg = ops.max_pool2d_forward(to_tensor(x, device), kh, kw, kh, kw, 0, 0)
        assert np.isnan(to_numpy(y)).all() and to_numpy(arg).ravel().tolist() == [want]
        check_max_pool_like_torch(torch, device, x, np.full((1, 1, 1, 1), 3.0, np.float32),
                                  kh, kw, kh, kw, 0, 0)


# Every pooling case and the 2x2/stride-2 shapes (rows of 3, one window at a time, then each
# vector chunk width).
NAN_WINDOW_CASES = POOL_CASES + [(shape, 2, 2, 2, 2, 0, 0) for shape in POOL_2X2_SHAPES]
NAN_WINDOW_IDS = IDS + ["x{}_2x2".format("x".join(map(str, s))) for s in POOL_2X2_SHAPES]


@pytest.mark.parametrize("case", NAN_WINDOW_CASES, ids=NAN_WINDOW_IDS)
def test_max_pool2d_nan_windows_like_torch(device, rng, case):
    """Many windows with several NaNs (40% of the inputs), ties and -inf: y, argmax and the
    backward's routing are PyTorch's (the first maximum in row-major window order, or the last
    NaN)."""
    torch = pytest.importorskip("torch")
    shape, kh, kw, sh, sw, ph, pw = case
    x = rng.integers(-2, 3, size=shape).astype(np.float32)
    x[rng.random(shape) < 0.1] = -np.inf
    x[rng.random(shape) < 0.4] = np.nan
    dy = rng.integers(-4, 5, size=ref.max_pool2d_forward(x, kh, kw, sh, sw, ph, pw)[0].shape)
    check_max_pool_like_torch(torch, device, x, dy.astype(np.float32), kh, kw, sh, sw, ph, pw)


@pytest.mark.parametrize("shape", POOL_2X2_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_max_pool2d_2x2_stride2_signed_zeros_and_infinities(device, rng, shape):
    """No NaN: the first maximum in window order, to the bit (-0 then +0 gives -0), and its
    index; first from zeros alone, then with infinities and ones mixed in."""
    values = np.array([-0.0, 0.0, -np.inf, np.inf, 1.0, -1.0], np.float32)
    for choices in (values[:2], values[:4], values):
        x = rng.choice(choices, size=shape)
        ry, rarg = ref.max_pool2d_forward(x, 2, 2, 2, 2)
        y, arg = ops.max_pool2d_forward(to_tensor(x, device), 2, 2, 2, 2, 0, 0)
        y = to_numpy(y)
        np.testing.assert_array_equal(to_numpy(arg), rarg)
        np.testing.assert_array_equal(y, ry)
        np.testing.assert_array_equal(np.signbit(y), np.signbit(ry))


def test_max_pool2d_backward_argmax_outside_its_window(device, rng):
    """max_pool2d_backward takes any argmax: where one is not in its own 2x2 window, the plane
    still gets dx = 0, dx[argmax] += dy (the CPU's windowed path falls back to the scatter)."""
    shape = (1, 3, 8, 16)  # OH, OW = H/2, W/2: the shape of a 2x2/stride-2 pool
    x = rng.standard_normal(shape).astype(np.float32)
    _, arg = ops.max_pool2d_forward(to_tensor(x, device), 2, 2, 2, 2, 0, 0)
    arg = to_numpy(arg).copy()
    arg[0, 1, 2, 5] = 0          # plane 1: one argmax elsewhere in the plane
    arg[0, 2] = (arg[0, 2] + 1) % (8 * 16)  # plane 2: every argmax shifted by one pixel
    dy = rng.standard_normal((1, 3, 4, 8)).astype(np.float32)
    dx = ops.max_pool2d_backward(to_tensor(dy, device), to_tensor(arg.astype(np.int32), device),
                                 shape)
    assert_close(dx, ref.max_pool2d_backward(dy, arg, shape), rtol=1e-6)


def test_max_pool2d_backward_rejects_out_of_range_argmax_on_cpu():
    """An argmax outside the input plane would write outside dx: the CPU op refuses it (on the
    GPU the kernel skips such entries; checking would synchronize)."""
    dy = to_tensor(np.ones((1, 1, 2, 2), np.float32))
    for bad in (16, -2):
        argmax = to_tensor(np.array([[[[0, 1], [bad, 3]]]], np.int32))
        with pytest.raises(ValueError, match="argmax value"):
            ops.max_pool2d_backward(dy, argmax, (1, 1, 4, 4))
