"""Random small networks (convolutions, pools, activations, linear layers, nested Sequentials,
including the fused Conv2d+ReLU+MaxPool2d(2) and Linear+ReLU runs) against the same network in
PyTorch: forward, loss, dx, every parameter gradient and the parameters after SGD steps.

Each case is one seed (its pytest id); on failure the captured stdout prints the network.

Tolerance rule (`check`): nncore float32 is compared with PyTorch float64 (the exact result up
to ~1e-16), and may differ by rtol * (S + max|ref|) + 8 * max|torch float32 - ref|. S is the
sum of |terms| of the float64 dot products (`gradient_terms`) for parameter gradients, |ref|
elsewhere; max|ref| stands in for it where terms cancel (as in reference.assert_close).
rtol = 2 * depth * dot_tol(K) for the longest reduction K in the network: float32 rounding of
each dot product relative to its sum of |terms|, added up over the layers it flows through,
twice over for the rounding of the dy each layer receives, which S does not track (a
saturated Tanh's 1 - y^2 from a rounded y: one seed in 3,000 needed 1.13 times the single
bound). The last term admits what cancellation costs any float32 implementation: PyTorch's
own float32 error on the same problem, with margin.
"""
import numpy as np
import pytest

import reference as ref
import nncore as nc
import nncore.nn as N
import nncore.optim as NO

torch = pytest.importorskip("torch")
tnn = torch.nn

SEEDS = range(60)


def out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def window(rng, shape):
    """(kernel, stride, padding) of a window that fits (C, H, W), or None."""
    for _ in range(10):
        k = tuple(int(v) for v in rng.integers(1, 4, 2))
        s = tuple(int(v) for v in rng.integers(1, 3, 2))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)  # PyTorch: pool pad <= k/2
        if min(out_size(n, kk, ss, pp) for n, kk, ss, pp in zip(shape[1:], k, s, p)) >= 1:
            return k, s, p
    return None


def activation(rng):
    kind = rng.choice(["ReLU", "LeakyReLU", "Sigmoid", "Tanh"])
    return (kind, (float(rng.choice([0.01, 0.2, -0.3, 1.5])),) if kind == "LeakyReLU" else ())


