"""Cross-entropy (integer labels and probability targets) and MSE, forward and backward."""
from __future__ import annotations

import numpy as np
import pytest

import nncore.functional as F
from nncore import ops
import reference as ref
from reference import assert_close, to_numpy, to_tensor

CE_SHAPES = [(1, 1), (1, 2), (3, 1), (5, 10), (13, 7), (64, 127), (200, 10), (7, 1000),
             (4100, 3)]


def ce_data(rng, N, C, kind, scale=3.0):
    logits = (rng.standard_normal((N, C)) * scale).astype(np.float32)
    if kind == "labels":
        target = rng.integers(0, C, N).astype(np.int32)
    elif kind == "onehot":
        target = np.eye(C, dtype=np.float32)[rng.integers(0, C, N)]
    else:  # soft distributions (rows sum to 1), or rows summing to 0, 0.5, 2, 0, ...
        t = rng.random((N, C)) + 0.01
        target = (t / t.sum(axis=1, keepdims=True)).astype(np.float32)
        if kind == "unnormalized":  # d = p * sum(t) - t: the sum must not be taken as 1
            target *= np.resize(np.float32([0.0, 0.5, 2.0]), (N, 1))
    return logits, target


@pytest.mark.parametrize("kind", ["labels", "onehot", "soft", "unnormalized"])
@pytest.mark.parametrize("N,C", CE_SHAPES)
def test_cross_entropy(device, rng, N, C, kind):
    logits, target = ce_data(rng, N, C, kind)
    loss, probs = ops.cross_entropy_forward(to_tensor(logits, device), to_tensor(target, device))
    rloss, rprobs = ref.cross_entropy_forward(logits, target)
    assert loss.shape == () and probs.shape == (N, C)
    assert_close(loss, rloss, rtol=1e-5, atol=1e-5 * (1 + abs(rloss)), what="loss")
    assert_close(probs, rprobs, rtol=1e-5, what="probs")
    assert abs(F.cross_entropy(to_tensor(logits, device), to_tensor(target, device)).item()
               - rloss) <= 1e-5 * (1 + abs(rloss))
    pv = to_numpy(probs).astype(np.float32)
    for scale in (1.0, 0.5, 3.0):
        d = ops.cross_entropy_backward(to_tensor(pv, device), to_tensor(target, device), scale)
        assert_close(d, ref.cross_entropy_backward(pv, target, scale), rtol=1e-5,
                     what=f"dlogits scale={scale}")


def test_cross_entropy_onehot_equals_labels(device, rng):
    logits, labels = ce_data(rng, 17, 9, "labels")
    onehot = np.eye(9, dtype=np.float32)[labels]
    la, pa = ops.cross_entropy_forward(to_tensor(logits, device), to_tensor(labels, device))
    lb, pb = ops.cross_entropy_forward(to_tensor(logits, device), to_tensor(onehot, device))
    assert abs(la.item() - lb.item()) <= 1e-5 * abs(la.item())
    da = ops.cross_entropy_backward(pa, to_tensor(labels, device), 1.0)
    db = ops.cross_entropy_backward(pb, to_tensor(onehot, device), 1.0)
    assert_close(to_numpy(da), to_numpy(db), rtol=1e-6)


@pytest.mark.parametrize("kind", ["labels", "onehot", "soft"])
def test_cross_entropy_large_logits_are_stable(device, kind):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, -1e4],
                       [1e4, 1e4 - 2.0, -1e4]], np.float32)
    target = {"labels": np.array([1, 1, 2, 0], np.int32),
              "onehot": np.eye(3, dtype=np.float32)[[1, 1, 2, 0]],
              "soft": np.full((4, 3), 1 / 3, np.float32)}[kind]
    loss, probs = ops.cross_entropy_forward(to_tensor(logits, device), to_tensor(target, device))
    rloss, rprobs = ref.cross_entropy_forward(logits, target)
    assert np.isfinite(loss.item()) and np.all(np.isfinite(to_numpy(probs)))
    assert abs(loss.item() - rloss) <= 1e-6 * abs(rloss)
    assert_close(probs, rprobs, rtol=1e-6, atol=1e-6)
    d = to_numpy(ops.cross_entropy_backward(probs, to_tensor(target, device), 1.0))
    assert np.all(np.isfinite(d))
    assert_close(d, ref.cross_entropy_backward(rprobs, target), rtol=1e-6, atol=1e-6)


