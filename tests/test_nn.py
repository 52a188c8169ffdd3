"""nncore.nn layers and losses, nncore.optim: gradient checks by central differences, equivalence
with PyTorch (when installed), the Module API, initialisation and bad-input errors."""
from __future__ import annotations

import json
import math
import re
from collections import OrderedDict

import numpy as np
import pytest

import nncore as nc
from nncore import models, nn, optim


def as_tensor(array, device):
    return nc.tensor(np.asarray(array, dtype=np.float32), device=device)


# ---------------------------------------------------------------- gradient checks


def sampled_indices(shape, rng, count=24):
    flat = rng.choice(int(np.prod(shape)), size=min(count, int(np.prod(shape))), replace=False)
    return [np.unravel_index(i, shape) for i in flat]


def numeric_grad(f, array, indices, eps):
    """Central differences of the scalar f at the given indices of array (float64)."""
    grads = []
    for index in indices:
        bumped = array.copy()
        bumped[index] += eps
        plus = f(bumped)
        bumped[index] -= 2 * eps
        minus = f(bumped)
        grads.append((plus - minus) / (2 * eps))
    return np.array(grads)


def assert_grad_close(analytic, numeric_at, indices, what, rtol=2e-2):
    analytic = np.asarray(analytic, dtype=np.float64)
    assert np.abs(analytic).max() > 0, f"{what}: gradient is all zeros (vacuous check)"
    picked = np.array([analytic[i] for i in indices])
    error = np.linalg.norm(picked - numeric_at) / max(np.linalg.norm(numeric_at), 1e-3)
    assert error < rtol, f"{what}: relative error {error:.3g}\nanalytic {picked}\nnumeric  {numeric_at}"


def check_gradients(layer, x, device, rng, eps=1e-2, rtol=2e-2):
    """d(sum(y * r))/d(input) and /d(each parameter) from backward vs central differences."""
    y = layer.forward(as_tensor(x, device))
    r = rng.standard_normal(y.shape)
    layer.zero_grad()
    layer.forward(as_tensor(x, device))
    dx = layer.backward(as_tensor(r, device), need_dx=True).numpy()

    def objective_of_input(x_value):
        return float((layer.forward(as_tensor(x_value, device)).numpy().astype(np.float64) * r).sum())

    indices = sampled_indices(x.shape, rng)
    assert_grad_close(dx, numeric_grad(objective_of_input, x.astype(np.float64), indices, eps),
                      indices, f"{layer!r} dx", rtol)
    for name, param in layer.named_parameters():
        analytic = param.grad.numpy().copy()
        original = param.data

        def objective_of_param(value, param=param):
            param.data = as_tensor(value, device)
            return objective_of_input(x)

        indices = sampled_indices(param.shape, rng)
        numeric = numeric_grad(objective_of_param, original.numpy().astype(np.float64), indices, eps)
        param.data = original
        assert_grad_close(analytic, numeric, indices, f"{layer!r} d{name}", rtol)


def away_from_zero(rng, shape, gap=0.2):
    """Values with |x| >= gap, so a kink at 0 is never within a finite-difference step."""
    return (rng.choice([-1.0, 1.0], size=shape) * rng.uniform(gap, 1.0, size=shape)).astype(np.float32)


