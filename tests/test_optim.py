"""SGD (momentum, dampening, Nesterov, weight decay) and Adam steps over several iterations against
the float64 reference trajectories (torch.optim semantics), and dropout masks."""
from __future__ import annotations

import numpy as np
import pytest

from nncore import ops
import reference as ref
from reference import assert_close, to_numpy, to_tensor

SIZES = [1, 7, 257, 40000]  # 40000 crosses the kernels' OpenMP threshold (2^15)

# (momentum, dampening, weight_decay, nesterov): every specialised loop of the kernel.
SGD_CONFIGS = [
    (0.0, 0.0, 0.0, False), (0.0, 0.0, 0.01, False), (0.9, 0.0, 0.0, False),
    (0.9, 0.0, 5e-4, False), (0.5, 0.3, 0.0, False), (0.8, 0.5, 0.1, False),
    (0.9, 0.0, 0.0, True), (0.7, 0.0, 0.05, True),
]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("momentum,dampening,weight_decay,nesterov", SGD_CONFIGS)
def test_sgd_trajectory(device, rng, n, momentum, dampening, weight_decay, nesterov):
    lr = 0.05
    p0 = rng.standard_normal(n).astype(np.float32)
    param = to_tensor(p0, device)
    buf = to_tensor(np.full(n, np.nan, np.float32), device) if momentum else None  # first step
    rp, rbuf = p0.astype(np.float64), None                                      # overwrites it
    for step in range(6):
        g = rng.standard_normal(n).astype(np.float32)
        ops.sgd_step_(param, to_tensor(g, device), buf, lr, momentum, dampening, weight_decay,
                      nesterov, step == 0)
        rp, rbuf = ref.sgd_step(rp, g, rbuf, lr, momentum, dampening, weight_decay, nesterov,
                                step == 0)
        assert_close(param, rp, rtol=1e-6, atol=2e-6 * (step + 1), what=f"param step {step}")
        if momentum:
            assert_close(buf, rbuf, rtol=1e-6, atol=2e-6 * (step + 1), what=f"buf step {step}")
    assert np.any(to_numpy(param) != p0)


def test_sgd_plain_matches_formula_exactly(device):
    p = to_tensor(np.array([1.0, -2.0, 0.5], np.float32), device)
    g = to_tensor(np.array([0.5, 0.5, -1.0], np.float32), device)
    ops.sgd_step_(p, g, None, 0.1, 0.0, 0.0, 0.0, False, True)
    assert_close(p, [0.95, -2.05, 0.6], rtol=1e-7)


def test_sgd_first_step_buffer_is_gradient(device, rng):
    """torch.optim.SGD: on the first step buf = g (no dampening), whatever the buffer held."""
    p0 = rng.standard_normal(9).astype(np.float32)
    g = rng.standard_normal(9).astype(np.float32)
    p, buf = to_tensor(p0, device), to_tensor(np.full(9, 123.0, np.float32), device)
    ops.sgd_step_(p, to_tensor(g, device), buf, 0.1, 0.9, 0.5, 0.01, False, True)
    expected_buf = g.astype(np.float64) + 0.01 * p0
    assert_close(buf, expected_buf, rtol=1e-6)
    assert_close(p, p0 - 0.1 * expected_buf, rtol=1e-6)


ADAM_CONFIGS = [
    (1e-3, 0.9, 0.999, 1e-8, 0.0), (1e-2, 0.9, 0.999, 1e-8, 0.01), (0.1, 0.5, 0.9, 1e-3, 0.0),
    (5e-3, 0.0, 0.99, 1e-6, 1e-4),
]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("lr,beta1,beta2,eps,weight_decay", ADAM_CONFIGS)
def test_adam_trajectory(device, rng, n, lr, beta1, beta2, eps, weight_decay):
    p0 = rng.standard_normal(n).astype(np.float32)
    param = to_tensor(p0, device)
    m, v = to_tensor(np.zeros(n, np.float32), device), to_tensor(np.zeros(n, np.float32), device)
    rp, rm, rv = p0.astype(np.float64), np.zeros(n), np.zeros(n)
    for step in range(1, 8):
        g = rng.standard_normal(n).astype(np.float32)
        ops.adam_step_(param, to_tensor(g, device), m, v, lr, beta1, beta2, eps, weight_decay,
                       step)
        rp, rm, rv = ref.adam_step(rp, g, rm, rv, lr, beta1, beta2, eps, weight_decay, step)
        assert_close(m, rm, rtol=1e-5, what=f"m step {step}")
        assert_close(v, rv, rtol=3e-5, what=f"v step {step}")
        # Each step moves a parameter by about lr: the error is measured against that.
        assert_close(param, rp, rtol=1e-6, atol=1e-5 * lr * step + 1e-7, what=f"param {step}")
    assert np.any(to_numpy(param) != p0)


