"""fit / evaluate / predict, the manual training loop, checkpoints, on the embedded MNIST sample."""
from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest

import nncore as nc
from nncore import models, nn, optim
from nncore.checkpoint import load_checkpoint, save_checkpoint
from nncore.data import load_mnist_sample, one_hot, scale_images


@pytest.fixture(scope="module")
def sample():
    """The embedded sample's 4,000 train and 1,000 test digits, scaled to [0, 1], shape (N, 1, 28, 28)."""
    train, test = load_mnist_sample("train"), load_mnist_sample("test")
    return scale_images(train.images), train.labels, scale_images(test.images), test.labels


def flat(images):
    return images.reshape(len(images), -1)


def test_lenet5_learns_the_sample(device, sample):
    """Loss falls every epoch and test accuracy passes 90% after 3 epochs."""
    x_train, y_train, x_test, y_test = sample
    nc.manual_seed(0)
    model = models.lenet5(device=device)
    history = model.fit(x_train, y_train, epochs=3, batch_size=64, seed=0, verbose=0,
                        optimizer=optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    losses = history.history["loss"]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    result = model.evaluate(x_test, y_test)
    assert result["accuracy"] >= 0.90, result
    assert set(result) == {"loss", "accuracy"} and result["loss"] < 0.5


def test_keras_style_mlp_one_hot_validation_split(device, sample):
    """The course program: Dense 784->800 relu, Dense 800->10, categorical cross-entropy, SGD, batch 200."""
    x_train, y_train, x_test, y_test = sample
    nc.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 800), nn.ReLU(), nn.Linear(800, 10)).to(device)
    history = model.fit(flat(x_train), one_hot(y_train, 10), batch_size=200, epochs=4, validation_split=0.2,
                        optimizer=optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                        loss="categorical_crossentropy", metrics=["accuracy"], verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert len(history.history["val_accuracy"]) == 4 and history.epoch == [1, 2, 3, 4]
    assert history.history["loss"][-1] < history.history["loss"][0]
    # Keras semantics: validation is the last 20% of the rows, taken before shuffling
    val = model.evaluate(flat(x_train[3200:]), one_hot(y_train[3200:], 10))
    assert val["accuracy"] == pytest.approx(history.history["val_accuracy"][-1], abs=1e-9)
    assert val["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    assert model.evaluate(flat(x_test), y_test)["accuracy"] >= 0.88


def test_manual_training_loop(device, sample):
    """DESIGN's loop: out = model.forward(x); loss.forward(out, y); model.backward(loss.backward()); step."""
    x_train, y_train, _, _ = sample
    nc.manual_seed(0)
    model = models.mlp(784, 64, 10, device=device)
    loss = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x = nc.tensor(flat(x_train[:256]), device=device)
    losses = []
    for _ in range(30):
        out = model.forward(x)
        losses.append(loss.forward(out, y_train[:256]))
        model.backward(loss.backward())
        opt.step()
        opt.zero_grad()
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("model_name", ["lenet5", "mlp"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_warm_training_step_allocates_nothing_new(device, rng, model_name, optimizer):
    """Once a step has run, the caching allocator serves every later step from its cache: no
    system allocation (malloc / cudaMalloc) inside a training step."""
    nc.manual_seed(0)
    model = models.lenet5(device=device) if model_name == "lenet5" else models.mlp(784, 100, 10,
                                                                                  device=device)
    shape = (32, 1, 28, 28) if model_name == "lenet5" else (32, 784)
    x = nc.tensor(rng.random(shape, dtype=np.float32), device=device)
    y = nc.tensor(rng.integers(0, 10, 32).astype(np.int32), device=device)
    loss = nn.CrossEntropyLoss()
    opt = (optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if optimizer == "sgd"
           else optim.Adam(model.parameters()))

    def step():
        loss.forward_tensor(model.forward(x), y)
        model.backward(loss.backward())
        opt.step()
        opt.zero_grad()

    for _ in range(2):
        step()
    before = nc.memory_stats(device)["num_system_allocs"]
    for _ in range(3):
        step()
    assert nc.memory_stats(device)["num_system_allocs"] == before


def test_fit_is_reproducible_with_manual_seed(device, sample):
    x_train, y_train, _, _ = sample

    def run():
        nc.manual_seed(5)
        model = models.mlp(784, 32, 10, dropout=0.2, device=device)
        history = model.fit(flat(x_train[:1000]), y_train[:1000], epochs=2, batch_size=50, verbose=0)
        return history.history, model.state_dict()

    (history_a, state_a), (history_b, state_b) = run(), run()
    for key in history_a:
        np.testing.assert_allclose(history_a[key], history_b[key], rtol=1e-6)
    for name in state_a:
        np.testing.assert_allclose(state_a[name], state_b[name], rtol=1e-6, atol=1e-7)


def test_fit_checks_early_stopping_patience():
    """A negative patience was accepted and behaved as 0."""
    model = models.mlp(4, 3)
    x, y = np.zeros((8, 4), np.float32), np.zeros(8, np.int64)
    with pytest.raises(ValueError, match="fit: early_stopping_patience must be a non-negative integer"):
        model.fit(x, y, epochs=1, early_stopping_patience=-1, verbose=0)


def test_early_stopping_restores_the_best_weights(device, rng):
    """Random labels: validation loss soon rises; the weights of the best epoch come back."""
    x = rng.standard_normal((300, 20)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    nc.manual_seed(0)
    model = models.mlp(20, 64, 3, device=device)
    snapshots = {}
    history = model.fit(x, y, epochs=40, batch_size=10, validation_split=0.3, early_stopping_patience=2,
                        optimizer=optim.SGD(model.parameters(), lr=0.2, momentum=0.9), verbose=0,
                        callbacks=[lambda epoch, logs: snapshots.__setitem__(epoch, model.state_dict())])
    assert history.stopped_epoch is not None and history.stopped_epoch < 40
    assert len(history.epoch) == history.stopped_epoch == history.best_epoch + 2
    val_losses = history.history["val_loss"]
    assert val_losses[history.best_epoch - 1] == min(val_losses)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, snapshots[history.best_epoch][name])


def test_validation_data_scheduler_and_callbacks(device, sample):
    x_train, y_train, x_test, y_test = sample
    nc.manual_seed(0)
    model = models.mlp(784, 32, 10, device=device)
    opt = optim.SGD(model.parameters(), lr=0.1)
    stop_after_two = lambda epoch, logs: epoch == 2  # noqa: E731
    history = model.fit(flat(x_train[:500]), y_train[:500], epochs=5, validation_data=(flat(x_test), y_test),
                        optimizer=opt, lr_scheduler=optim.CosineAnnealingLR(opt, T_max=4), verbose=0,
                        callbacks=[stop_after_two])
    assert history.epoch == [1, 2] and history.stopped_epoch == 2
    assert history.history["lr"] == pytest.approx([0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2])
    assert len(history.history["val_accuracy"]) == 2


def test_predict(device, sample):
    _, _, x_test, y_test = sample
    nc.manual_seed(0)
    model = models.lenet5(device=device)
    logits = model.predict(x_test[:70], batch_size=32)
    probabilities = model.predict(x_test[:70], batch_size=32, softmax=True)
    assert logits.shape == probabilities.shape == (70, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(logits.argmax(axis=1), probabilities.argmax(axis=1))
    model.eval()
    np.testing.assert_allclose(model.forward(nc.tensor(x_test[:5], device=device)).numpy(), logits[:5],
                               rtol=1e-5, atol=1e-6)


def test_fit_bad_inputs(device, sample):
    x_train, y_train, _, _ = sample
    model = models.mlp(784, 16, 10, device=device)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: label 10 at row 3 is out of range for 10 classes"):
        bad = y_train[:100].astype(np.int64)
        bad[3] = 10
        model.fit(flat(x_train[:100]), bad, verbose=0)
    with pytest.raises(TypeError, match="x must be floating point"):
        model.fit(load_mnist_sample("test").images.reshape(1000, -1), y_train[:1000], verbose=0)
    with pytest.raises(ValueError, match="x has 100 rows but y has shape"):
        model.fit(flat(x_train[:100]), y_train[:99], verbose=0)
    with pytest.raises(ValueError, match=r"Linear\(784, 16\): expected input \(N, 784\), got \(32, 1, 28, 28\)"):
        model.fit(x_train[:100], y_train[:100], verbose=0)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        model.fit(flat(x_train[:100]), y_train[:100], loss="hinge", verbose=0)


def test_fit_refuses_a_scheduler_of_another_optimizer(device, rng):
    """A scheduler built on one optimizer, passed with another (or with optimizer="sgd", which
    builds a new one), stepped an optimizer nobody used: the lr never changed, silently."""
    model = models.mlp(4, 3, device=device)
    x, y = rng.standard_normal((8, 4)).astype(np.float32), np.arange(8) % 3
    scheduler = optim.StepLR(optim.SGD(model.parameters(), lr=0.1), 1, 0.5)
    for optimizer in ("sgd", optim.SGD(model.parameters(), lr=0.1)):
        with pytest.raises(ValueError, match="lr_scheduler steps another optimizer"):
            model.fit(x, y, optimizer=optimizer, lr_scheduler=scheduler, verbose=0)
    history = model.fit(x, y, epochs=2, optimizer=scheduler.optimizer, lr_scheduler=scheduler,
                        verbose=0)
    assert history.history["lr"] == [0.1, 0.05]


def test_fit_evaluate_and_predict_keep_each_modules_mode(device, rng):
    """predict/evaluate restored the mode with train(was_training), which set every sub-module
    alike: a Dropout the user had put in eval mode came back in training mode; fit left the
    model in training mode. Each module now gets its own flag back."""
    nc.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3)).to(device)
    x, y = rng.standard_normal((16, 4)).astype(np.float32), np.arange(16) % 3
    model.train()
    model[1].eval()
    modes = [module.training for module in model.modules()]
    model.predict(x)
    model.evaluate(x, y)
    model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y))
    assert [module.training for module in model.modules()] == modes == [True, True, False, True]
    model.eval()
    model.fit(x, y, epochs=1, verbose=0)
    assert not any(module.training for module in model.modules())


def test_a_failed_fit_does_not_change_evaluates_loss(device, rng):
    """evaluate() defaults to the loss of the last fit; a fit that failed (here: MSE on integer
    labels) set it anyway, so evaluate() then failed too."""
    model = models.mlp(4, 3, device=device)
    x, y = rng.standard_normal((8, 4)).astype(np.float32), (np.arange(8) % 3).astype(np.int32)
    model.fit(x, y, verbose=0)
    with pytest.raises(TypeError):
        model.fit(x, y, loss="mse", verbose=0)
    assert set(model.evaluate(x, y)) == {"loss", "accuracy"}  # still cross-entropy


def test_a_resumed_run_continues_bit_for_bit(device, rng):
    """Model, optimizer, scheduler and random state saved after one fit and restored into new
    objects (after other random draws) give the same weights after two more fits as the run
    that went on: dropout masks, shuffles, momentum and the decayed lr all carry over."""
    x, y = rng.standard_normal((64, 6)).astype(np.float32), np.arange(64) % 3

    def build():
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3)).to(device)
        opt = optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
        return model, opt, optim.StepLR(opt, 1, 0.5)

    def fit(model, opt, scheduler):
        model.fit(x, y, epochs=1, batch_size=16, optimizer=opt, lr_scheduler=scheduler, verbose=0)

    nc.manual_seed(4)
    model, opt, scheduler = build()
    fit(model, opt, scheduler)
    saved = (model.state_dict(), opt.state_dict(), scheduler.state_dict(),
             json.loads(json.dumps(nc.get_rng_state())))
    for _ in range(2):
        fit(model, opt, scheduler)

    nc.manual_seed(123)
    resumed, resumed_opt, resumed_scheduler = build()
    resumed.load_state_dict(saved[0])
    resumed_opt.load_state_dict(saved[1])
    resumed_scheduler.load_state_dict(saved[2])
    nc.set_rng_state(saved[3])
    for _ in range(2):
        fit(resumed, resumed_opt, resumed_scheduler)
    assert resumed_opt.lr == opt.lr == 0.2 * 0.5 ** 3
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)