def distinct_grid(rng, shape, spacing=0.05):
    """All values distinct and spacing apart, so a max never changes within a step."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * spacing - 1.0).astype(np.float32)


def test_linear_gradients(device, rng):
    nc.manual_seed(1)
    check_gradients(nn.Linear(7, 5, device=device), rng.standard_normal((4, 7)), device, rng)
    check_gradients(nn.Linear(3, 2, bias=False, device=device), rng.standard_normal((5, 3)), device, rng)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 0), (3, 2, 1), ((3, 2), (2, 1), (1, 0))])
def test_conv2d_gradients(device, rng, kernel, stride, padding):
    nc.manual_seed(2)
    conv = nn.Conv2d(2, 3, kernel, stride=stride, padding=padding, device=device)
    check_gradients(conv, rng.standard_normal((2, 2, 7, 6)), device, rng)


@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0))])
def test_max_pool2d_gradients(device, rng, kernel, stride, padding):
    check_gradients(nn.MaxPool2d(kernel, stride, padding), distinct_grid(rng, (2, 2, 6, 7)), device, rng)


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_gradients(device, rng, count_include_pad):
    pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=count_include_pad)
    check_gradients(pool, rng.standard_normal((2, 3, 7, 6)), device, rng)


@pytest.mark.parametrize("make_layer", [nn.ReLU, lambda: nn.LeakyReLU(0.1), nn.Sigmoid, nn.Tanh, nn.Softmax,
                                        nn.Flatten, nn.Identity],
                         ids=["relu", "leaky_relu", "sigmoid", "tanh", "softmax", "flatten", "identity"])
def test_activation_gradients(device, rng, make_layer):
    check_gradients(make_layer(), away_from_zero(rng, (3, 4, 5)), device, rng)


def test_sequential_gradients(device, rng):
    """conv -> relu -> pool -> flatten -> linear, input and every parameter gradient."""
    nc.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, device=device), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(3 * 3 * 3, 4, device=device))
    # a smaller step: relu and max kinks inside the network are hard to keep 2*eps away from
    check_gradients(model, rng.standard_normal((2, 1, 6, 6)), device, rng, eps=1e-3, rtol=3e-2)


def check_sequential_matches_layer_by_layer(layers, x, fused):
    """Runs `layers` one by one (nothing fused: forward, then backward from a random dy), then
    as one Sequential: the same output, input and parameter gradients to rounding, and `fused`
    the positions Sequential ran inside the layer before. Returns the layer-by-layer outputs."""
    model = nn.Sequential(*layers)
    outputs, h = [], x
    for layer in layers:
        h = layer.forward(h)
        outputs.append(h.numpy().copy())
    dy = as_tensor(np.random.default_rng(11).standard_normal(outputs[-1].shape), x.device)
    g = dy
    for layer in reversed(layers):
        g = layer.backward(g, need_dx=True)
    expected_dx = g.numpy().copy()
    expected_grads = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    np.testing.assert_array_equal(model.forward(x).numpy(), outputs[-1])
    assert model._saved == fused  # a Sequential's saved state: its fused positions
    dx = model.backward(dy, need_dx=True)
    np.testing.assert_allclose(dx.numpy(), expected_dx, rtol=1e-5, atol=1e-6)
    for got, want in zip(model.parameters(), expected_grads):
        np.testing.assert_allclose(got.grad.numpy(), want, rtol=1e-5, atol=1e-6)
    return outputs


def test_sequential_fused_conv_relu_matches_layer_by_layer(device, rng):
    """Sequential runs Conv2d + ReLU + MaxPool2d(2), Conv2d + ReLU and Linear + ReLU as fused
    ops; the result is the layer-by-layer one."""
    nc.manual_seed(5)
    layers = [nn.Conv2d(2, 4, 3, padding=1, device=device), nn.ReLU(), nn.MaxPool2d(2),
              nn.Conv2d(4, 3, 3, device=device), nn.ReLU(), nn.Flatten(),
              nn.Linear(3 * 2 * 2, 5, device=device), nn.ReLU()]
    x = as_tensor(rng.standard_normal((3, 2, 8, 8)), device)
    outputs = check_sequential_matches_layer_by_layer(layers, x, {1, 2, 4, 7})
    # A ReLU fused without a pool still answers its own backward (its output's mask is the
    # same); the fused pool too (its argmax is the one it would have found); a ReLU whose
    # output was pooled away inside the fused op says so.
    relu2_dx = layers[4].backward(as_tensor(np.ones((3, 3, 2, 2)), device)).numpy()
    np.testing.assert_array_equal(relu2_dx, (outputs[4] > 0).astype(np.float32))
    relu3_dx = layers[7].backward(as_tensor(np.ones((3, 5)), device)).numpy()
    np.testing.assert_array_equal(relu3_dx, (outputs[7] > 0).astype(np.float32))
    pool_dx = layers[2].backward(as_tensor(np.ones((3, 4, 4, 4)), device)).numpy()
    assert pool_dx.shape == (3, 4, 8, 8) and pool_dx.sum() == 3 * 4 * 4 * 4
    with pytest.raises(RuntimeError, match="fused"):
        layers[1].backward(as_tensor(np.ones((3, 4, 8, 8)), device))


@pytest.mark.parametrize("pattern", ["conv-pool", "conv-relu-pool3", "conv-relu-pool-stride1",
                                     "conv-relu-pool-odd", "lenet5", "mlp"])
def test_sequential_fusions_match_layer_by_layer(device, rng, pattern):
    """Which neighbours Sequential fuses into a Conv2d (a ReLU, a 2x2/stride-2 MaxPool2d) and
    that the fused network computes what the layers do one by one."""
    nc.manual_seed(7)
    conv = lambda: nn.Conv2d(2, 3, 3, padding=1, device=device)
    head = lambda features: [nn.Flatten(), nn.Linear(features, 4, device=device)]
    shape = {"conv-relu-pool-odd": (3, 2, 7, 9), "lenet5": (3, 1, 28, 28), "mlp": (5, 6)}.get(
        pattern, (3, 2, 8, 8))
    layers, fused = {
        "conv-pool": ([conv(), nn.MaxPool2d(2)] + head(3 * 4 * 4), {1}),
        "conv-relu-pool3": ([conv(), nn.ReLU(), nn.MaxPool2d(3)] + head(3 * 2 * 2), {1}),
        "conv-relu-pool-stride1": ([conv(), nn.ReLU(), nn.MaxPool2d(2, stride=1)] + head(3 * 7 * 7),
                                   {1}),
        "conv-relu-pool-odd": ([conv(), nn.ReLU(), nn.MaxPool2d(2)] + head(3 * 3 * 4), {1, 2}),
        "lenet5": (list(models.lenet5(device=device)), {1, 2, 4, 5, 8, 10}),
        # A Linear's ReLU runs in its bias pass and its bias gradient's pass.
        "mlp": ([nn.Linear(6, 5, device=device), nn.ReLU(), nn.Linear(5, 4, device=device),
                 nn.ReLU(), nn.Linear(4, 3, device=device)], {1, 3}),
    }[pattern]
    check_sequential_matches_layer_by_layer(layers, as_tensor(rng.standard_normal(shape), device),
                                            fused)


def test_sequential_runs_a_linear_relu_in_the_bias_pass(device, rng):
    nc.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 5, device=device), nn.ReLU(), nn.Linear(5, 3, device=device))
    x = as_tensor(rng.standard_normal((4, 6)), device)
    want = model[2].forward(nn.ReLU().forward(model[0].forward(x))).numpy()
    model[1].forward = lambda _: pytest.fail("the ReLU ran as a layer of its own")
    model[1].backward = lambda *_, **__: pytest.fail("the ReLU's backward ran on its own")
    np.testing.assert_array_equal(model.forward(x).numpy(), want)
    dx = model.backward(as_tensor(np.ones((4, 3)), device), need_dx=True)
    assert dx.shape == (4, 6) and np.abs(model[0].weight.grad.numpy()).sum() > 0


@pytest.mark.parametrize("target_kind", ["labels", "probabilities"])
def test_cross_entropy_gradient(device, rng, target_kind):
    logits = rng.standard_normal((5, 4))
    target = rng.integers(0, 4, 5) if target_kind == "labels" else rng.dirichlet(np.ones(4), 5)
    loss = nn.CrossEntropyLoss()
    loss.forward(as_tensor(logits, device), target)
    analytic = loss.backward().numpy()
    indices = sampled_indices(logits.shape, rng, 20)
    numeric = numeric_grad(lambda z: loss.forward(as_tensor(z, device), target), logits, indices, 1e-2)
    assert_grad_close(analytic, numeric, indices, "CrossEntropyLoss")


def test_mse_gradient(device, rng):
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)).astype(np.float32)
    loss = nn.MSELoss()
    loss.forward(as_tensor(pred, device), target)
    analytic = loss.backward().numpy()
    indices = sampled_indices(pred.shape, rng, 12)
    numeric = numeric_grad(lambda p: loss.forward(as_tensor(p, device), target), pred, indices, 1e-2)
    assert_grad_close(analytic, numeric, indices, "MSELoss")


# ---------------------------------------------------------------- dropout


def test_manual_seed_range(device):
    """Every seed manual_seed takes also drives dropout; others are refused up front."""
    nc.manual_seed(2**64 - 1)
    nn.Dropout(0.5).forward(nc.tensor(np.ones((4, 4), np.float32), device=device))
    for bad in (-1, 2**64, 1.5, True):
        with pytest.raises(ValueError, match="manual_seed: expected an integer in"):
            nc.manual_seed(bad)
    nc.manual_seed(0)


def test_dropout_masks_scales_and_is_identity_in_eval(device, rng):
    x = rng.uniform(1.0, 2.0, (100, 100)).astype(np.float32)
    dropout = nn.Dropout(0.3)
    nc.manual_seed(7)
    y = dropout.forward(as_tensor(x, device)).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 5 * math.sqrt(0.21 / x.size)
    np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-6)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(dropout.backward(as_tensor(dy, device)).numpy(), dy * kept / 0.7, rtol=1e-6)

    nc.manual_seed(7)
    np.testing.assert_array_equal(dropout.forward(as_tensor(x, device)).numpy(), y)  # reproducible
    assert not np.array_equal(dropout.forward(as_tensor(x, device)).numpy(), y)  # next call: new mask

    dropout.eval()
    np.testing.assert_array_equal(dropout.forward(as_tensor(x, device)).numpy(), x)
    np.testing.assert_array_equal(dropout.backward(as_tensor(dy, device)).numpy(), dy)


# ---------------------------------------------------------------- Module API


def test_state_dict_names_shapes_and_round_trip(device):
    nc.manual_seed(0)
    model = models.lenet5(device=device)
    state = model.state_dict()
    assert list(state) == ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias",
                           "9.weight", "9.bias", "11.weight", "11.bias"]
    assert state["0.weight"].shape == (6, 1, 5, 5) and state["7.weight"].shape == (120, 400)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in state.values())
    other = models.lenet5(device=device)
    other.load_state_dict(state)
    for name, value in other.state_dict().items():
        np.testing.assert_array_equal(value, state[name])
        assert dict(other.named_parameters())[name].device == device


def test_state_dict_is_a_snapshot(device):
    layer = nn.Linear(3, 2, device=device)
    before = layer.state_dict()
    layer.weight.data.fill_(5.0)
    assert not np.any(before["weight"] == 5.0)


def test_load_state_dict_errors(device):
    model = nn.Sequential(nn.Linear(4, 3, device=device), nn.ReLU(), nn.Linear(3, 2, device=device))
    state = model.state_dict()
    with pytest.raises(ValueError, match=re.escape("missing keys ['2.bias']")):
        model.load_state_dict({k: v for k, v in state.items() if k != "2.bias"})
    with pytest.raises(ValueError, match=re.escape("unexpected keys ['3.weight']")):
        model.load_state_dict({**state, "3.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match=re.escape("0.weight: shape (4, 3) in the state dict, (3, 4) in the model")):
        model.load_state_dict({**state, "0.weight": np.zeros((4, 3), np.float32)})
    model.load_state_dict({"0.weight": np.ones((3, 4), np.float32)}, strict=False)
    np.testing.assert_array_equal(model.state_dict()["0.weight"], 1.0)


def test_sequential_named_children_and_container_api(device):
    model = nn.Sequential(OrderedDict([("hidden", nn.Linear(4, 3, device=device)), ("act", nn.Tanh()),
                                       ("out", nn.Linear(3, 2, device=device))]))
    assert [name for name, _ in model.named_parameters()] == ["hidden.weight", "hidden.bias",
                                                               "out.weight", "out.bias"]
    assert len(model) == 3 and isinstance(model[1], nn.Tanh) and len(model[1:]) == 2
    assert list(model[1:].state_dict()) == ["out.weight", "out.bias"]  # names kept, as PyTorch
    keras_style = nn.Sequential()
    keras_style.add(nn.Linear(4, 3))
    keras_style.add(nn.ReLU())
    assert list(keras_style.state_dict()) == ["0.weight", "0.bias"]


def test_backward_accumulates_and_zero_grad_clears(device, rng):
    layer = nn.Linear(3, 2, device=device)
    x, dy = as_tensor(rng.standard_normal((4, 3)), device), as_tensor(rng.standard_normal((4, 2)), device)
    layer.forward(x)
    layer.backward(dy)
    once = layer.weight.grad.numpy().copy()
    layer.forward(x)
    layer.backward(dy)
    np.testing.assert_allclose(layer.weight.grad.numpy(), 2 * once, rtol=1e-6)
    layer.zero_grad()
    assert not layer.weight.grad.numpy().any() and not layer.bias.grad.numpy().any()


def test_backward_uses_up_the_forward(device, rng):
    """A second backward for one forward raises, as PyTorch's does, instead of adding the same
    gradients again; so does the loss's."""
    layer, loss = nn.Linear(3, 2, device=device), nn.MSELoss()
    x = as_tensor(rng.standard_normal((4, 3)), device)
    loss.forward(layer.forward(x), np.zeros((4, 2), np.float32))
    layer.backward(loss.backward())
    with pytest.raises(RuntimeError, match="backward already ran"):
        layer.backward(as_tensor(np.ones((4, 2)), device))
    with pytest.raises(RuntimeError, match="backward already ran"):
        loss.backward()


