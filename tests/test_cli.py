"""python -m nncore train / evaluate / predict, end to end in subprocesses on the embedded sample."""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import nncore
from nncore.cli import parse_args, read_image
from nncore.data import load_mnist_sample


def nncore_cli(*args, cwd):
    """Runs `python -m nncore ARGS` offline, with the nncore these tests import; returns the CompletedProcess."""
    # A relative PYTHONPATH (PYTHONPATH=python) would not hold in cwd, and the child would import another copy.
    package_root = os.path.dirname(os.path.dirname(nncore.__file__))
    env = {**os.environ, "NNCORE_DATA": str(cwd / "no-data-here"), "NO_COLOR": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "nncore", *args, "--no-download"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def trained(device, tmp_path):
    """A one-epoch MLP trained by the CLI on 600 sample digits; (checkpoint folder, stdout)."""
    result = nncore_cli("train", "--model", "mlp", "--epochs", "1", "--limit", "600", "--batch-size", "32",
                        "--device", device, "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "run", result


def test_train_writes_checkpoint_metrics_and_reports(trained, device):
    out, result = trained
    assert "embedded 5,000-digit MNIST sample" in result.stderr  # the fallback is announced
    assert f"device {device}" in result.stdout
    assert re.search(r"epoch 1/1 - loss [\d.]+ - accuracy [\d.]+ - val_loss [\d.]+ - val_accuracy [\d.]+", result.stdout)
    assert re.search(r"test accuracy 0\.\d{4} \(loss [\d.]+\) - total time [\d.]+s", result.stdout)
    assert (out / "model.npz").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_images"] == 600 and len(metrics["history"]["loss"]) == 1
    # Both splits' sources: a --data-root with only the train split takes the test one elsewhere.
    assert metrics["data_source"] == metrics["test_data_source"] == "embedded-sample"
    assert metrics["test"]["accuracy"] > 0.5  # one epoch on 540 digits: well above chance
    if (out / "curves.png").exists():
        assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    else:
        assert "matplotlib is not installed: skipping curves.png" in result.stdout


def test_evaluate_and_predict_reload_the_checkpoint(trained, device, tmp_path):
    out, train_result = trained
    checkpoint = str(out / "model.npz")
    test_accuracy = re.search(r"test accuracy (0\.\d{4})", train_result.stdout).group(1)

    evaluated = nncore_cli("evaluate", "--checkpoint", checkpoint, "--limit", "600", "--device", device,
                           cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"test accuracy {test_accuracy}" in evaluated.stdout  # the same model, the same 600 test digits

    by_index = nncore_cli("predict", "--checkpoint", checkpoint, "--index", "7", "--device", device, cwd=tmp_path)
    assert by_index.returncode == 0, by_index.stderr
    truth = int(load_mnist_sample("test").labels[7])
    assert f"true label {truth} (class {truth})" in by_index.stdout
    predicted = re.search(r"predicted (\d) \(class \d, p=[\d.]+\)", by_index.stdout).group(1)

    image = load_mnist_sample("test").images[7]
    np.save(tmp_path / "digit.npy", image)
    write_pgm(tmp_path / "digit.pgm", image)
    write_png(tmp_path / "digit.png", image)
    for name in ("digit.npy", "digit.pgm", "digit.png"):
        from_file = nncore_cli("predict", "--checkpoint", checkpoint, "--image", str(tmp_path / name),
                               "--device", device, cwd=tmp_path)
        assert from_file.returncode == 0, from_file.stderr
        assert f"predicted {predicted} (class {predicted}" in from_file.stdout


def test_corrupt_checkpoint_is_a_clear_cli_error(device, tmp_path):
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    result = nncore_cli("evaluate", "--checkpoint", str(bad), "--device", device, cwd=tmp_path)
    assert result.returncode == 1
    assert f"nncore evaluate: error: checkpoint {bad} is corrupt" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- image files


def write_pgm(path, image):
    path.write_bytes(b"P5\n# a digit\n28 28\n255\n" + image.astype(np.uint8).tobytes())


def write_png(path, image, channels=1):
    """An 8-bit PNG; row y uses filter type y % 5, so the reader's every filter is exercised."""
    pixels = np.repeat(image.astype(np.int64)[..., None], channels, axis=2).reshape(image.shape[0], -1)
    height, stride = pixels.shape
    raw = bytearray()
    for y in range(height):
        kind, line = y % 5, pixels[y]
        above = pixels[y - 1] if y else np.zeros(stride, np.int64)
        left = np.concatenate([np.zeros(channels, np.int64), line[:-channels]])
        upper_left = np.concatenate([np.zeros(channels, np.int64), above[:-channels]])
        if kind == 0:
            predictor = np.zeros(stride, np.int64)
        elif kind == 1:
            predictor = left
        elif kind == 2:
            predictor = above
        elif kind == 3:
            predictor = (left + above) // 2
        else:
            estimate = left + above - upper_left
            distances = np.stack([abs(estimate - left), abs(estimate - above), abs(estimate - upper_left)])
            predictor = np.choose(np.argmin(distances, axis=0), [left, above, upper_left])
        raw += bytes([kind]) + bytes(((line - predictor) % 256).astype(np.uint8))

    color = {1: 0, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", image.shape[1], height, 8, color, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
                     + png_chunk(b"IDAT", zlib.compress(bytes(raw))) + png_chunk(b"IEND", b""))


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.mark.parametrize("pillow", [True, False])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_read_image_png_pgm_npy(device, tmp_path, monkeypatch, channels, pillow):
    """Every reader; the PNG one with Pillow when it is installed and always without it (the
    hand-written decoder, every row filter)."""
    if not pillow:
        monkeypatch.setitem(sys.modules, "PIL", None)  # `from PIL import Image` raises ImportError
    image = load_mnist_sample("test").images[0]
    write_png(tmp_path / "digit.png", image, channels)
    write_pgm(tmp_path / "digit.pgm", image)
    np.save(tmp_path / "digit.npy", image.astype(np.float32) / 255)
    np.testing.assert_array_equal(read_image(tmp_path / "digit.png"), image)
    np.testing.assert_array_equal(read_image(tmp_path / "digit.pgm"), image)
    np.testing.assert_array_equal(read_image(tmp_path / "digit.npy"), image)
    np.save(tmp_path / "big.npy", np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"expected a 28x28 grayscale image, got shape \(32, 32\)"):
        read_image(tmp_path / "big.npy")


def test_npy_bool_nan_and_text_images(tmp_path):
    """A bool mask is 0/255 (it was 0/1); NaN or inf pixels and text are errors (NaN gave arbitrary
    pixels and a RuntimeWarning)."""
    mask = load_mnist_sample("test").images[0] > 127
    np.save(tmp_path / "mask.npy", mask)
    np.testing.assert_array_equal(read_image(tmp_path / "mask.npy"), np.where(mask, 255, 0))
    for bad in (np.nan, np.inf):
        image = np.zeros((28, 28), np.float32)
        image[3, 4] = bad
        np.save(tmp_path / "bad.npy", image)
        with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'bad.npy'}: the image has NaN or infinite")):
            read_image(tmp_path / "bad.npy")
    np.save(tmp_path / "text.npy", np.full((28, 28), "x"))
    with pytest.raises(TypeError, match=r"text\.npy: pixels must be booleans or real numbers, got dtype <U1"):
        read_image(tmp_path / "text.npy")


def test_corrupt_png_files_are_clear_errors(tmp_path, monkeypatch):
    """The hand-written decoder: zlib.error and struct.error escaped the CLI as tracebacks."""
    monkeypatch.setitem(sys.modules, "PIL", None)  # `from PIL import Image` raises ImportError
    write_png(tmp_path / "digit.png", load_mnist_sample("test").images[0])
    content = (tmp_path / "digit.png").read_bytes()
    idat = content.index(b"IDAT") + 4  # the zlib stream starts here
    corrupt = {
        "truncated IDAT": (content[:idat + 100], "truncated IDAT chunk"),
        "bad zlib stream": (content[:idat] + b"\x00\x00" + content[idat + 2:], "bad image data"),
        "truncated chunk header": (content[:idat - 5], "truncated chunk header"),
        "truncated IHDR": (content[:20], "truncated IHDR chunk"),
        "short IHDR": (content[:8] + struct.pack(">I", 4) + content[12:20] + content[33:], "IHDR chunk of 4 bytes"),
        "taller than its data": (content[:16] + struct.pack(">II", 28, 29) + content[24:], "bytes of image data"),
        "filter type 9": (content[:idat - 8] + png_chunk(b"IDAT", zlib.compress(bytes([9]) + bytes(28 * 29 - 1)))
                          + png_chunk(b"IEND", b""), "row 0 has filter type 9"),
        # 10 kB that inflate to 10 MB: the decoder stops one byte past the 812 the header allows
        "inflates past its header": (content[:idat - 8] + png_chunk(b"IDAT", zlib.compress(bytes(10**7)))
                                     + png_chunk(b"IEND", b""), "more bytes of image data, 812 expected"),
    }
    for case, (data, message) in corrupt.items():
        path = tmp_path / (case.replace(" ", "_") + ".png")
        path.write_bytes(data)
        with pytest.raises(ValueError, match=re.escape(f"{path}: corrupt PNG: ") + ".*" + message):
            read_image(path)


def test_bad_pgm_files_are_clear_errors(tmp_path):
    header_then = {
        "maxval 0": b"P5\n28 28\n0\n" + bytes(784),
        "truncated P5": b"P5\n28 28\n255\n" + bytes(700),
        "letters in the header": b"P5\n28 xx\n255\n" + bytes(784),
        "letters in P2 pixels": b"P2\n2 1\n255\n1 a\n",
        "comment to the end": b"P5 # c",
        "P2 pixel above maxval": b"P2\n28 28\n100\n" + b"7 " * 783 + b"101\n",
        "P5 pixel above maxval": b"P5\n28 28\n100\n" + bytes(783) + b"\xff",
        "P5 extra bytes": b"P5\n28 28\n255\n" + bytes(785),
        "P2 extra pixels": b"P2\n28 28\n255\n" + b"7 " * 785,
    }
    messages = {"maxval 0": "maxval 1..65535", "truncated P5": "truncated PGM data",
                "letters in the header": "bad PGM header", "letters in P2 pixels": "bad PGM data",
                "comment to the end": r"truncated PGM header \(a comment runs to the end of the file\)",
                "P2 pixel above maxval": "pixel value 101 is above maxval 100",
                "P5 pixel above maxval": "pixel value 255 is above maxval 100",
                "P5 extra bytes": r"longer than its header says \(785 bytes, 784 expected for 28x28, maxval 255\)",
                "P2 extra pixels": r"longer than its header says \(785 pixels, 784 expected"}
    for case, content in header_then.items():
        path = tmp_path / (case.replace(" ", "_") + ".pgm")
        path.write_bytes(content)
        with pytest.raises(ValueError, match=re.escape(f"{path}: ") + ".*" + messages[case]):
            read_image(path)


def test_limit_and_batch_size_must_be_positive(tmp_path):
    for option in ("--limit", "--batch-size"):
        result = nncore_cli("train", option, "-3", cwd=tmp_path)
        assert result.returncode == 2 and "expected a positive integer, got -3" in result.stderr


def test_momentum_is_refused_with_adam(tmp_path):
    """--momentum with --optimizer adam was accepted and ignored; without --momentum Adam is fine."""
    result = nncore_cli("train", "--optimizer", "adam", "--momentum", "0.5", cwd=tmp_path)
    assert result.returncode == 2
    assert "train: --momentum is for --optimizer sgd; adam has no momentum" in result.stderr
    assert parse_args(["train", "--optimizer", "adam"]).momentum is None
    assert parse_args(["train", "--momentum", "0.5"]).momentum == 0.5


def test_train_float32_matmul_precision(tmp_path):
    """--float32-matmul-precision reaches nncore.set_float32_matmul_precision and metrics.json."""
    assert parse_args(["train"]).float32_matmul_precision == "highest"
    refused = nncore_cli("train", "--float32-matmul-precision", "medium", cwd=tmp_path)
    assert refused.returncode == 2 and "invalid choice: 'medium'" in refused.stderr
    result = nncore_cli("train", "--model", "mlp", "--epochs", "1", "--limit", "200", "--device", "cpu",
                        "--float32-matmul-precision", "high", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["args"]["float32_matmul_precision"] == "high"
    assert metrics["float32_matmul_precision"] == "high"  # what nncore was set to during the run


# ---------------------------------------------------------------- checked before the work, and kept readable


def test_checkpoint_metadata_is_checked(tmp_path, monkeypatch, capsys):
    """evaluate / predict on a checkpoint saved by save_checkpoint (no dataset, no image scaling)
    or with edited class names gave KeyError / IndexError tracebacks."""
    from nncore import models
    from nncore.checkpoint import save_checkpoint
    from nncore.cli import main
    monkeypatch.setenv("NNCORE_DATA", str(tmp_path / "no-data-here"))
    model = models.mlp(784, 800, 10)
    spec = {"mean": 0.1307, "std": 0.3081, "flatten": True}
    cases = [({}, [], "its metadata has no valid 'input' (the image scaling"),
             ({"input": spec}, [], "its metadata names no known dataset (None): pass --dataset"),
             ({"input": spec, "dataset": "mnist", "class_names": ["a", "b"]}, [],
              "2 class names in its metadata for a model of 10 outputs"),
             ({"input": {**spec, "std": 0}, "dataset": "mnist"}, [], "its metadata has no valid")]
    for index, (metadata, extra, message) in enumerate(cases):
        path = tmp_path / f"model{index}.npz"
        save_checkpoint(model, path, metadata)
        for command in (["evaluate", "--limit", "20"], ["predict", "--index", "0"]):
            rc = main([*command, "--checkpoint", str(path), "--device", "cpu", "--no-download", *extra])
            err = capsys.readouterr().err
            assert rc == 1 and f"{path}: {message}" in err, err
    path = tmp_path / "model1.npz"  # no dataset recorded: --dataset gives it
    assert main(["predict", "--checkpoint", str(path), "--index", "0", "--device", "cpu",
                 "--no-download", "--dataset", "mnist"]) == 0
    assert "predicted" in capsys.readouterr().out


def test_bad_out_and_device_fail_before_training(tmp_path, monkeypatch, capsys):
    """--out naming a file failed after training (saving nothing), and --device gpu after
    loading both splits."""
    from nncore.cli import main
    monkeypatch.setenv("NNCORE_DATA", str(tmp_path / "no-data-here"))
    (tmp_path / "afile").write_text("x")
    common = ["train", "--model", "mlp", "--epochs", "1", "--limit", "50", "--no-download"]
    assert main([*common, "--device", "cpu", "--out", str(tmp_path / "afile")]) == 1
    out, err = capsys.readouterr()
    assert "File exists" in err and "train /" not in out
    assert main([*common, "--device", "gpu", "--out", str(tmp_path / "run")]) == 1
    out, err = capsys.readouterr()
    assert "unknown device 'gpu'" in err and "train /" not in out
    with pytest.raises(SystemExit):
        parse_args(["train", "--early-stopping", "-1"])
    assert "expected a non-negative integer, got -1" in capsys.readouterr().err


def test_metrics_json_is_strict_json_when_the_loss_diverges(tmp_path, monkeypatch, capsys):
    """A NaN loss was written as the token NaN, which JSON parsers other than Python's reject."""
    from nncore.cli import main
    monkeypatch.setenv("NNCORE_DATA", str(tmp_path / "no-data-here"))
    assert main(["train", "--model", "mlp", "--epochs", "2", "--limit", "64", "--lr", "1e30",
                 "--device", "cpu", "--no-download", "--out", str(tmp_path / "run")]) == 0

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(), parse_constant=refuse)
    assert None in metrics["history"]["loss"]  # the diverged epochs, as null


def test_unreadable_npy_images_are_clear_errors(tmp_path):
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.npy: not a readable \.npy array"):
        read_image(tmp_path / "empty.npy")
    np.save(tmp_path / "none.npy", np.zeros((28, 28, 0), np.uint8))
    with pytest.raises(ValueError, match=r"expected a 28x28 grayscale image, got shape \(28, 28, 0\)"):
        read_image(tmp_path / "none.npy")


def test_pillow_png_16_bit_and_corrupt(tmp_path):
    """With Pillow, a 16-bit gray PNG was clipped to 0/255 by convert("L"), and a corrupt PNG
    raised Pillow's own errors, naming no file."""
    Image = pytest.importorskip("PIL.Image")
    image = load_mnist_sample("test").images[0]
    Image.fromarray(image.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), image)
    write_png(tmp_path / "digit.png", image)
    (tmp_path / "cut.png").write_bytes((tmp_path / "digit.png").read_bytes()[:60])
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'cut.png'}: cannot read the PNG")):
        read_image(tmp_path / "cut.png")