def spatial_layers(rng, shape, depth):
    """Layer specs (name, args, kwargs) for a (C, H, W) input, and the output shape."""
    kind = rng.choice(["conv_relu_pool", "conv_pool", "conv_relu", "conv", "max", "avg", "act",
                       "nested"])
    C, H, W = shape
    if kind.startswith("conv"):
        k, s, p = window(rng, shape) or ((1, 1), (1, 1), (0, 0))
        co = int(rng.integers(1, 6))
        layers = [("Conv2d", (C, co, k, s, p), {"bias": bool(rng.random() < 0.7)})]
        shape = (co, out_size(H, k[0], s[0], p[0]), out_size(W, k[1], s[1], p[1]))
        if "relu" in kind:
            layers.append(("ReLU", (), {}))
        if "pool" in kind and min(shape[1:]) >= 2:  # the fusable MaxPool2d(2)
            layers.append(("MaxPool2d", (2,), {}))
            shape = (co, shape[1] // 2, shape[2] // 2)
        return layers, shape
    if kind in ("max", "avg"):
        k, s, p = window(rng, shape) or ((1, 1), (1, 1), (0, 0))
        shape = (C, out_size(H, k[0], s[0], p[0]), out_size(W, k[1], s[1], p[1]))
        if kind == "max":
            return [("MaxPool2d", (k, s, p), {})], shape
        return [("AvgPool2d", (k, s, p), {"count_include_pad": bool(rng.random() < 0.5)})], shape
    if kind == "act" or depth == 0:
        return [(*activation(rng), {})], shape
    return nested(rng, spatial_layers, shape, depth)


def dense_layers(rng, features, depth):
    """Layer specs for a (batch, features) input, and the output feature count."""
    kind = rng.choice(["linear_relu", "linear", "act", "nested"])
    if kind.startswith("linear"):
        out = int(rng.integers(1, 9))
        layers = [("Linear", (features, out), {"bias": bool(rng.random() < 0.7)})]
        return layers + [("ReLU", (), {})] * (kind == "linear_relu"), out
    if kind == "act" or depth == 0:
        return [(*activation(rng), {})], features
    return nested(rng, dense_layers, features, depth)


def nested(rng, make_layers, shape, depth):
    """A Sequential of 1-2 runs of make_layers (one level deeper), and its output shape."""
    inner = []
    for _ in range(int(rng.integers(1, 3))):
        layers, shape = make_layers(rng, shape, depth - 1)
        inner += layers
    return [("Sequential", inner, {})], shape


def random_network(rng):
    """(layer specs, input shape, output shape)."""
    batch = int(rng.choice([1, 2, 3, 5]))
    specs = []
    if rng.random() < 0.8:
        shape = (int(rng.integers(1, 4)), *(int(v) for v in rng.integers(1, 13, 2)))
        in_shape = (batch, *shape)
        for _ in range(int(rng.integers(1, 4))):
            layers, shape = spatial_layers(rng, shape, 2)
            specs += layers
        if rng.random() < 0.2:
            return specs, in_shape, (batch, *shape)
        specs.append(("Flatten", (), {}))
        features = int(np.prod(shape))
    else:
        features = int(rng.integers(1, 10))
        in_shape = (batch, features)
    for _ in range(int(rng.integers(len(specs) == 0, 3))):
        layers, features = dense_layers(rng, features, 2)
        specs += layers
    return specs, in_shape, (batch, features)


def build(lib, specs):
    """The same layers from nncore.nn or torch.nn (same names, signatures, parameter names)."""
    return lib.Sequential(*(build(lib, args) if name == "Sequential"
                            else getattr(lib, name)(*args, **kwargs)
                            for name, args, kwargs in specs))


def distinct_input(rng, shape):
    """Values at least 4/n apart (no max-pool ties, so the argmax is unambiguous)."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * (4 / n)).reshape(shape).astype(np.float32)


def check(got, ref32, ref64, rtol, what, terms=None):
    """The tolerance rule of the module docstring."""
    ref32, ref64 = ref.f64(ref32.detach()), ref.f64(ref64.detach())
    slack = 8 * float(np.max(np.abs(ref32 - ref64), initial=0.0))
    ref.assert_close(got, ref64, rtol=rtol, scale=None if terms is None else ref.f64(terms),
                     atol=rtol * float(np.max(np.abs(ref64), initial=0.0)) + slack, what=what)


def keep_input_and_output_grad(module, inputs, output):
    module.kept_input = inputs[0].detach()
    output.register_hook(lambda grad: setattr(module, "kept_output_grad", grad))


def gradient_terms(tnet):
    """Per parameter name, the sum of |terms| of its gradient: |dy|^T |x| (as a convolution's
    weight gradient for Conv2d) and the sum of |dy| for a bias."""
    terms = {}
    for prefix, m in tnet.named_modules():
        if isinstance(m, (tnn.Conv2d, tnn.Linear)):
            x, dy = m.kept_input.abs(), m.kept_output_grad.abs()
            terms[f"{prefix}.weight"] = (dy.T @ x if isinstance(m, tnn.Linear) else
                                         torch.nn.grad.conv2d_weight(x, m.weight.shape, dy,
                                                                     m.stride, m.padding))
            terms[f"{prefix}.bias"] = dy.sum([d for d in range(dy.ndim) if d != 1])
    return terms


def run_case(device, seed):
    rng = np.random.default_rng(seed)
    specs, in_shape, out_shape = random_network(rng)
    nc.manual_seed(seed)
    net = build(N, specs).to(device)
    print(f"seed {seed}: input {in_shape}\n{net}")
    nets = [build(tnn, specs), build(tnn, specs).double()]  # float32, float64 references
    for m in (m for m in nets[1].modules() if isinstance(m, (tnn.Conv2d, tnn.Linear))):
        m.register_forward_hook(keep_input_and_output_grad)
    for tnet in nets:
        tnet.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    depth = sum(1 for _ in nets[0].modules())
    # longest reduction: a fan-in, or batch * output pixels of a weight gradient (images start
    # at <= 12 x 12 and grow by <= 1 per layer)
    K = max([in_shape[0] * 16 * 16] + [p[0].numel() for p in nets[0].parameters()])
    rtol = 2 * depth * ref.dot_tol(K)
    sgd = dict(lr=float(rng.choice([0.01, 0.1, 0.5])), momentum=float(rng.choice([0.5, 0.9])),
               nesterov=bool(rng.random() < 0.5), weight_decay=float(rng.choice([0, 0.01, 0.3])))
    optimizers = ([NO.SGD(net, **sgd)] + [torch.optim.SGD(t.parameters(), **sgd) for t in nets]
                  if net.parameters() else [])
    loss_kind = rng.choice(["dy", "mse", "ce_labels", "ce_probs"] if len(out_shape) == 2
                           else ["dy", "mse"])
    for step in range(2):  # the second step runs the momentum buffers
        x = distinct_input(rng, in_shape)
        txs = [torch.tensor(x, dtype=dtype, requires_grad=True)
               for dtype in (torch.float32, torch.float64)]
        y = net(nc.tensor(x, device=device))
        tys = [tnet(tx) for tnet, tx in zip(nets, txs)]
        check(y, *tys, rtol, f"step {step} forward")
        if loss_kind == "dy":
            dy = rng.standard_normal(out_shape).astype(np.float32)
            for ty in tys:
                ty.backward(torch.tensor(dy, dtype=ty.dtype))
            dy = nc.tensor(dy, device=device)
        else:
            name = "MSELoss" if loss_kind == "mse" else "CrossEntropyLoss"
            loss, tloss = getattr(N, name)(), getattr(tnn, name)()
            if loss_kind == "mse":
                target = rng.standard_normal(out_shape).astype(np.float32)
            elif loss_kind == "ce_labels":
                target = rng.integers(0, out_shape[1], out_shape[0])
            else:  # class probabilities
                target = rng.random(out_shape).astype(np.float32)
                target /= target.sum(1, keepdims=True)
            t = torch.from_numpy(target)
            tvalues = [tloss(ty, t.to(ty.dtype) if t.is_floating_point() else t) for ty in tys]
            for ty, tvalue in zip(tys, tvalues):
                ty.retain_grad()
                tvalue.backward()
            check(np.float64(loss(y, target)), *tvalues, rtol, f"step {step} {loss_kind} loss")
            dy = loss.backward()
            check(dy, tys[0].grad, tys[1].grad, rtol, f"step {step} dloss/dy")
        dx = net.backward(dy)
        check(dx, txs[0].grad, txs[1].grad, rtol, f"step {step} dx")
        named = [dict(tnet.named_parameters()) for tnet in nets]
        terms = gradient_terms(nets[1])
        for name, p in net.named_parameters():
            grads = [t[name].grad if t[name].grad is not None else torch.zeros(p.shape)
                     for t in named]
            check(p.grad, *grads, rtol, f"step {step} grad {name}", terms[name])
        for opt in optimizers:
            opt.step()
            opt.zero_grad()
        for name, p in net.named_parameters():
            check(p.data, named[0][name], named[1][name], rtol, f"step {step} SGD {sgd} {name}")


@pytest.mark.parametrize("seed", SEEDS, ids=lambda seed: f"seed{seed}")
def test_random_network(device, seed):
    run_case(device, seed)


@pytest.mark.parametrize("algorithm", ["im2col", "direct"])
@pytest.mark.parametrize("kernel", ["avx512", "avx2", "generic"])
@pytest.mark.parametrize("seed", range(1000, 1004), ids=lambda seed: f"seed{seed}")
def test_random_network_each_cpu_kernel(kernel, algorithm, seed):
    """Every CPU GEMM micro-kernel family and convolution algorithm (direct needs stride 1;
    other strides still run im2col)."""
    nc._C._force_cpu_gemm_kernel(kernel)
    nc._C._force_cpu_conv_algorithm(algorithm)
    try:
        if nc._C.cpu_gemm_kernel() != kernel:
            pytest.skip(f"CPU GEMM kernel {kernel!r} cannot run on this CPU")
        run_case("cpu", seed)
    finally:
        ref.restore_cpu_gemm_kernel()
        nc._C._force_cpu_conv_algorithm("auto")