def _lenet_like(device):
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, device=device), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Dropout(0.0), nn.Identity(), nn.Linear(8, 5, device=device),
                         nn.ReLU(), nn.Linear(5, 3, device=device), nn.Sigmoid())


def test_refused_backward_can_be_retried(device, rng):
    """A backward refused for its dy (not a tensor, another shape or dtype) leaves the forward's
    state for the retry, as PyTorch's graph stays after 'Mismatch in shape'; so does a loss's.
    The retried backward gives the gradients of a backward that succeeded first time."""
    x = as_tensor(rng.standard_normal((2, 1, 4, 4)), device)
    dy = as_tensor(rng.standard_normal((2, 3)), device)
    model, twin = _lenet_like(device), _lenet_like(device)
    twin.load_state_dict(model.state_dict())
    twin.forward(x)
    dx_twin = twin.backward(dy)
    model.forward(x)
    for bad, error, message in [
            (dy.numpy(), TypeError, r"expected an nncore Tensor dy, got ndarray"),
            (None, TypeError, r"expected an nncore Tensor dy, got NoneType"),
            (as_tensor(np.ones((3, 2)), device), ValueError, r"sigmoid_backward"),
            (nc.tensor(np.ones((2, 3), np.int32), device=device), TypeError, r"float32")]:
        with pytest.raises(error, match=message):
            model.backward(bad)
    dx = model.backward(dy)
    np.testing.assert_array_equal(dx.numpy(), dx_twin.numpy())
    for mine, theirs in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(mine.grad.numpy(), theirs.grad.numpy())
    with pytest.raises(RuntimeError, match="backward already ran"):
        model.backward(dy)
    loss = nn.CrossEntropyLoss()
    loss.forward(model.forward(x), np.array([0, 2]))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss.backward: grad_scale must be a number"):
        loss.backward(None)
    assert loss.backward().shape == (2, 3)


@pytest.mark.parametrize("layer", [nn.Flatten(), nn.Identity(), nn.Dropout(0.5)])
def test_pass_through_backward_checks_dy(device, rng, layer):
    """Flatten, Identity and Dropout in eval mode hand dy on without a kernel: they check it
    themselves (Flatten reshaped a transposed dy of the same size, took int32, and returned a
    NumPy array for a NumPy dy)."""
    layer.eval()
    y = layer.forward(as_tensor(rng.standard_normal((2, 6)), device))
    with pytest.raises(ValueError, match=r"dy \(6, 2\) must have the forward output's shape \(2, 6\)"):
        layer.backward(as_tensor(np.ones((6, 2)), device))
    with pytest.raises(TypeError, match="dy must be float32, got int32"):
        layer.backward(nc.tensor(np.ones((2, 6), np.int32), device=device))
    with pytest.raises(TypeError, match="expected an nncore Tensor dy, got ndarray"):
        layer.backward(np.ones((2, 6), np.float32))
    assert layer.backward(as_tensor(np.ones(y.shape), device)).shape == (2, 6)


@pytest.mark.parametrize("call", ["predict", "evaluate"])
def test_inference_between_forward_and_backward_keeps_the_gradients(device, rng, call):
    """predict() and evaluate() run their own forwards; the backward of the forward before them
    still gets that forward's gradients (it computed them from the prediction's inputs)."""
    x = as_tensor(rng.standard_normal((4, 1, 4, 4)), device)
    dy = as_tensor(rng.standard_normal((4, 3)), device)
    model, twin = _lenet_like(device), _lenet_like(device)
    twin.load_state_dict(model.state_dict())
    twin.forward(x)
    twin.backward(dy)
    model.forward(x)
    other = rng.standard_normal((6, 1, 4, 4)).astype(np.float32)
    if call == "predict":
        model.predict(other, batch_size=4)
    else:
        model.evaluate(other, np.arange(6) % 3, batch_size=4)
    model.backward(dy)
    for mine, theirs in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(mine.grad.numpy(), theirs.grad.numpy())