def test_mse_regression(device, rng):
    x = rng.standard_normal((256, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
    nc.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 1)).to(device)
    history = model.fit(x, y, epochs=30, batch_size=32, loss="mse", verbose=0,
                        optimizer=optim.SGD(model.parameters(), lr=0.1))
    assert history.history["loss"][-1] < 1e-4
    assert "accuracy" not in history.history  # no accuracy by default for a regression
    assert list(model.evaluate(x, y)) == ["loss"] and model.evaluate(x, y)["loss"] < 1e-4
    np.testing.assert_allclose(model[0].weight.data.numpy(), [[1.0, -2.0, 0.5]], atol=1e-2)
    with pytest.raises(ValueError, match=r"accuracy needs class scores \(N, C\) with C >= 2"):
        model.evaluate(x, y, metrics="accuracy")


def test_metrics_as_a_string_and_predict_on_no_rows(device, sample):
    x_train, y_train, _, _ = sample
    nc.manual_seed(0)
    model = models.lenet5(device=device)
    assert set(model.evaluate(x_train[:50], y_train[:50], metrics="accuracy")) == {"loss", "accuracy"}
    with pytest.raises(ValueError, match=r"unknown metrics \['f1'\]"):
        model.evaluate(x_train[:50], y_train[:50], metrics="f1")
    for softmax in (False, True):  # (0, 10), like a batch of rows (Flatten of a batch of 0 too)
        assert model.predict(x_train[:0], softmax=softmax).shape == (0, 10)


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_gives_identical_predictions(device, sample, tmp_path):
    x_train, y_train, x_test, _ = sample
    nc.manual_seed(0)
    model = models.lenet5(activation="tanh", pooling="avg", device=device)
    model.fit(x_train[:500], y_train[:500], epochs=1, verbose=0)
    path = save_checkpoint(model, tmp_path / "model.npz", {"dataset": "mnist", "note": "test"})
    loaded, meta = load_checkpoint(path, device=device)
    assert meta["model"] == {"name": "lenet5", "args": [],
                             "kwargs": {"activation": "tanh", "pooling": "avg", "num_classes": 10}}
    assert meta["note"] == "test" and isinstance(loaded[1], nn.Tanh) and isinstance(loaded[2], nn.AvgPool2d)
    np.testing.assert_array_equal(loaded.predict(x_test[:100]), model.predict(x_test[:100]))
    into = models.lenet5(activation="tanh", pooling="avg", device=device)
    load_checkpoint(path, model=into)
    np.testing.assert_array_equal(into.predict(x_test[:100]), model.predict(x_test[:100]))
    with np.load(path, allow_pickle=False) as archive:  # plain arrays, no pickle needed
        assert "0.weight" in archive.files