def test_adam_first_step_moves_by_lr(device, rng):
    """Bias correction: the first Adam step is lr * sign(g) (for |g| >> eps)."""
    g = np.array([0.3, -2.0, 5.0, -0.01], np.float32)
    p = to_tensor(np.zeros(4, np.float32), device)
    m, v = to_tensor(np.zeros(4, np.float32), device), to_tensor(np.zeros(4, np.float32), device)
    ops.adam_step_(p, to_tensor(g, device), m, v, 0.1, 0.9, 0.999, 1e-8, 0.0, 1)
    assert_close(p, -0.1 * np.sign(g), rtol=1e-5)


# ---- dropout ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 5, 1000, 65537])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_mask(device, rng, n, p):
    x = rng.standard_normal(n).astype(np.float32)
    y, mask = ops.dropout_forward(to_tensor(x, device), p, 1234, 0)
    y, mask = to_numpy(y), to_numpy(mask)
    keep = np.float64(np.float32(1.0) / np.float32(1.0 - np.float32(p)))
    assert np.all((mask == 0) | (np.abs(mask - keep) <= 1e-6 * keep)), np.unique(mask)
    assert_close(y, x * mask, rtol=1e-6)
    # The exact Philox stream of src/include/nncore/philox.h.
    expected = ref.dropout_mask(n, np.float32(p), 1234, 0)
    np.testing.assert_array_equal(mask != 0, expected != 0)
    if n >= 1000:
        lo, hi = ref.dropout_kept_fraction_bounds(n, p)
        assert lo <= np.mean(mask != 0) <= hi


def test_dropout_is_deterministic_per_seed_and_offset(device, rng):
    x = to_tensor(np.ones(4096, np.float32), device)
    a = to_numpy(ops.dropout_forward(x, 0.5, 7, 0)[1])
    b = to_numpy(ops.dropout_forward(x, 0.5, 7, 0)[1])
    c = to_numpy(ops.dropout_forward(x, 0.5, 7, 1024)[1])
    d = to_numpy(ops.dropout_forward(x, 0.5, 8, 0)[1])
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.3 and np.mean(a != d) > 0.3
    # Offsets count Philox blocks of 4 values: offset k continues the stream at element 4k.
    e = to_numpy(ops.dropout_forward(x, 0.5, 7, 10)[1])
    np.testing.assert_array_equal(e[:4096 - 40], a[40:])


def test_dropout_p0_is_identity(device, rng):
    x = rng.standard_normal((3, 17)).astype(np.float32)
    y, mask = ops.dropout_forward(to_tensor(x, device), 0.0, 99, 5)
    np.testing.assert_array_equal(to_numpy(y), x)
    np.testing.assert_array_equal(to_numpy(mask), np.ones_like(x))


def test_dropout_backward_is_mul(device, rng):
    x = rng.standard_normal((4, 33)).astype(np.float32)
    dy = rng.standard_normal((4, 33)).astype(np.float32)
    _, mask = ops.dropout_forward(to_tensor(x, device), 0.3, 5, 0)
    dx = ops.mul(to_tensor(dy, device), mask)
    assert_close(dx, dy * to_numpy(mask), rtol=1e-7)
    assert np.any(to_numpy(dx) != 0)


def test_philox_reference_is_uniform():
    u = ref.philox_uniform(42, 0, 200000)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    assert len(np.unique(u)) > 190000
    # Streams at different offsets are shifted copies: offset 1 == elements 4.. of offset 0.
    np.testing.assert_array_equal(ref.philox_uniform(42, 1, 100), u[4:104])