def test_reassigned_module_and_parameter_keep_their_place(device):
    """As in PyTorch: a Sequential runs a replaced layer where it was (it moved to the end, and
    forward then fed the first layer's input to the head), and state_dict keeps its order."""
    model = nn.Sequential(OrderedDict([("fc1", nn.Linear(4, 8, device=device)), ("act", nn.ReLU()),
                                       ("head", nn.Linear(8, 3, device=device))]))
    model.fc1 = nn.Linear(4, 8, device=device)
    assert [name for name, _ in model.named_children()] == ["fc1", "act", "head"]
    assert model.forward(as_tensor(np.ones((2, 4)), device)).shape == (2, 3)
    layer = model.fc1
    layer.weight = nn.Parameter(nc.zeros((8, 4), device=device))
    assert list(layer.state_dict()) == ["weight", "bias"]
    layer.bias = None  # None still unregisters
    assert list(layer.state_dict()) == ["weight"]


@pytest.mark.parametrize("name", ["device", "train", "fit", "parameters"])
def test_add_module_refuses_names_of_module_attributes(name):
    """A child named "train" replaced the method (fit then failed far from the cause); "device",
    a read-only property, raised AttributeError with the child half-registered."""
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=f"invalid module name '{name}': it would hide"):
        model.add_module(name, nn.Linear(2, 2))
    with pytest.raises(ValueError, match=f"invalid module name '{name}'"):
        nn.Sequential(OrderedDict([(name, nn.ReLU())]))
    assert [n for n, _ in model.named_children()] == ["0"] and len(model.parameters()) == 2
    with pytest.raises(AttributeError):
        model.device = nn.ReLU()  # a read-only property: refused before any registration
    assert [n for n, _ in model.named_children()] == ["0"]


def test_failed_move_keeps_the_forward_state(rng):
    layer = nn.Linear(3, 2)
    layer.forward(as_tensor(rng.standard_normal((4, 3)), "cpu"))
    with pytest.raises(ValueError, match="gpu"):
        layer.to("gpu")
    assert layer.backward(as_tensor(np.ones((4, 2)), "cpu")).shape == (4, 3)


def test_layer_constructor_arguments_are_checked():
    # PyTorch's sixth positional Conv2d argument is dilation: not taken as bias.
    with pytest.raises(TypeError, match="positional argument"):
        nn.Conv2d(1, 2, 3, 1, 0, 2)
    for make, message in [(lambda: nn.Linear(3.5, 2), "Linear: in_features must be a positive integer, got 3.5"),
                          (lambda: nn.Linear(3, "2"), "Linear: out_features must be a positive integer"),
                          (lambda: nn.Conv2d(0, 2, 3), "Conv2d: in_channels must be a positive integer"),
                          (lambda: nn.Conv2d(1, 2, 3.0), r"Conv2d: kernel_size must be an int or a pair"),
                          (lambda: nn.Dropout("0.5"), r"Dropout: p must be a number in \[0, 1\)"),
                          (lambda: nn.Linear(2, 2).train("no"), "Linear.train: mode must be a bool")]:
        with pytest.raises(ValueError, match=message):
            make()