def test_mlp_checkpoint_keeps_sizes(device, tmp_path):
    model = models.mlp(20, 7, 5, 3, activation="tanh", device=device)
    loaded, _ = load_checkpoint(save_checkpoint(model, tmp_path / "mlp.npz"), device=device)
    assert [p.shape for p in loaded.parameters()] == [p.shape for p in model.parameters()]
    with pytest.raises(ValueError, match="does not fit the model"):
        load_checkpoint(tmp_path / "mlp.npz", model=models.mlp(20, 8, 3, device=device))


def test_checkpoint_parameter_names_that_are_np_savez_arguments(tmp_path):
    """np.savez took parameter names as its keyword arguments: "allow_pickle" vanished and "file"
    was a TypeError. Any name round-trips, and np.load reads the file."""
    class Named(nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.file = nn.Parameter(nc.tensor(np.full((2, 3), scale, np.float32)))
            self.allow_pickle = nn.Parameter(nc.tensor(np.arange(4, dtype=np.float32) * scale))

    saved = Named(1.0)
    path = save_checkpoint(saved, tmp_path / "named.npz", {"note": "names"})
    loaded, meta = load_checkpoint(path, model=Named(0.0))
    assert meta["note"] == "names"
    for name, value in saved.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value)
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["__metadata__", "allow_pickle", "file"]