def test_cross_entropy_perfect_prediction_is_zero(device):
    logits = np.array([[50.0, 0.0, 0.0], [0.0, 0.0, 50.0]], np.float32)
    loss, _ = ops.cross_entropy_forward(to_tensor(logits, device),
                                        to_tensor(np.array([0, 2], np.int32), device))
    assert 0.0 <= loss.item() < 1e-6


@pytest.mark.parametrize("kind", ["labels", "soft"])
def test_cross_entropy_gradcheck(rng, kind):
    logits, target = ce_data(rng, 4, 5, kind, scale=1.0)
    _, probs = ops.cross_entropy_forward(to_tensor(logits), to_tensor(target))
    d = to_numpy(ops.cross_entropy_backward(probs, to_tensor(target), 1.0))
    loss = lambda z: float(ops.cross_entropy_forward(to_tensor(z), to_tensor(target))[0].item())
    ref.check_grad(loss, logits, d, eps=1e-2, rtol=5e-3, what=f"cross_entropy ({kind}) dlogits")


@pytest.mark.parametrize("kind", ["labels", "soft"])
def test_reference_cross_entropy_backward_matches_central_differences(rng, kind):
    logits, target = ce_data(rng, 3, 4, kind, scale=1.0)
    z = logits.astype(np.float64)
    _, probs = ref.cross_entropy_forward(z, target)
    analytic = ref.cross_entropy_backward(probs, target, 2.0)
    eps = 1e-6
    num = np.zeros(z.size)
    for k in range(z.size):
        e = np.zeros(z.size)
        e[k] = eps
        e = e.reshape(z.shape)
        num[k] = 2.0 * (ref.cross_entropy_forward(z + e, target)[0]
                        - ref.cross_entropy_forward(z - e, target)[0]) / (2 * eps)
    np.testing.assert_allclose(num.reshape(z.shape), analytic, rtol=1e-6, atol=1e-9)
    assert np.any(analytic != 0)


MSE_SHAPES = [(1,), (7,), (3, 1), (13, 31), (2, 3, 5, 7), (100003,)]


@pytest.mark.parametrize("shape", MSE_SHAPES)
def test_mse(device, rng, shape):
    pred = rng.standard_normal(shape).astype(np.float32)
    target = rng.standard_normal(shape).astype(np.float32)
    loss = ops.mse_forward(to_tensor(pred, device), to_tensor(target, device))
    assert loss.shape == ()
    rloss = ref.mse_forward(pred, target)
    assert abs(loss.item() - rloss) <= 1e-5 * rloss
    assert abs(F.mse_loss(to_tensor(pred, device), to_tensor(target, device)).item()
               - rloss) <= 1e-5 * rloss
    for scale in (1.0, 0.25):
        d = ops.mse_backward(to_tensor(pred, device), to_tensor(target, device), scale)
        assert_close(d, ref.mse_backward(pred, target, scale), rtol=1e-6)


def test_mse_gradcheck(rng):
    pred = rng.standard_normal((3, 4)).astype(np.float32)
    target = rng.standard_normal((3, 4)).astype(np.float32)
    d = to_numpy(ops.mse_backward(to_tensor(pred), to_tensor(target), 1.0))
    loss = lambda p: float(ops.mse_forward(to_tensor(p), to_tensor(target)).item())
    ref.check_grad(loss, pred, d, eps=1e-2, rtol=5e-3, what="mse dpred")