def test_load_state_dict_returns_the_unmatched_keys(device):
    layer = nn.Linear(2, 2, device=device)
    result = layer.load_state_dict({"weight": np.ones((2, 2)), "extra": np.ones(1)}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["extra"]
    missing, unexpected = layer.load_state_dict(layer.state_dict())
    assert missing == [] and unexpected == []


@pytest.mark.parametrize("reused", ["linear", "tanh"])
def test_module_used_twice_raises_instead_of_wrong_gradients(device, rng, reused):
    """A module keeps one forward's inputs, so the backward of its first use would see the
    second use's: that backward raises. Sharing Parameters between two modules is the supported
    way, and its gradients match PyTorch's for the module used twice."""
    torch = pytest.importorskip("torch")
    first = nn.Linear(3, 3, device=device)
    act = nn.Tanh()
    if reused == "linear":
        model = nn.Sequential(first, nn.Tanh(), first)
    else:
        model = nn.Sequential(first, act, nn.Linear(3, 3, device=device), act)
    x = as_tensor(rng.standard_normal((4, 3)), device)
    dy = as_tensor(rng.standard_normal((4, 3)), device)
    model.forward(x)
    with pytest.raises(RuntimeError, match="backward already ran"):
        model.backward(dy)

    second = nn.Linear(3, 3, device=device)
    second.weight, second.bias = first.weight, first.bias
    model = nn.Sequential(first, nn.Tanh(), second)
    assert model.parameters() == [first.weight, first.bias]
    model.zero_grad()
    model.forward(x)
    dx = model.backward(dy)
    w = torch.tensor(first.weight.data.numpy(), requires_grad=True)
    b = torch.tensor(first.bias.data.numpy(), requires_grad=True)
    x_t = torch.tensor(x.numpy(), requires_grad=True)
    y_t = torch.tanh(x_t @ w.T + b) @ w.T + b
    y_t.backward(torch.tensor(dy.numpy()))
    np.testing.assert_allclose(first.weight.grad.numpy(), w.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first.bias.grad.numpy(), b.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx.numpy(), x_t.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_need_dx(device, rng):
    model = nn.Sequential(nn.Linear(3, 4, device=device), nn.ReLU(), nn.Linear(4, 2, device=device))
    x = as_tensor(rng.standard_normal((5, 3)), device)
    dy = as_tensor(rng.standard_normal((5, 2)), device)
    model.forward(x)
    assert model.backward(dy, need_dx=False) is None  # a training loop's: no input gradient
    assert model[0].weight.grad.numpy().any()
    model.forward(x)
    assert model.backward(dy).shape == (5, 3)  # dx, like any layer (Sequential nests)
    model.forward(x)
    assert model[0].backward(dy=as_tensor(np.ones((5, 4)), device), need_dx=False) is None


def test_train_eval_and_to(device, rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    assert model.training and model[1].training
    model.eval()
    assert not model.training and not model[1].training
    x = rng.standard_normal((5, 3)).astype(np.float32)
    expected = model.forward(nc.tensor(x)).numpy().copy()
    model.to(device)
    assert all(p.device == device and p.grad.device == device for p in model.parameters())
    np.testing.assert_allclose(model.forward(as_tensor(x, device)).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert model.train() is model and model[1].training


def test_backward_without_forward_raises(device):
    with pytest.raises(RuntimeError, match=r"Linear\(3, 2\): backward called without a forward"):
        nn.Linear(3, 2, device=device).backward(nc.zeros((1, 2), device=device))
    with pytest.raises(RuntimeError, match="CrossEntropyLoss: backward called without a forward"):
        nn.CrossEntropyLoss().backward()


# ---------------------------------------------------------------- initialisation


def test_default_init_is_pytorch_uniform_and_seeded(device):
    nc.manual_seed(123)
    layer = nn.Linear(400, 300, device=device)
    conv = nn.Conv2d(6, 16, 5, device=device)
    bound = 1 / math.sqrt(400)
    weight = layer.weight.data.numpy()
    assert np.abs(weight).max() <= bound and np.abs(layer.bias.data.numpy()).max() <= bound
    assert abs(weight.std() - bound / math.sqrt(3)) < 0.02 * bound  # uniform on [-bound, bound]
    assert np.abs(conv.weight.data.numpy()).max() <= 1 / math.sqrt(6 * 25)
    assert not layer.weight.grad.numpy().any()
    nc.manual_seed(123)
    np.testing.assert_array_equal(nn.Linear(400, 300, device=device).weight.data.numpy(), weight)


# ---------------------------------------------------------------- bad input


def test_wrong_input_shape_names_the_layer(device):
    with pytest.raises(ValueError, match=re.escape("Linear(784, 800): expected input (N, 784), got (32, 100)")):
        nn.Linear(784, 800, device=device).forward(nc.zeros((32, 100), device=device))
    with pytest.raises(ValueError, match=re.escape(
            "Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2)): expected input (N, 1, H, W), "
            "got (8, 3, 28, 28)")):
        models.lenet5(device=device).forward(nc.zeros((8, 3, 28, 28), device=device))
    with pytest.raises(ValueError, match=re.escape("Conv2d(1, 2, kernel_size=(5, 5), stride=(1, 1)): input "
                                                   "(1, 1, 3, 3) is too small")):
        nn.Conv2d(1, 2, 5, device=device).forward(nc.zeros((1, 1, 3, 3), device=device))
    with pytest.raises(ValueError, match=re.escape("MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)): "
                                                   "expected input (N, C, H, W), got (4, 10)")):
        nn.MaxPool2d(2).forward(nc.zeros((4, 10), device=device))
    with pytest.raises(TypeError, match=r"Linear\(2, 2\): expected an nncore Tensor input, got ndarray"):
        nn.Linear(2, 2, device=device).forward(np.zeros((1, 2), np.float32))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"Dropout: p must be a number in \[0, 1\), got 1.0"):
        nn.Dropout(1.0)
    with pytest.raises(ValueError, match="padding"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        models.lenet5(activation="gelu")
    for dropout in (-0.5, 1.0, float("nan")):  # -0.5 once made a model without Dropout, recorded in its config
        with pytest.raises(ValueError, match=re.escape(f"mlp: dropout must be in [0, 1), got {dropout}")):
            models.mlp(4, 3, 2, dropout=dropout)


def test_labels_out_of_range(device):
    logits = nc.zeros((3, 4), device=device)
    loss = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"label 4 at row 2 is out of range for 4 classes"):
        loss.forward(logits, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"label -1 at row 0 is out of range for 4 classes"):
        loss.forward(logits, nc.tensor(np.array([-1, 1, 2]), device=device))
    with pytest.raises(ValueError, match=r"cross_entropy"):
        loss.forward(logits, np.array([0, 1]))  # wrong number of labels


def test_mse_shape_mismatch(device):
    with pytest.raises(ValueError, match="mse"):
        nn.MSELoss().forward(nc.zeros((3, 2), device=device), np.zeros((2, 3), np.float32))


# ---------------------------------------------------------------- optimizers and schedules


def test_optimizer_argument_errors(device):
    params = nn.Linear(2, 2, device=device).parameters()
    with pytest.raises(ValueError, match="Nesterov momentum requires momentum > 0 and dampening = 0"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr must be non-negative"):
        optim.SGD(params, lr=-1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(params, betas=(1.0, 0.999))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="^SGD: a parameter is listed twice"):
        optim.SGD(params + params[:1], lr=0.1)


def test_schedules(device):
    opt = optim.SGD(nn.Linear(2, 2, device=device).parameters(), lr=1.0)
    step = optim.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        step.step()
        lrs.append(opt.lr)
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25]
    opt.lr = 0.1
    cosine = optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.01)
    for epoch in range(1, 5):
        cosine.step()
        assert opt.lr == pytest.approx(0.01 + 0.09 * (1 + math.cos(math.pi * epoch / 4)) / 2)
    assert opt.lr == pytest.approx(0.01)


def test_schedule_arguments_are_checked():
    """A fractional step_size or T_max was truncated by int() (2.5 -> 2), and a negative or NaN
    gamma or eta_min was accepted until the optimizer refused the lr mid-training."""
    opt = optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    for make, message in [(lambda: optim.StepLR(opt, 2.5), "StepLR: step_size must be a positive integer"),
                          (lambda: optim.StepLR(opt, 0), "StepLR: step_size must be a positive integer"),
                          (lambda: optim.StepLR(opt, 2, gamma=-1.0), "StepLR: gamma must be non-negative"),
                          (lambda: optim.StepLR(opt, 2, gamma=math.nan), "StepLR: gamma must be non-negative"),
                          (lambda: optim.CosineAnnealingLR(opt, 2.7), "CosineAnnealingLR: T_max must be"),
                          (lambda: optim.CosineAnnealingLR(opt, 4, eta_min=-0.1), "eta_min must be non-negative")]:
        with pytest.raises(ValueError, match=message):
            make()
    with pytest.raises(TypeError, match="StepLR: expected an nncore.optim optimizer"):
        optim.StepLR(object(), 2)
    assert optim.StepLR(opt, np.int64(3)).step_size == 3


@pytest.mark.parametrize("make", [lambda opt: optim.StepLR(opt, step_size=2, gamma=0.5),
                                  lambda opt: optim.CosineAnnealingLR(opt, T_max=7, eta_min=0.1)],
                         ids=["StepLR", "CosineAnnealingLR"])
def test_scheduler_state_dict_resumes_the_schedule(make):
    """A scheduler rebuilt on a resumed optimizer took the already-decayed lr as its base (StepLR
    after 2 halvings then gave 0.03125 where 0.125 was due); its state_dict restores base_lr and
    the epoch count, so the resumed lrs are the uninterrupted run's."""
    params = nn.Linear(2, 2).parameters()
    opt = optim.SGD(params, lr=1.0)
    scheduler = make(opt)
    uninterrupted = []
    for epoch in range(6):
        scheduler.step()
        uninterrupted.append(opt.lr)
        if epoch == 2:
            saved_opt, saved_scheduler = opt.state_dict(), scheduler.state_dict()
    resumed_opt = optim.SGD(params, lr=1.0)
    resumed_opt.load_state_dict(saved_opt)
    resumed = make(resumed_opt)
    resumed.load_state_dict(saved_scheduler)
    later = []
    for _ in range(3):
        resumed.step()
        later.append(resumed_opt.lr)
    assert later == uninterrupted[3:]
    other = optim.StepLR(optim.SGD(params, lr=1.0), 3) if isinstance(scheduler, optim.CosineAnnealingLR) \
        else optim.CosineAnnealingLR(optim.SGD(params, lr=1.0), 3)
    with pytest.raises(ValueError, match="the state dict is from"):
        other.load_state_dict(saved_scheduler)
    forged = {**saved_scheduler, "last_epoch": -1}
    with pytest.raises(ValueError, match="last_epoch must be a non-negative integer"):
        resumed.load_state_dict(forged)
    assert resumed.last_epoch == 6


def test_rng_state_round_trip():
    """get_rng_state/set_rng_state: after restoring, dropout masks, the initial values of a new
    layer and the default shuffling seed come out as they did the first time (manual_seed could
    only restart the streams from the beginning)."""
    nc.manual_seed(11)
    nn.Dropout(0.5)(nc.tensor(np.ones(100, np.float32)))  # move the streams along
    state = nc.get_rng_state()
    json.dumps(state)  # plain values: it can go into a checkpoint's metadata

    def draws():
        mask = nn.Dropout(0.5)(nc.tensor(np.ones(1000, np.float32))).numpy().copy()
        return mask, nn.Linear(4, 3).weight.data.numpy().copy(), nc.random.generator().integers(2**32)

    first = draws()
    nc.manual_seed(99)
    nc.set_rng_state(state)
    again = draws()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    before = nc.get_rng_state()
    for bad in ({**state, "seed": -1}, {**state, "philox_offset": 2**64}, {**state, "generator": {}}):
        with pytest.raises((ValueError, TypeError, KeyError)):
            nc.set_rng_state(bad)
    assert nc.get_rng_state() == before  # refusals change nothing


def test_optimizer_steps_parameters_with_and_without_state(device, rng):
    """step() updates all parameters in one call per kind of state: a parameter whose momentum
    buffer was dropped takes a first step (buf = g) while the others go on (buf = m buf + (1-d) g)."""
    params = nn.Linear(3, 2, device=device).parameters() + nn.Linear(2, 4, device=device).parameters()
    opt = optim.SGD(params, lr=0.1, momentum=0.9, dampening=0.5)
    grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    for param, g in zip(params, grads):
        param.grad = as_tensor(g, device)
    want = [param.data.numpy().astype(np.float64) for param in params]
    bufs = [g.astype(np.float64) for g in grads]
    opt.step()
    want = [w - 0.1 * b for w, b in zip(want, bufs)]
    opt.state[1] = {}
    opt.step()
    bufs = [g if i == 1 else 0.9 * b + 0.5 * g for i, (b, g) in enumerate(zip(bufs, grads))]
    want = [w - 0.1 * b for w, b in zip(want, bufs)]
    for i, (param, w) in enumerate(zip(params, want)):
        np.testing.assert_allclose(param.data.numpy(), w, rtol=1e-6, atol=1e-6, err_msg=f"param {i}")
    opt.zero_grad()
    assert not any(param.grad.numpy().any() for param in params)


def test_shared_parameters_are_listed_and_updated_once(device, rng):
    shared = nn.Linear(3, 3, device=device)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.named_parameters())) == 4
    assert model.parameters() == [shared.weight, shared.bias]
    before = shared.weight.data.numpy().copy()
    shared.weight.grad = as_tensor(rng.standard_normal((3, 3)), device)
    optim.SGD(model.parameters(), lr=0.5).step()
    np.testing.assert_allclose(shared.weight.data.numpy(),
                               before - 0.5 * shared.weight.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_attribute_assignment_registers_and_unregisters(device):
    """Assigning a Parameter or Module registers it; None over a registered name unregisters
    it, anything else raises; plain attributes never register."""
    layer = nn.Linear(3, 2, device=device)
    layer.note = "plain"
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    layer.bias = None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    layer.extra = nn.ReLU()
    assert [name for name, _ in layer.named_children()] == ["extra"]
    layer.extra = None
    assert list(layer.named_children()) == [] and layer.extra is None
    layer.extra = 3  # no longer registered: a plain attribute
    # A registered name takes only its own kind (PyTorch's rule), not a silent unregistering.
    with pytest.raises(TypeError, match="cannot assign Tensor to parameter 'weight'"):
        layer.weight = layer.weight.data
    layer.child = nn.ReLU()
    with pytest.raises(TypeError, match="cannot assign int to sub-module 'child'"):
        layer.child = 3
    assert [name for name, _ in layer.named_parameters()] == ["weight"]


def _adam_after_one_step(device, rng):
    layer = nn.Linear(3, 2, device=device)
    opt = optim.Adam(layer.parameters(), lr=0.01)
    for param in layer.parameters():
        param.grad = as_tensor(rng.standard_normal(param.shape), device)
    opt.step()
    return layer, opt


def test_optimizer_state_dict_round_trip(device, rng):
    layer, opt = _adam_after_one_step(device, rng)
    saved = opt.state_dict()
    clone = optim.Adam(layer.parameters(), lr=0.5, betas=(0.5, 0.6))
    clone.load_state_dict(saved)
    assert clone.lr == 0.01 and clone.step_count == 1 and clone.betas == (0.9, 0.999)
    np.testing.assert_array_equal(clone.state[0]["exp_avg"].numpy(), opt.state[0]["exp_avg"].numpy())


def test_optimizer_load_state_dict_rejects_another_kind(device, rng):
    """Another optimizer's state (or a foreign buffer) would be stepped with the wrong rule:
    refused, and nothing changes; SGD's hyper-parameters come back with its state."""
    layer = nn.Linear(3, 2, device=device)
    sgd = optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    for param in layer.parameters():
        param.grad = as_tensor(rng.standard_normal(param.shape), device)
    sgd.step()
    adam = optim.Adam(layer.parameters())
    with pytest.raises(ValueError, match="from 'SGD', not 'Adam'"):
        adam.load_state_dict(sgd.state_dict())
    assert adam.step_count == 0 and adam.state == [{}, {}]
    forged = sgd.state_dict()
    forged["state"][0] = {"exp_avg": forged["state"][0]["momentum_buffer"]}
    with pytest.raises(ValueError, match=r"parameter 0's buffers \['exp_avg'\], expected \['momentum_buffer'\]"):
        optim.SGD(layer.parameters(), momentum=0.9).load_state_dict(forged)
    other = optim.SGD(layer.parameters(), lr=0.3, momentum=0.5, nesterov=True)
    other.load_state_dict(sgd.state_dict())
    assert (other.lr, other.momentum, other.nesterov, other.step_count) == (0.1, 0.9, False, 1)


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_failed_optimizer_step_changes_nothing(device, rng, kind):
    """A step refused for one bad gradient leaves parameters, step_count and state as they were:
    Adam counted the failed step (its bias correction then ran a step ahead) and SGD kept the
    new momentum buffers (a retried first step then damped its gradient). The retried step is
    the one a fresh optimizer takes."""
    def make(layer):
        return (optim.SGD(layer.parameters(), lr=0.1, momentum=0.9, dampening=0.5)
                if kind == "SGD" else optim.Adam(layer.parameters(), lr=0.01))

    layer, fresh_layer = nn.Linear(3, 2, device=device), nn.Linear(3, 2, device=device)
    fresh_layer.load_state_dict(layer.state_dict())
    grads = [rng.standard_normal(param.shape) for param in layer.parameters()]
    opt, fresh = make(layer), make(fresh_layer)
    weight, bias = layer.parameters()
    weights_before = weight.data.numpy().copy()
    weight.grad = as_tensor(grads[0], device)
    bias.grad = as_tensor(rng.standard_normal(5), device)
    with pytest.raises(ValueError, match="must have the same shape"):
        opt.step()
    bias.grad = None
    with pytest.raises(TypeError, match=rf"^{kind}.step: parameter 1 \(2,\) has no gradient "
                                        "tensor \\(.grad is NoneType\\)"):
        opt.step()
    assert opt.step_count == 0 and opt.state == [{}, {}]
    np.testing.assert_array_equal(weight.data.numpy(), weights_before)
    bias.grad = as_tensor(grads[1], device)
    for param, grad in zip(fresh_layer.parameters(), grads):
        param.grad = as_tensor(grad, device)
    for _ in range(2):
        opt.step()
        fresh.step()
    assert opt.step_count == fresh.step_count == 2
    for mine, theirs in zip(layer.parameters(), fresh_layer.parameters()):
        np.testing.assert_array_equal(mine.data.numpy(), theirs.data.numpy())


@pytest.mark.parametrize("kind,changes,message", [
    ("SGD", {"dampening": float("nan")}, "dampening must be non-negative"),
    ("SGD", {"momentum": -0.5}, "momentum must be non-negative"),
    ("SGD", {"nesterov": True, "dampening": 0.1}, "Nesterov momentum requires"),
    ("SGD", {"lr": float("nan")}, "lr must be non-negative"),
    ("Adam", {"betas": (0.9, 0.99, 0.9)}, "betas must be two numbers in"),
    ("Adam", {"betas": (0.9, 1.0)}, "betas must be two numbers in"),
    ("Adam", {"eps": -1.0}, "eps must be non-negative"),
    ("Adam", {"weight_decay": float("nan")}, "weight_decay must be non-negative"),
    ("Adam", {"step_count": -1}, "step_count must be a non-negative integer"),
    ("Adam", {"step_count": 1.5}, "step_count must be a non-negative integer"),
])
def test_optimizer_load_state_dict_checks_hyper_parameters(device, rng, kind, changes, message):
    """What load_state_dict restores passes the constructor's checks: a NaN dampening loaded
    into SGD made every weight NaN at the next step without an error, and Adam took eps=-1 or
    three betas (its next step then failed with pybind's argument dump, the state replaced).
    Refused, and nothing changes."""
    layer = nn.Linear(3, 2, device=device)
    opt = optim.SGD(layer.parameters(), lr=0.1, momentum=0.9) if kind == "SGD" else \
        optim.Adam(layer.parameters(), lr=0.01)
    for param in layer.parameters():
        param.grad = as_tensor(rng.standard_normal(param.shape), device)
    opt.step()
    saved = opt.state_dict()
    forged = opt.state_dict()
    for key, value in changes.items():
        if key in ("lr", "step_count"):
            forged[key] = value
        else:
            forged["hyper_parameters"][key] = value
    with pytest.raises(ValueError, match=f"^{kind}.*{message}"):
        opt.load_state_dict(forged)
    after = opt.state_dict()
    assert after["lr"] == saved["lr"] and after["step_count"] == saved["step_count"]
    assert after["hyper_parameters"] == saved["hyper_parameters"]
    for before, now in zip(saved["state"], after["state"]):
        for name in before:
            np.testing.assert_array_equal(before[name], now[name])


def _forge(saved, change):
    forged = json.loads(json.dumps(saved, default=lambda a: a.tolist()))  # the buffers as lists
    change(forged)
    return forged


@pytest.mark.parametrize("change,error,message", [
    (lambda d: d.pop("hyper_parameters"), ValueError, "the state dict has no 'hyper_parameters'"),
    (lambda d: d["state"].__setitem__(0, None), ValueError, "parameter 0's state is a NoneType"),
    (lambda d: d["state"][1].pop("exp_avg_sq"), ValueError,
     r"parameter 1's buffers \['exp_avg'\], expected \['exp_avg', 'exp_avg_sq'\]"),
    (lambda d: d.__setitem__("lr", "0.1"), ValueError, "lr must be non-negative, got '0.1'"),
    (lambda d: d["hyper_parameters"].__setitem__("betas", 0.9), ValueError,
     "betas must be two numbers in"),
    (lambda d: d["state"][0].__setitem__("exp_avg", "x"), TypeError, "holds <U1 values"),
    (lambda d: d.__setitem__("state", {}), ValueError, "dict parameter states for 2 parameters"),
])
def test_optimizer_load_state_dict_checks_its_structure(device, rng, change, error, message):
    """A malformed state dict is refused with the optimizer's name, not a KeyError or an
    AttributeError from inside, and nothing changes; an Adam state missing exp_avg_sq loaded
    (zeros, while step_count went on: a different step). The buffers may be lists (JSON)."""
    layer, opt = _adam_after_one_step(device, rng)
    saved = opt.state_dict()
    with pytest.raises(error, match=rf"^Adam(\.load_state_dict)?: .*{message}"):
        opt.load_state_dict(_forge(saved, change))
    after = opt.state_dict()
    for before, now in zip(saved["state"], after["state"]):
        for name in before:
            np.testing.assert_array_equal(before[name], now[name])
    clone = optim.Adam(layer.parameters())
    clone.load_state_dict(_forge(saved, lambda d: None))  # lists, as JSON gives them back
    np.testing.assert_array_equal(clone.state[1]["exp_avg_sq"].numpy(), saved["state"][1]["exp_avg_sq"])


def test_scheduler_load_state_dict_checks_its_structure():
    opt = optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    scheduler = optim.StepLR(opt, 3)
    saved = scheduler.state_dict()
    with pytest.raises(ValueError, match=r"StepLR.load_state_dict: arguments \['extra', 'gamma', "
                                         r"'step_size'\], expected \['gamma', 'step_size'\]"):
        scheduler.load_state_dict(_forge(saved, lambda d: d["arguments"].__setitem__("extra", 1)))
    with pytest.raises(ValueError, match="StepLR.load_state_dict: the state dict has no 'last_epoch'"):
        scheduler.load_state_dict(_forge(saved, lambda d: d.pop("last_epoch")))
    with pytest.raises(ValueError, match="StepLR: gamma must be non-negative, got '0.1'"):
        optim.StepLR(opt, 3, gamma="0.1")


# ---------------------------------------------------------------- equivalence with PyTorch


def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is not installed: equivalence tests skipped")


def compare_layer_with_torch(ours, theirs, x, device, rng, atol=1e-5, rtol=1e-4):
    """Copy theirs' parameters into ours; compare forward, input gradient and parameter gradients."""
    torch = torch_or_skip()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.asarray(x, dtype=np.float32)
    x_torch = torch.tensor(x, requires_grad=True)
    y_torch = theirs(x_torch)
    dy = rng.standard_normal(tuple(y_torch.shape)).astype(np.float32)
    y_torch.backward(torch.tensor(dy))
    ours.zero_grad()
    y = ours.forward(as_tensor(x, device))
    dx = ours.backward(as_tensor(dy, device), need_dx=True)
    np.testing.assert_allclose(y.numpy(), y_torch.detach().numpy(), atol=atol, rtol=rtol)
    np.testing.assert_allclose(dx.numpy(), x_torch.grad.numpy(), atol=atol, rtol=rtol)
    torch_params = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        np.testing.assert_allclose(param.grad.numpy(), torch_params[name].grad.numpy(), atol=atol, rtol=rtol,
                                   err_msg=f"{ours!r}: d{name}")


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(device, rng, bias):
    torch = torch_or_skip()
    compare_layer_with_torch(nn.Linear(13, 7, bias=bias, device=device), torch.nn.Linear(13, 7, bias=bias),
                             rng.standard_normal((9, 13)), device, rng)


@pytest.mark.parametrize("kernel,stride,padding", [(5, 1, 2), (3, 2, 1), ((3, 2), (2, 1), (0, 1)), (1, 1, 0)])
def test_conv2d_matches_torch(device, rng, kernel, stride, padding):
    torch = torch_or_skip()
    compare_layer_with_torch(nn.Conv2d(3, 5, kernel, stride, padding, device=device),
                             torch.nn.Conv2d(3, 5, kernel, stride, padding),
                             rng.standard_normal((2, 3, 11, 9)), device, rng, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1))])
