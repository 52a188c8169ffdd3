"""SGD (momentum, dampening, Nesterov, weight decay) and Adam steps over several iterations against
the float64 reference trajectories (torch.optim semantics), and dropout masks."""
from __future__ import annotations

import platform

import numpy as np
import pytest

import nncore as nc
from nncore import ops
import reference as ref
from reference import assert_close, to_numpy, to_tensor

SIZES = [1, 7, 257, 40000]  # 40000 crosses the kernels' OpenMP threshold (2^15)

# (momentum, dampening, weight_decay, nesterov): every specialised loop of the kernel.
IS_X86_64 = platform.machine().lower() in ("x86_64", "amd64")

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
        ops.sgd_step_([param], [to_tensor(g, device)], [buf] if momentum else None, lr, momentum,
                      dampening, weight_decay, nesterov, step == 0)
        rp, rbuf = ref.sgd_step(rp, g, rbuf, lr, momentum, dampening, weight_decay, nesterov,
                                step == 0)
        assert_close(param, rp, rtol=1e-6, atol=2e-6 * (step + 1), what=f"param step {step}")
        if momentum:
            assert_close(buf, rbuf, rtol=1e-6, atol=2e-6 * (step + 1), what=f"buf step {step}")
    assert np.any(to_numpy(param) != p0)


def test_sgd_plain_matches_formula_exactly(device):
    p = to_tensor(np.array([1.0, -2.0, 0.5], np.float32), device)
    g = to_tensor(np.array([0.5, 0.5, -1.0], np.float32), device)
    ops.sgd_step_([p], [g], None, 0.1, 0.0, 0.0, 0.0, False, True)
    assert_close(p, [0.95, -2.05, 0.6], rtol=1e-7)


def test_sgd_first_step_buffer_is_gradient(device, rng):
    """torch.optim.SGD: on the first step buf = g (no dampening), whatever the buffer held."""
    p0 = rng.standard_normal(9).astype(np.float32)
    g = rng.standard_normal(9).astype(np.float32)
    p, buf = to_tensor(p0, device), to_tensor(np.full(9, 123.0, np.float32), device)
    ops.sgd_step_([p], [to_tensor(g, device)], [buf], 0.1, 0.9, 0.5, 0.01, False, True)
    expected_buf = g.astype(np.float64) + 0.01 * p0
    assert_close(buf, expected_buf, rtol=1e-6)
    assert_close(p, p0 - 0.1 * expected_buf, rtol=1e-6)


# Optimizer state is stored with subnormals flushed to a zero of the same sign (host_device.h):
# x86 CPUs take a microcode assist on every subnormal operand, and a dead unit's state decays
# into that range. Entries at 1.05 * FLT_MIN fall below it after one decay, those at 1.2 do not.
TINY = np.finfo(np.float32).tiny
SIGNS = np.resize(np.array([1.0, -1.0], np.float32), 40)  # 40: the CPU loop's vector body runs


def _assert_same_bits(tensor, expected, what):
    got = to_numpy(tensor).astype(np.float32)
    want = np.asarray(expected, np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=what)


def test_sgd_stores_no_subnormal_momentum(device, rng):
    p0 = rng.standard_normal(40).astype(np.float32)
    buf0 = (SIGNS * TINY * np.where(np.arange(40) < 20, 1.05, 1.2)).astype(np.float32)
    p, buf = to_tensor(p0, device), to_tensor(buf0, device)
    ops.sgd_step_([p], [to_tensor(np.zeros(40, np.float32), device)], [buf], 0.05, 0.9)
    decayed = np.float32(0.9) * buf0  # g = 0: buf = 0.9 buf, rounded once
    assert np.all(np.abs(decayed[:20]) < TINY) and np.all(np.abs(decayed[20:]) >= TINY)
    _assert_same_bits(buf, np.where(np.abs(decayed) < TINY, SIGNS * 0.0, decayed), "momentum")
    _assert_same_bits(p, p0, "param")  # lr * buf is below half an ulp of every parameter
    # The first step's buffer is the gradient, flushed the same way.
    g = (SIGNS * np.where(np.arange(40) < 20, TINY / 3, 2 * TINY)).astype(np.float32)
    ops.sgd_step_([p], [to_tensor(g, device)], [buf], 0.05, 0.9, first_step=True)
    _assert_same_bits(buf, np.where(np.abs(g) < TINY, SIGNS * 0.0, g), "first-step momentum")
    _assert_same_bits(p, p0, "param after the first step")