def test_checkpoint_metadata_cannot_shadow_its_own_keys(device, tmp_path):
    """The format tag and the model config are the checkpoint's: user metadata may not replace
    them (it made files that could not be loaded); a config that is not a dict is a clear error."""
    model = models.mlp(4, 3, 2, device=device)
    for key in ("format", "model"):
        with pytest.raises(ValueError, match=f"metadata keys \\['{key}'\\] are reserved"):
            save_checkpoint(model, tmp_path / "m.npz", {key: "mine"})
    assert not (tmp_path / "m.npz").exists()
    forged = tmp_path / "forged.npz"
    np.savez(forged, __metadata__=np.array(json.dumps({"format": "nncore-checkpoint-1",
                                                       "model": "my small mlp"})))
    with pytest.raises(ValueError, match="cannot rebuild model my small mlp: a model config is a dict"):
        load_checkpoint(forged, device=device)


def test_corrupt_checkpoints_raise_a_clear_error(device, tmp_path):
    path = save_checkpoint(models.mlp(10, 4, 2, device=device), tmp_path / "good.npz")
    content = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(content[: len(content) // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a checkpoint at all")
    no_metadata = tmp_path / "plain.npz"
    np.savez(no_metadata, weight=np.zeros(3))
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __metadata__=np.array(json.dumps({"format": "nncore-checkpoint-1"})),
             evil=np.array([{"a": 1}], dtype=object))
    for bad in (truncated, garbage, no_metadata, pickled):
        with pytest.raises(ValueError, match=f"checkpoint {bad} is corrupt"):
            load_checkpoint(bad, device=device)
    flipped = bytearray(content)
    flipped[len(flipped) // 3] ^= 0xFF  # a bit flip inside an entry: the zip CRC catches it
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="is corrupt"):
        load_checkpoint(tmp_path / "flipped.npz", device=device)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.npz")
    assert zipfile.is_zipfile(path)


def test_fit_warns_about_softmax_before_cross_entropy(device, rng):
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax()).to(device)
    with pytest.warns(UserWarning, match="CrossEntropyLoss applies softmax itself"):
        model.fit(rng.standard_normal((8, 4)).astype(np.float32), rng.integers(0, 3, 8), verbose=0)