def test_max_pool2d_matches_torch(device, rng, kernel, stride, padding):
    torch = torch_or_skip()
    compare_layer_with_torch(nn.MaxPool2d(kernel, stride, padding), torch.nn.MaxPool2d(kernel, stride, padding),
                             rng.standard_normal((2, 3, 8, 9)), device, rng)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1)])
def test_avg_pool2d_matches_torch(device, rng, kernel, stride, padding, count_include_pad):
    torch = torch_or_skip()
    compare_layer_with_torch(nn.AvgPool2d(kernel, stride, padding,
                                          count_include_pad=count_include_pad),
                             torch.nn.AvgPool2d(kernel, stride, padding, count_include_pad=count_include_pad),
                             rng.standard_normal((2, 3, 8, 9)), device, rng)


@pytest.mark.parametrize("name", ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Flatten"])
def test_activation_matches_torch(device, rng, name):
    torch = torch_or_skip()
    ours, theirs = {
        "ReLU": (nn.ReLU(), torch.nn.ReLU()),
        "LeakyReLU": (nn.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2)),
        "Sigmoid": (nn.Sigmoid(), torch.nn.Sigmoid()),
        "Tanh": (nn.Tanh(), torch.nn.Tanh()),
        "Softmax": (nn.Softmax(), torch.nn.Softmax(dim=-1)),
        "Flatten": (nn.Flatten(), torch.nn.Flatten()),
    }[name]
    compare_layer_with_torch(ours, theirs, 3 * rng.standard_normal((4, 3, 5)), device, rng)