def test_adam_stores_no_subnormal_moments(device, rng):
    low = np.arange(40) < 20
    p0 = rng.standard_normal(40).astype(np.float32)
    m0 = (SIGNS * TINY * np.where(low, 1.05, 1.2)).astype(np.float32)
    v0 = (TINY * np.where(low, 1.0005, 1.01)).astype(np.float32)
    p, m, v = (to_tensor(a, device) for a in (p0, m0, v0))
    zeros = to_tensor(np.zeros(40, np.float32), device)
    ops.adam_step_([p], [zeros], [m], [v], 1e-3, 0.9, 0.999, 1e-8, 0.0, 5)
    # g = 0: m = lerp(m, 0, 0.1) = fma(0.1, -m, m) (exact in float64 here: the product is, and
    # the sum needs under 53 bits, so one rounding to float32), v = 0.999 v rounded once.
    w = np.float32(1 - 0.9)
    m1 = (m0.astype(np.float64) - np.float64(w) * m0).astype(np.float32)
    v1 = np.float32(0.999) * v0
    assert np.all(np.abs(m1[low]) < TINY) and np.all(v1[low] < TINY)
    assert np.all(np.abs(m1[~low]) >= TINY) and np.all(v1[~low] >= TINY)
    _assert_same_bits(m, np.where(low, SIGNS * 0.0, m1), "m")
    _assert_same_bits(v, np.where(low, 0.0, v1), "v")
    _assert_same_bits(p, p0, "param")
    # A gradient of 1e-20 from zero state: m = 0.1 g is normal, v = 0.001 g^2 is not.
    g = (SIGNS * np.float32(1e-20)).astype(np.float32)
    m, v = to_tensor(np.zeros(40, np.float32), device), to_tensor(np.zeros(40, np.float32), device)
    ops.adam_step_([p], [to_tensor(g, device)], [m], [v], 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    _assert_same_bits(m, w * g, "m from a tiny gradient")
    _assert_same_bits(v, np.zeros(40), "v from a tiny gradient")


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
        ops.adam_step_([param], [to_tensor(g, device)], [m], [v], lr, beta1, beta2, eps,
                       weight_decay, step)
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
    ops.adam_step_([p], [to_tensor(g, device)], [m], [v], 0.1, 0.9, 0.999, 1e-8, 0.0, 1)
    assert_close(p, -0.1 * np.sign(g), rtol=1e-5)


def test_adam_defaults_are_the_double_hyper_parameters(device, rng):
    """The binding's defaults are 0.9, 0.999 and 1e-8 as doubles, as optim.Adam passes them:
    0.9f would make 1 - beta1 = 0.100000024 and change the bits of m."""
    n = 1000
    p0, m0, v0, g = (rng.standard_normal(n).astype(np.float32) for _ in range(4))
    v0 = np.abs(v0)
    results = []
    for hyper in ((0.9, 0.999, 1e-8, 0.0), ()):
        param, m, v = (to_tensor(a, device) for a in (p0, m0, v0))
        ops.adam_step_([param], [to_tensor(g, device)], [m], [v], 0.01, *hyper, step=3)
        results.append([to_numpy(t).view(np.uint32) for t in (param, m, v)])
    for name, explicit, default in zip(("param", "m", "v"), *results):
        np.testing.assert_array_equal(default, explicit, err_msg=name)


def test_sgd_rounds_its_multiply_add_as_pytorch_does(device, rng):
    """p - lr*g with an exact value 2^-70 from the midpoint between p and its neighbour below.
    Fused (one rounding: the GPU, the CPU's AVX2 / AVX-512 path, PyTorch there) it is p. Unfused
    (the baseline x86-64 path, PyTorch on CPUs without FMA), lr*g rounds to half an ulp, and the
    midpoint's tie goes to the even neighbour, p - ulp, as p is odd."""
    p0 = (1 + (2 * rng.integers(0, 2**22, 4099) + 1) * 2.0**-23).astype(np.float32)  # odd
    g = np.full(4099, 1 + 2**-23, np.float32)
    lr = (1 - 2**-23) * 2.0**-24  # lr*g = (1 - 2^-46) * 2^-24: just under half an ulp of p
    below = (p0 - np.float32(2**-23)).astype(np.float32)
    try:
        for kernel in ["", "generic"] if device == "cpu" else [None]:
            want = p0
            if kernel is not None:
                nc._C._force_cpu_gemm_kernel(kernel)  # "" = the best this CPU runs (or requested)
                if nc._C.cpu_gemm_kernel() == "generic" and IS_X86_64:
                    want = below  # (other CPUs' baseline targets fuse: aarch64 has FMA)
            p = to_tensor(p0, device)
            ops.sgd_step_([p], [to_tensor(g, device)], None, lr)
            _assert_same_bits(p, want, f"cpu kernel {kernel!r}" if kernel is not None else device)
    finally:
        ref.restore_cpu_gemm_kernel()


# ---- one call over a list of tensors (a whole model) -------------------------------------------

# 40 tensors: more than one CUDA launch takes (32), sizes around its chunk of 1024 floats, empty
# ones, and tensors smaller than a chunk so that one chunk spans several of them.
LIST_SHAPES = ([(0,), (1,), (6, 1, 5, 5), (6,), (1023,), (1024,), (1025,), (16, 6, 5, 5), (0, 3)]
               + [(k + 1,) for k in range(25)] + [(120, 400), (120,), (3000,), (84, 120), (5,), (7, 3)])


def _list(rng, device, fill=None):
    arrays = [rng.standard_normal(shape).astype(np.float32) if fill is None
              else np.full(shape, fill, np.float32) for shape in LIST_SHAPES]
    return arrays, [to_tensor(a, device) for a in arrays]


@pytest.mark.parametrize("momentum,dampening,weight_decay,nesterov", SGD_CONFIGS[::3])
def test_sgd_over_a_list_is_the_update_of_each_tensor(device, rng, momentum, dampening,
                                                      weight_decay, nesterov):
    """One call over 40 tensors gives each tensor the bits that a call for it alone gives."""
    p0, params = _list(rng, device)
    alone = [to_tensor(p, device) for p in p0]
    _, bufs = _list(rng, device, fill=np.nan)
    bufs_alone = [to_tensor(to_numpy(b), device) for b in bufs]
    for step in range(3):
        grads = _list(rng, device)[1]
        ops.sgd_step_(params, grads, bufs if momentum else None, 0.05, momentum, dampening,
                      weight_decay, nesterov, step == 0)
        for p, g, b in zip(alone, grads, bufs_alone):
            ops.sgd_step_([p], [g], [b] if momentum else None, 0.05, momentum, dampening,
                          weight_decay, nesterov, step == 0)
    for t, (got, want) in enumerate(zip(params + bufs * bool(momentum),
                                        alone + bufs_alone * bool(momentum))):
        np.testing.assert_array_equal(to_numpy(got), to_numpy(want), err_msg=f"tensor {t}")
    moved = [t for t, (p, a) in enumerate(zip(params, p0)) if a.size and np.any(to_numpy(p) != a)]
    assert len(moved) == sum(a.size > 0 for a in p0)


def test_adam_over_a_list_is_the_update_of_each_tensor(device, rng):
    p0, params = _list(rng, device)
    m, v = _list(rng, device, fill=0.0)[1], _list(rng, device, fill=0.0)[1]
    alone = [to_tensor(p, device) for p in p0]
    m1, v1 = _list(rng, device, fill=0.0)[1], _list(rng, device, fill=0.0)[1]
    for step in range(1, 4):
        grads = _list(rng, device)[1]
        ops.adam_step_(params, grads, m, v, 0.01, 0.9, 0.999, 1e-8, 0.01, step)
        for args in zip(alone, grads, m1, v1):
            ops.adam_step_(*[[t] for t in args], 0.01, 0.9, 0.999, 1e-8, 0.01, step)
    for t, (got, want) in enumerate(zip(params + m + v, alone + m1 + v1)):
        np.testing.assert_array_equal(to_numpy(got), to_numpy(want), err_msg=f"tensor {t}")


def test_sgd_over_a_list_matches_the_reference(device, rng):
    p0, params = _list(rng, device)
    _, bufs = _list(rng, device, fill=0.0)
    reference = [(p.astype(np.float64), None) for p in p0]
    for step in range(4):
        g, grads = _list(rng, device)
        ops.sgd_step_(params, grads, bufs, 0.1, 0.9, 0.0, 1e-3, True, step == 0)
        reference = [ref.sgd_step(rp, gt, rb, 0.1, 0.9, 0.0, 1e-3, True, step == 0)
                     for (rp, rb), gt in zip(reference, g)]
    for t, (param, (rp, _)) in enumerate(zip(params, reference)):
        assert_close(param, rp, rtol=1e-6, atol=1e-5, what=f"param {t} {LIST_SHAPES[t]}")


# ---- PyTorch's bits ----------------------------------------------------------------------------
# nncore's updates are PyTorch's CPU arithmetic (host_device.h: its multiply-adds, fused on
# AVX2 / AVX-512 CPUs, and its double hyper-parameters rounded once): SGD gives torch.optim.SGD's
# bits, Adam gives Adam's m and v bits, and parameters equal but where PyTorch's sqrt is an ulp off.


def _torch_with_fma(device):
    torch = pytest.importorskip("torch")
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("PyTorch's CPU kernels fuse multiply-adds only on AVX2 / AVX-512 CPUs")
    if device == "cpu" and nc._C.cpu_gemm_kernel() == "generic":
        pytest.skip("nncore's CPU path here is the baseline one, which rounds twice")
    torch.set_num_threads(1)
    return torch


@pytest.mark.parametrize("n", [4099, 40000])  # a vector tail; OpenMP
@pytest.mark.parametrize("momentum,dampening,weight_decay,nesterov", SGD_CONFIGS)
def test_sgd_gives_pytorch_bits(device, rng, n, momentum, dampening, weight_decay, nesterov):
    torch = _torch_with_fma(device)
    p0 = rng.standard_normal(n).astype(np.float32)
    param, buf = to_tensor(p0, device), to_tensor(np.zeros(n, np.float32), device)
    tp = torch.tensor(p0, requires_grad=True)
    opt = torch.optim.SGD([tp], lr=0.05, momentum=momentum, dampening=dampening,
                          weight_decay=weight_decay, nesterov=nesterov)
    for step in range(5):
        g = rng.standard_normal(n).astype(np.float32)
        tp.grad = torch.tensor(g)
        opt.step()
        ops.sgd_step_([param], [to_tensor(g, device)], [buf] if momentum else None, 0.05,
                      momentum, dampening, weight_decay, nesterov, step == 0)
        _assert_same_bits(param, tp.detach().numpy(), f"param step {step}")
        if momentum:
            _assert_same_bits(buf, opt.state[tp]["momentum_buffer"].numpy(), f"buf step {step}")


@pytest.mark.parametrize("lr,beta1,beta2,eps,weight_decay", ADAM_CONFIGS)
def test_adam_gives_pytorch_bits(device, rng, lr, beta1, beta2, eps, weight_decay):
    torch = _torch_with_fma(device)
    n = 40000
    p0 = rng.standard_normal(n).astype(np.float32)
    param = to_tensor(p0, device)
    m, v = to_tensor(np.zeros(n, np.float32), device), to_tensor(np.zeros(n, np.float32), device)
    tp = torch.tensor(p0, requires_grad=True)
    opt = torch.optim.Adam([tp], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
    for step in range(1, 6):
        p_before = to_numpy(param).astype(np.float32)
        g = rng.standard_normal(n).astype(np.float32)
        tp.grad = torch.tensor(g)
        opt.step()
        ops.adam_step_([param], [to_tensor(g, device)], [m], [v], lr, beta1, beta2, eps,
                       weight_decay, step)
        state = opt.state[tp]
        _assert_same_bits(m, state["exp_avg"].numpy(), f"m step {step}")
        _assert_same_bits(v, state["exp_avg_sq"].numpy(), f"v step {step}")
        got, want = to_numpy(param), tp.detach().numpy()
        # PyTorch's sqrt is off by an ulp for ~0.7% of v; that changes the rounding of p + update
        # for some of those (measured: at most 0.15% of the parameters).
        differ = got != want
        assert differ.mean() < 0.01, f"step {step}: {differ.sum()} of {n} parameters differ"
        # The update's denominator is an ulp off: the update by a few ulps, then p's rounding.
        update = np.abs(want.astype(np.float64) - p_before)
        bound = update * 2.0**-21 + np.spacing(np.abs(want))
        assert np.all(np.abs(got - want) <= bound), f"step {step}: more than the sqrt's ulp apart"
        tp.data = torch.tensor(to_numpy(param).astype(np.float32))  # continue from nncore's


# PyTorch on a CPU without FMA (ATEN_CPU_CAPABILITY=default forces those kernels) rounds each
# multiply-add twice; so does nncore's baseline path (NNCORE_CPU_KERNEL=generic forces it).
# (name, momentum, dampening, weight_decay, nesterov); the subprocess gets them as its argv[2].
DEFAULT_KERNEL_SGD = (("sgd", 0.9, 0.1, 1e-3, False), ("nesterov", 0.7, 0.0, 5e-2, True))
TORCH_DEFAULT_KERNELS = """
import ast
import sys
import numpy as np
import torch
torch.set_num_threads(1)
assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
rng = np.random.default_rng(3)
n = 4099
out = {}
p0, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal((3, n)).astype(np.float32)
out["p0"], out["g"] = p0, g
sgd = {name: (lambda t, c=c: torch.optim.SGD([t], lr=0.05, momentum=c[0], dampening=c[1],
                                              weight_decay=c[2], nesterov=c[3]))
       for name, *c in ast.literal_eval(sys.argv[2])}
for name, opt_of in (*sgd.items(),
                     ("adam", lambda t: torch.optim.Adam([t], lr=1e-3, weight_decay=1e-2))):
    t = torch.tensor(p0, requires_grad=True)
    opt = opt_of(t)
    for step in range(3):
        t.grad = torch.tensor(g[step])
        opt.step()
    state = opt.state[t]
    for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
        if key in state:
            out[f"{name}_{key}"] = state[key].numpy()
    out[f"{name}_param"] = t.detach().numpy()
np.savez(sys.argv[1], **out)
"""


@pytest.mark.skipif(not IS_X86_64, reason="the unfused baseline path is x86-64's")
def test_cpu_baseline_path_gives_pytorch_default_kernel_bits(tmp_path):
    pytest.importorskip("torch")
    import os
    import subprocess
    import sys
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    subprocess.run([sys.executable, "-c", TORCH_DEFAULT_KERNELS, str(tmp_path / "t.npz"),
                    repr(DEFAULT_KERNEL_SGD)], check=True, env=env)
    want = np.load(tmp_path / "t.npz")
    p0, g = want["p0"], want["g"]
    try:
        nc._C._force_cpu_gemm_kernel("generic")
        for name, momentum, dampening, wd, nesterov in DEFAULT_KERNEL_SGD:
            p, buf = to_tensor(p0), to_tensor(np.zeros_like(p0))
            for step in range(3):
                ops.sgd_step_([p], [to_tensor(g[step])], [buf], 0.05, momentum, dampening, wd,
                              nesterov, step == 0)
            _assert_same_bits(p, want[f"{name}_param"], f"{name} param")
            _assert_same_bits(buf, want[f"{name}_momentum_buffer"], f"{name} buffer")
        p, m, v = to_tensor(p0), to_tensor(np.zeros_like(p0)), to_tensor(np.zeros_like(p0))
        for step in range(3):
            ops.adam_step_([p], [to_tensor(g[step])], [m], [v], 1e-3, 0.9, 0.999, 1e-8, 1e-2,
                           step + 1)
        _assert_same_bits(m, want["adam_exp_avg"], "adam m")
        _assert_same_bits(v, want["adam_exp_avg_sq"], "adam v")
    finally:
        ref.restore_cpu_gemm_kernel()


def test_fill_tensors(device, rng):
    _, tensors = _list(rng, device)
    ops.fill_tensors_(tensors, -2.5)
    for t, x in enumerate(tensors):
        np.testing.assert_array_equal(to_numpy(x), np.full(LIST_SHAPES[t], -2.5, np.float32))
    ops.fill_tensors_([], 1.0)  # nothing to do
    ops.sgd_step_([], [], None, 0.1)


# ---- dropout ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 5, 1000, 65537])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8, 0.9])
def test_dropout_mask(device, rng, n, p):
    x = rng.standard_normal(n).astype(np.float32)
    y, mask = ops.dropout_forward(to_tensor(x, device), p, 1234, 0)
    y, mask = to_numpy(y).astype(np.float32), to_numpy(mask).astype(np.float32)
    # PyTorch's scale, 1 / float(1 - p) with 1 - p in double: 10 for p = 0.9, not 9.999998.
    keep = np.float32(1.0) / np.float32(1.0 - p)
    assert set(np.unique(mask)) <= {0.0, keep}, np.unique(mask)
    np.testing.assert_array_equal(y, x * mask)
    # The exact Philox stream of src/include/nncore/philox.h.
    expected = ref.dropout_mask(n, np.float32(p), 1234, 0)
    np.testing.assert_array_equal(mask != 0, expected != 0)
    if n >= 1000:
        lo, hi = ref.dropout_kept_fraction_bounds(n, p)
        assert lo <= np.mean(mask != 0) <= hi


@pytest.mark.parametrize("p", [0.1, 0.3, 0.9, 0.999])
def test_dropout_scales_as_pytorch_does(device, rng, p):
    """Kept values are x times PyTorch's scale, bit for bit (the masks' random streams differ)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    kept = torch.nn.functional.dropout(torch.ones(100000), p=p).numpy()
    torch_scale = np.unique(kept[kept != 0])
    assert torch_scale.size == 1
    x = rng.standard_normal(20000).astype(np.float32)
    y, mask = (to_numpy(t).astype(np.float32)
               for t in ops.dropout_forward(to_tensor(x, device), p, 99, 0))
    assert np.any(mask != 0)
    np.testing.assert_array_equal(y[mask != 0], x[mask != 0] * torch_scale[0])


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