@pytest.mark.parametrize("target_kind", ["labels", "probabilities", "one_hot"])
def test_cross_entropy_matches_torch(device, rng, target_kind):
    torch = torch_or_skip()
    logits = (4 * rng.standard_normal((16, 10))).astype(np.float32)
    if target_kind == "labels":
        target = rng.integers(0, 10, 16)
        target_torch = torch.tensor(target)
    else:
        target = (rng.dirichlet(np.ones(10), 16) if target_kind == "probabilities"
                  else np.eye(10)[rng.integers(0, 10, 16)]).astype(np.float32)
        target_torch = torch.tensor(target)
    logits_torch = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(logits_torch, target_torch)
    expected.backward()
    loss = nn.CrossEntropyLoss()
    assert loss.forward(as_tensor(logits, device), target) == pytest.approx(expected.item(), rel=1e-5)
    np.testing.assert_allclose(loss.backward().numpy(), logits_torch.grad.numpy(), atol=1e-6, rtol=1e-4)
    value = loss.forward_tensor(as_tensor(logits, device), target)
    assert value.shape == () and value.device == device


def test_mse_matches_torch(device, rng):
    torch = torch_or_skip()
    pred, target = rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal((6, 5)).astype(np.float32)
    pred_torch = torch.tensor(pred, requires_grad=True)
    expected = torch.nn.functional.mse_loss(pred_torch, torch.tensor(target))
    expected.backward()
    loss = nn.MSELoss()
    assert loss.forward(as_tensor(pred, device), target) == pytest.approx(expected.item(), rel=1e-5)
    np.testing.assert_allclose(loss.backward().numpy(), pred_torch.grad.numpy(), atol=1e-7, rtol=1e-5)


def run_optimizer_pair(ours_cls, theirs_cls, kwargs, device, rng, steps=6):
    """Same start, same gradient sequence: the parameter trajectories must agree."""
    torch = torch_or_skip()
    start = [rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
    ours = [nn.Parameter(as_tensor(value, device)) for value in start]
    theirs = [torch.nn.Parameter(torch.tensor(value)) for value in start]
    ours_opt, theirs_opt = ours_cls(ours, **kwargs), theirs_cls(theirs, **kwargs)
    for _ in range(steps):
        for param, torch_param in zip(ours, theirs):
            grad = rng.standard_normal(param.shape).astype(np.float32)
            param.grad = as_tensor(grad, device)
            torch_param.grad = torch.tensor(grad)
        ours_opt.step()
        theirs_opt.step()
        for param, torch_param in zip(ours, theirs):
            np.testing.assert_allclose(param.data.numpy(), torch_param.detach().numpy(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.9, dampening=0.3), dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
], ids=["plain", "momentum", "nesterov", "dampening", "weight_decay", "nesterov_wd"])
def test_sgd_matches_torch(device, rng, kwargs):
    torch = torch_or_skip()
    run_optimizer_pair(optim.SGD, torch.optim.SGD, kwargs, device, rng)


@pytest.mark.parametrize("kwargs", [dict(lr=0.01), dict(lr=0.1, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.05)],
                         ids=["default", "custom"])
def test_adam_matches_torch(device, rng, kwargs):
    torch = torch_or_skip()
    run_optimizer_pair(optim.Adam, torch.optim.Adam, kwargs, device, rng)


def test_lenet5_matches_torch_end_to_end(device, rng):
    """PyTorch's state dict loads as is; logits, loss, every gradient and 3 SGD steps agree."""
    torch = torch_or_skip()
    torch.manual_seed(0)
    tnn = torch.nn
    theirs = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                            tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                            tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    ours = models.lenet5(device=device)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    ours_opt = optim.SGD(ours.parameters(), lr=0.05, momentum=0.9)
    theirs_opt = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)
    loss = nn.CrossEntropyLoss()
    for step in range(3):
        x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, 8)
        logits_torch = theirs(torch.tensor(x))
        loss_torch = torch.nn.functional.cross_entropy(logits_torch, torch.tensor(y))
        theirs_opt.zero_grad()
        loss_torch.backward()
        logits = ours.forward(as_tensor(x, device))
        np.testing.assert_allclose(logits.numpy(), logits_torch.detach().numpy(), atol=1e-4, rtol=1e-3)
        assert loss.forward(logits, y) == pytest.approx(loss_torch.item(), rel=1e-4)
        ours.backward(loss.backward())
        torch_params = dict(theirs.named_parameters())
        for name, param in ours.named_parameters():
            np.testing.assert_allclose(param.grad.numpy(), torch_params[name].grad.numpy(), atol=1e-5, rtol=1e-3,
                                       err_msg=f"step {step}: d{name}")
        ours_opt.step()
        ours_opt.zero_grad()
        theirs_opt.step()
    for name, value in ours.state_dict().items():
        np.testing.assert_allclose(value, theirs.state_dict()[name].numpy(), atol=1e-5, rtol=1e-4, err_msg=name)
