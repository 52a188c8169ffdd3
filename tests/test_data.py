"""Tests for nncore.data: IDX files, dataset search and download, the embedded sample, preprocessing, DataLoader."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest

import nncore
import nncore.data.datasets as datasets_module
from nncore.data import (
    DataLoader,
    DatasetError,
    DownloadError,
    SampleFallbackWarning,
    download_file,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    load_mnist_sample,
    one_hot,
    read_idx,
    scale_images,
    search_dirs,
    train_val_split,
    write_idx,
)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- IDX files


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28),
        np.array([0, 9, 3], dtype=np.uint8),
        np.array([-128, 0, 127], dtype=np.int8),
        np.array([[-30000, 1], [2, 30000]], dtype=np.int16),
        np.array([[-(2**31), 7], [8, 2**31 - 1]], dtype=np.int32),
        np.array([1.5, -2.25, np.inf], dtype=np.float32),
        np.array([[np.pi]], dtype=np.float64),
        np.zeros((0, 28, 28), dtype=np.uint8),
    ],
    ids=lambda a: f"{a.dtype}{a.shape}",
)
def test_idx_round_trip(tmp_path, array, suffix):
    path = write_idx(tmp_path / f"data.idx{suffix}", array)
    loaded = read_idx(path)
    assert loaded.dtype == array.dtype and loaded.dtype.isnative
    np.testing.assert_array_equal(loaded, array)
    assert not list(tmp_path.glob("*.part"))


def test_idx_is_big_endian_with_the_documented_header(tmp_path):
    path = write_idx(tmp_path / "labels.idx", np.array([1, 256], dtype=np.int32))
    assert path.read_bytes() == bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 2) + struct.pack(">ii", 1, 256)


def test_gzip_is_detected_from_content_not_name(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    gz_path = write_idx(tmp_path / "a.gz", array)
    renamed = gz_path.rename(tmp_path / "no-suffix")
    np.testing.assert_array_equal(read_idx(renamed), array)


def test_gzip_output_is_reproducible(tmp_path):
    array = np.arange(100, dtype=np.uint8)
    assert write_idx(tmp_path / "a.gz", array).read_bytes() == write_idx(tmp_path / "b.gz", array).read_bytes()


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(TypeError, match="no IDX code"):
        write_idx(tmp_path / "a.idx", np.array([1], dtype=np.int64))


def _valid_idx_bytes() -> bytes:
    return bytes([0, 0, 0x08, 2]) + struct.pack(">II", 3, 4) + bytes(range(12))


@pytest.mark.parametrize(
    "content, message",
    [
        (_valid_idx_bytes()[:-1], "size mismatch"),
        (_valid_idx_bytes() + b"\x00", "size mismatch"),
        (b"\x01\x02" + _valid_idx_bytes()[2:], "bad magic"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "unknown IDX dtype code"),
        (bytes([0, 0, 0x08, 3, 0, 0]), "truncated IDX header"),
        (b"\x00\x00", "truncated IDX header"),
        (gzip.compress(_valid_idx_bytes())[:-10], "bad gzip data"),
        (b"\x1f\x8b" + b"not really gzip", "bad gzip data"),
        (bytes([0, 0, 0x08, 3]) + struct.pack(">III", 2**31, 2**31, 2**31), "size mismatch"),
    ],
    ids=["short-data", "extra-data", "bad-magic", "bad-dtype", "short-dims", "short-magic", "truncated-gz",
         "corrupt-gz", "dims-overflow-int64"],
)
def test_corrupt_idx_raises_clear_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "broken-images-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_missing_idx_file_raises_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(tmp_path / "nothing-here.gz")


# ---------------------------------------------------------------- search order and download (no real network)


def _write_split(folder: Path, split: str, marker: int, num: int = 6, style: str = "gz") -> None:
    """Fake IDX files for one split; every pixel equals `marker`, so tests can tell sources apart."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    names = {
        "gz": (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"),
        "raw": (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"),
        "dotted": (f"{prefix}-images.idx3-ubyte", f"{prefix}-labels.idx1-ubyte"),
    }[style]
    write_idx(folder / names[0], np.full((num, 28, 28), marker, dtype=np.uint8))
    write_idx(folder / names[1], np.arange(num, dtype=np.uint8) % 10)


def _marker(dataset) -> int:
    return int(dataset.images[0, 0, 0])


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """HOME, $NNCORE_DATA and /usr/share/datasets redirected into tmp_path; downloads recorded and refused."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NNCORE_DATA", raising=False)
    monkeypatch.setattr(datasets_module, "SYSTEM_DATA_DIR", tmp_path / "system")

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(datasets_module, "urlopen", no_network)
    download_calls = []

    def refused_download(spec, split, folder):
        download_calls.append((spec.name, split, Path(folder)))
        raise DownloadError("offline (mocked)")

    monkeypatch.setattr(datasets_module, "download_split", refused_download)

    class Places:
        root = tmp_path / "root"
        env = tmp_path / "env"
        cache = home / ".cache" / "nncore"
        system = tmp_path / "system"
        downloads = download_calls

    return Places


def test_search_order_root_env_cache_system(isolated, monkeypatch):
    monkeypatch.setenv("NNCORE_DATA", str(isolated.env))
    _write_split(isolated.root, "train", marker=1)
    _write_split(isolated.env / "fashion-mnist", "train", marker=2)
    _write_split(isolated.env, "train", marker=3)
    _write_split(isolated.cache / "fashion-mnist", "train", marker=4)
    _write_split(isolated.system / "fashion-mnist", "train", marker=5)

    assert _marker(load_fashion_mnist(root=isolated.root)) == 1
    assert _marker(load_fashion_mnist()) == 2
    for path in (isolated.env / "fashion-mnist").iterdir():
        path.unlink()
    assert _marker(load_fashion_mnist()) == 3
    monkeypatch.delenv("NNCORE_DATA")
    dataset = load_fashion_mnist()
    assert _marker(dataset) == 4 and dataset.source == str(isolated.cache / "fashion-mnist")
    for path in (isolated.cache / "fashion-mnist").iterdir():
        path.unlink()
    dataset = load_fashion_mnist()
    assert _marker(dataset) == 5 and dataset.source == str(isolated.system / "fashion-mnist")
    assert not isolated.downloads


def test_search_dirs_lists_the_documented_order(isolated, monkeypatch):
    monkeypatch.setenv("NNCORE_DATA", str(isolated.env))
    assert search_dirs("mnist", root=isolated.root) == [
        isolated.root,
        isolated.root / "mnist",
        isolated.env / "mnist",
        isolated.env,
        isolated.cache / "mnist",
        isolated.system / "mnist",
    ]


def test_root_subfolder_named_after_the_dataset_is_searched(isolated):
    _write_split(isolated.root / "mnist", "test", marker=7)
    dataset = load_mnist(root=isolated.root, split="test")
    assert _marker(dataset) == 7 and not dataset.is_sample


@pytest.mark.parametrize("style", ["raw", "dotted"])
def test_unpacked_and_dotted_file_names_are_found(isolated, style):
    _write_split(isolated.cache / "mnist", "train", marker=9, style=style)
    assert _marker(load_mnist()) == 9


def test_splits_read_their_own_files(isolated):
    _write_split(isolated.cache / "mnist", "train", marker=10, num=6)
    _write_split(isolated.cache / "mnist", "test", marker=20, num=4)
    train, test = load_mnist(split="train"), load_mnist(split="test")
    assert (_marker(train), train.num_samples, train.split) == (10, 6, "train")
    assert (_marker(test), test.num_samples, test.split) == (20, 4, "test")


def test_a_split_with_one_file_missing_is_not_used(isolated):
    _write_split(isolated.root, "train", marker=1)
    (isolated.root / "train-labels-idx1-ubyte.gz").unlink()
    _write_split(isolated.cache / "mnist", "train", marker=2)
    assert _marker(load_mnist(root=isolated.root)) == 2


def test_dataset_unpacks_and_reports_its_source(isolated):
    _write_split(isolated.system / "fashion-mnist", "test", marker=3)
    dataset = load_dataset("fashion-mnist", split="test")
    images, labels = dataset
    assert images is dataset.images and labels is dataset.labels
    assert images.dtype == np.uint8 and images.shape == (6, 28, 28)
    assert labels.dtype == np.uint8 and labels.shape == (6,)
    assert dataset.name == "fashion-mnist" and dataset.num_classes == 10
    assert dataset.class_names[9] == "Ankle boot"
    assert load_dataset("fashion_mnist", split="test").name == "fashion-mnist"


def test_unknown_name_and_split_raise_value_error(isolated):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar-10")
    with pytest.raises(ValueError, match="split"):
        load_mnist(split="validation")


def test_corrupt_file_in_search_path_is_an_error_not_skipped(isolated):
    _write_split(isolated.cache / "mnist", "train", marker=1)
    path = isolated.cache / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
        load_mnist()


def test_label_count_mismatch_is_an_error(isolated):
    folder = isolated.cache / "mnist"
    _write_split(folder, "train", marker=1, num=6)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DatasetError, match="5 labels for 6 images"):
        load_mnist()


def test_download_goes_to_cache_then_env_then_root(isolated, monkeypatch):
    with pytest.warns(SampleFallbackWarning):
        load_mnist()
    monkeypatch.setenv("NNCORE_DATA", str(isolated.env))
    with pytest.warns(SampleFallbackWarning):
        load_mnist()
    with pytest.warns(SampleFallbackWarning):
        load_mnist(root=isolated.root, split="test")
    assert isolated.downloads == [
        ("mnist", "train", isolated.cache / "mnist"),
        ("mnist", "train", isolated.env / "mnist"),
        ("mnist", "test", isolated.root / "mnist"),
    ]


def test_successful_download_is_loaded(isolated, monkeypatch):
    def fake_download(spec, split, folder):
        _write_split(folder, split, marker=42)
        names = [remote.name for remote in spec.split_files[split]]
        return folder / names[0], folder / names[1]

    monkeypatch.setattr(datasets_module, "download_split", fake_download)
    dataset = load_mnist()
    assert _marker(dataset) == 42 and dataset.source == str(isolated.cache / "mnist")
    assert _marker(load_mnist()) == 42  # found in the cache the second time


def test_download_into_root_goes_to_its_own_folder(isolated, monkeypatch):
    """A download into root went into root itself, where the other dataset then found it:
    after load_fashion_mnist(root=R), load_mnist(root=R) returned Fashion-MNIST's images."""
    def fake_download(spec, split, folder):
        _write_split(folder, split, marker=7 if spec.name == "fashion-mnist" else 9)
        names = [remote.name for remote in spec.split_files[split]]
        return folder / names[0], folder / names[1]

    monkeypatch.setattr(datasets_module, "download_split", fake_download)
    fashion = load_fashion_mnist(root=isolated.root)
    assert _marker(fashion) == 7 and fashion.source == str(isolated.root / "fashion-mnist")
    mnist = load_mnist(root=isolated.root)
    assert _marker(mnist) == 9 and mnist.source == str(isolated.root / "mnist")


def test_download_false_does_not_download(isolated):
    with pytest.warns(SampleFallbackWarning, match="download=False"):
        load_mnist(download=False)
    assert not isolated.downloads


def test_mnist_falls_back_to_sample_and_says_so(isolated):
    with pytest.warns(SampleFallbackWarning) as caught:
        dataset = load_mnist(split="test")
    message = str(caught[0].message)
    assert "full MNIST not found" in message and "embedded 5,000-digit MNIST sample" in message
    assert str(isolated.cache / "mnist") in message and "offline (mocked)" in message
    assert dataset.is_sample and dataset.source == "embedded-sample" and dataset.num_samples == 1000


def test_fashion_mnist_not_found_raises_with_hint(isolated):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as caught:
        load_fashion_mnist()
    assert str(isolated.system / "fashion-mnist") in str(caught.value)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NNCORE_DATA", raising=False)
    train, test = load_fashion_mnist(split="train", download=False), load_fashion_mnist(split="test", download=False)
    assert train.source == str(DEBIAN_FASHION_MNIST) and train.images.shape == (60000, 28, 28)
    assert test.images.shape == (10000, 28, 28)
    assert np.all(np.bincount(test.labels, minlength=10) == 1000)


# ---------------------------------------------------------------- atomic downloads


class _FakeResponse:
    """A urlopen() result that serves `payload` in chunks, optionally failing after `fail_after` bytes."""

    def __init__(self, payload: bytes, fail_after: int | None = None):
        self.stream = io.BytesIO(payload)
        self.fail_after = fail_after
        self.headers = {"Content-Length": str(len(payload))}

    def read(self, size: int) -> bytes:
        if self.fail_after is not None and self.stream.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer (simulated)")
        return self.stream.read(min(size, 1000))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


PAYLOAD = bytes(range(256)) * 40
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def _serve(monkeypatch, response_factory):
    monkeypatch.setattr(datasets_module, "urlopen", lambda request, timeout: response_factory())


def test_download_interrupted_midway_leaves_no_file(tmp_path, monkeypatch):
    _serve(monkeypatch, lambda: _FakeResponse(PAYLOAD, fail_after=3000))
    dest = tmp_path / "train-images-idx3-ubyte.gz"
    with pytest.raises(DownloadError, match="connection reset"):
        download_file("https://example.invalid/x.gz", dest, PAYLOAD_SHA256, len(PAYLOAD))
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_download_with_wrong_checksum_leaves_no_file(tmp_path, monkeypatch):
    _serve(monkeypatch, lambda: _FakeResponse(PAYLOAD))
    dest = tmp_path / "f.gz"
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download_file("https://example.invalid/f.gz", dest, "0" * 64, len(PAYLOAD))
    assert list(tmp_path.iterdir()) == []


def test_download_with_wrong_size_leaves_no_file(tmp_path, monkeypatch):
    _serve(monkeypatch, lambda: _FakeResponse(PAYLOAD[:-1]))
    dest = tmp_path / "f.gz"
    with pytest.raises(DownloadError, match="expected"):
        download_file("https://example.invalid/f.gz", dest, PAYLOAD_SHA256, len(PAYLOAD))
    assert list(tmp_path.iterdir()) == []


def test_download_success_replaces_atomically(tmp_path, monkeypatch):
    _serve(monkeypatch, lambda: _FakeResponse(PAYLOAD))
    dest = tmp_path / "sub" / "f.gz"
    assert download_file("https://example.invalid/f.gz", dest, PAYLOAD_SHA256, len(PAYLOAD)) == dest
    assert dest.read_bytes() == PAYLOAD
    assert [p.name for p in dest.parent.iterdir()] == ["f.gz"]


def test_offline_download_fails_fast_with_clear_error(tmp_path, monkeypatch):
    def unreachable(request, timeout):
        assert timeout <= 30
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(datasets_module, "urlopen", unreachable)
    with pytest.raises(DownloadError, match="example.invalid.*Name or service not known"):
        download_file("https://example.invalid/f.gz", tmp_path / "f.gz", PAYLOAD_SHA256)
    assert not (tmp_path / "f.gz").exists()


def test_interrupted_mnist_download_falls_back_and_leaves_cache_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NNCORE_DATA", raising=False)
    monkeypatch.setattr(datasets_module, "SYSTEM_DATA_DIR", tmp_path / "system")
    _serve(monkeypatch, lambda: _FakeResponse(PAYLOAD, fail_after=2000))
    with pytest.warns(SampleFallbackWarning, match="connection reset"):
        dataset = load_mnist()
    assert dataset.is_sample
    cache = tmp_path / ".cache" / "nncore" / "mnist"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_published_checksums_are_well_formed():
    for spec in datasets_module.DATASETS.values():
        for split in ("train", "test"):
            for remote in spec.split_files[split]:
                assert len(remote.sha256) == 64 and int(remote.sha256, 16) >= 0 and remote.size > 0
        assert all(mirror.endswith("/") for mirror in spec.mirrors)


# ---------------------------------------------------------------- the embedded sample


def test_embedded_sample_is_real_mnist_shaped():
    sample = load_mnist_sample("all")
    assert sample.images.shape == (5000, 28, 28) and sample.images.dtype == np.uint8
    assert sample.labels.shape == (5000,) and sample.labels.dtype == np.uint8
    assert np.all(np.bincount(sample.labels, minlength=10) == 500)
    assert sample.images.min() == 0 and sample.images.max() == 255
    assert 0.10 < sample.images.mean() / 255 < 0.16  # MNIST's mean pixel is about 0.13
    assert sample.is_sample and sample.name == "mnist"


def test_embedded_sample_split_is_stratified_fixed_and_disjoint():
    train, test, everything = load_mnist_sample("train"), load_mnist_sample("test"), load_mnist_sample("all")
    assert train.num_samples == 4000 and test.num_samples == 1000
    assert np.all(np.bincount(train.labels, minlength=10) == 400)
    assert np.all(np.bincount(test.labels, minlength=10) == 100)
    np.testing.assert_array_equal(np.concatenate([train.images, test.images]), everything.images)
    np.testing.assert_array_equal(np.concatenate([train.labels, test.labels]), everything.labels)
    again = load_mnist_sample("test")
    np.testing.assert_array_equal(again.images, test.images)
    train_rows = {row.tobytes() for row in train.images}
    assert not any(row.tobytes() in train_rows for row in test.images)


def test_embedded_sample_by_name():
    assert load_dataset("mnist-sample", split="test").num_samples == 1000


def test_sample_files_ship_inside_the_package():
    folder = Path(datasets_module.__file__).parent / "sample"
    assert (folder / "mnist-sample-images-idx3-ubyte.gz").is_file()
    assert (folder / "mnist-sample-labels-idx1-ubyte.gz").is_file()
    assert "Corinna Cortes" in (folder / "README.md").read_text()


# ---------------------------------------------------------------- preprocessing


def test_scale_images_shapes_and_range():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    scaled = scale_images(images)
    assert scaled.dtype == np.float32 and scaled.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(scaled.ravel(), [0.0, 1.0, 0.2, 0.4], rtol=1e-6)
    flat = scale_images(images, flatten=True)
    assert flat.shape == (1, 4) and flat.dtype == np.float32
    normalised = scale_images(images, mean=0.5, std=0.25, flatten=True)
    np.testing.assert_allclose(normalised.ravel(), [-2.0, 2.0, -1.2, -0.4], rtol=1e-5)
    assert scale_images(np.zeros((2, 3, 4, 4), dtype=np.uint8)).shape == (2, 3, 4, 4)


def test_scale_images_of_no_images():
    """flatten=True on no images gave NumPy's 'cannot reshape array of size 0' (an IDX file of
    0 images loads, and the CLI then failed naming no file)."""
    assert scale_images(np.zeros((0, 28, 28), np.uint8), flatten=True).shape == (0, 784)
    assert scale_images(np.zeros((0, 28, 28), np.uint8)).shape == (0, 1, 28, 28)


def test_gzip_inflates_no_further_than_its_header_allows(tmp_path):
    """64 MiB of zeros under a header of 10 images compresses to ~64 KiB; the reader inflated it
    all (a small file can inflate to gigabytes) before the size check. Now it stops a byte past
    the header's size, and a whole valid file still reads."""
    import tracemalloc
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">III", 10, 28, 28)
    path = tmp_path / "bomb-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + bytes(64 << 20), compresslevel=6))
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=r"size mismatch.*\(7840 data bytes\) but the file "
                                               r"has more data bytes"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"inflating took {peak} bytes"
    path.write_bytes(gzip.compress(header + bytes(7840)) + b"trailing")
    with pytest.raises(DatasetError, match="8 bytes after the gzip stream"):
        read_idx(path)
    path.write_bytes(gzip.compress(header + bytes(range(256)) * 30 + bytes(160)))
    assert read_idx(path).shape == (10, 28, 28)


def test_scale_images_rejects_float_input():
    with pytest.raises(TypeError, match="integer pixels"):
        scale_images(np.zeros((1, 28, 28), dtype=np.float32))


def test_one_hot():
    encoded = one_hot(np.array([2, 0, 1], dtype=np.uint8), 4)
    assert encoded.dtype == np.float32 and encoded.shape == (3, 4)
    np.testing.assert_array_equal(encoded, [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]])
    assert one_hot(np.array([0, 4])).shape == (2, 5)
    with pytest.raises(ValueError, match="0..2"):
        one_hot(np.array([3]), 3)


# ---------------------------------------------------------------- train/validation split


def test_train_val_split_takes_the_last_fraction_like_keras():
    x, y = np.arange(10)[:, None], np.arange(10)
    x_train, y_train, x_val, y_val = train_val_split(x, y, 0.25)
    split_at = int(10 * (1 - 0.25))  # Keras: split_at = int(n * (1 - validation_split))
    np.testing.assert_array_equal(y_train, np.arange(split_at))
    np.testing.assert_array_equal(y_val, np.arange(split_at, 10))
    np.testing.assert_array_equal(x_val[:, 0], y_val)


def test_train_val_split_shuffled_is_seeded():
    x, y = np.arange(100)[:, None] * 10, np.arange(100)
    first = train_val_split(x, y, 0.2, shuffle=True, seed=3)
    second = train_val_split(x, y, 0.2, shuffle=True, seed=3)
    other = train_val_split(x, y, 0.2, shuffle=True, seed=4)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[3], other[3])
    assert len(first[3]) == 20 and sorted(np.concatenate([first[1], first[3]])) == list(range(100))
    np.testing.assert_array_equal(first[0][:, 0], first[1] * 10)  # rows stay paired


def test_train_val_split_rejects_bad_arguments():
    x, y = np.zeros((10, 2)), np.zeros(10)
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(x, y, 1.0)
    with pytest.raises(ValueError, match="shuffle=True"):
        train_val_split(x, y, 0.5, seed=1)
    with pytest.raises(ValueError, match="rows"):
        train_val_split(x, y[:9], 0.5)


# ---------------------------------------------------------------- DataLoader


def _devices():
    devices = ["cpu"]
    if nncore.cuda.is_available():
        devices.append("cuda")
    return devices


def _epoch_rows(loader) -> list[np.ndarray]:
    """The row ids of each batch, read back from column 0 of x (which holds the row id)."""
    return [xb.numpy()[:, 0].astype(np.int64) for xb, _ in loader]


def _rows_dataset(n: int = 10):
    x = np.stack([np.arange(n), np.arange(n) * 2], axis=1).astype(np.float32)
    y = (np.arange(n) % 3).astype(np.uint8)
    return x, y


@pytest.mark.parametrize("device", _devices())
def test_loader_batches_in_order_without_shuffle(device):
    x, y = _rows_dataset(10)
    loader = DataLoader(x, y, batch_size=4, device=device)
    assert len(loader) == 3
    batches = list(loader)
    assert [tuple(xb.shape) for xb, _ in batches] == [(4, 2), (4, 2), (2, 2)]
    for xb, yb in batches:
        assert xb.dtype == "float32" and yb.dtype == "int32"
        assert xb.device.startswith(device) and yb.device.startswith(device)
    np.testing.assert_array_equal(np.concatenate([xb.numpy() for xb, _ in batches]), x)
    np.testing.assert_array_equal(np.concatenate([yb.numpy() for _, yb in batches]), y.astype(np.int32))


@pytest.mark.parametrize("device", _devices())
def test_loader_drop_last(device):
    x, y = _rows_dataset(10)
    loader = DataLoader(x, y, batch_size=4, drop_last=True, shuffle=True, seed=0, device=device)
    assert len(loader) == 2
    rows = _epoch_rows(loader)
    assert [len(r) for r in rows] == [4, 4]
    assert len(set(np.concatenate(rows))) == 8


@pytest.mark.parametrize("device", _devices())
def test_loader_shuffle_is_deterministic_per_seed_and_epoch(device):
    x, y = _rows_dataset(50)
    first = DataLoader(x, y, batch_size=8, shuffle=True, seed=123, device=device)
    second = DataLoader(x, y, batch_size=8, shuffle=True, seed=123, device=device)
    epoch0, epoch1 = _epoch_rows(first), _epoch_rows(first)
    for a, b in zip(epoch0, _epoch_rows(second)):
        np.testing.assert_array_equal(a, b)
    assert sorted(np.concatenate(epoch0)) == list(range(50))
    assert sorted(np.concatenate(epoch1)) == list(range(50))
    assert not np.array_equal(np.concatenate(epoch0), np.concatenate(epoch1))
    assert not np.array_equal(np.concatenate(epoch0), np.arange(50))
    second.set_epoch(1)
    np.testing.assert_array_equal(np.concatenate(_epoch_rows(second)), np.concatenate(epoch1))
    other_seed = DataLoader(x, y, batch_size=8, shuffle=True, seed=124, device=device)
    assert not np.array_equal(np.concatenate(_epoch_rows(other_seed)), np.concatenate(epoch0))
    with pytest.raises(ValueError, match="DataLoader.set_epoch: epoch must be a non-negative integer"):
        second.set_epoch(-1)  # (the next iteration failed in NumPy's default_rng)


def test_loader_default_seed_follows_manual_seed():
    """Without a seed, the shuffling order comes from nncore.manual_seed's generator; an unknown
    device name, a bad seed or a seed without shuffle is refused at construction."""
    x, y = _rows_dataset(40)
    orders = []
    for _ in range(2):
        nncore.manual_seed(7)
        orders.append(np.concatenate(_epoch_rows(DataLoader(x, y, batch_size=8, shuffle=True))))
    np.testing.assert_array_equal(orders[0], orders[1])
    nncore.manual_seed(8)
    other = np.concatenate(_epoch_rows(DataLoader(x, y, batch_size=8, shuffle=True)))
    assert not np.array_equal(other, orders[0])
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        DataLoader(x, y, batch_size=8, device="gpu")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        DataLoader(x, y, batch_size=8, shuffle=True, seed=-1)
    with pytest.raises(ValueError, match="DataLoader: seed has no effect without shuffle=True"):
        DataLoader(x, y, batch_size=8, seed=5)  # as train_val_split words it


@pytest.mark.parametrize("device", _devices())
def test_loader_keeps_labels_paired_with_rows(device):
    x, y = _rows_dataset(30)
    for xb, yb in DataLoader(x, y, batch_size=7, shuffle=True, seed=5, device=device):
        rows = xb.numpy()[:, 0].astype(np.int64)
        np.testing.assert_array_equal(yb.numpy(), y[rows])
        np.testing.assert_array_equal(xb.numpy()[:, 1], rows * 2)


@pytest.mark.parametrize("device", _devices())
def test_loader_one_hot_labels_stay_float32(device):
    x, y = _rows_dataset(6)
    targets = one_hot(y, 3)
    batches = list(DataLoader(x, targets, batch_size=4, device=device))
    assert all(yb.dtype == "float32" and yb.shape[1] == 3 for _, yb in batches)
    np.testing.assert_array_equal(np.concatenate([yb.numpy() for _, yb in batches]), targets)


def test_loader_cuda_matches_cpu_batches():
    if "cuda" not in _devices():
        pytest.skip("no CUDA device")
    x, y = _rows_dataset(37)
    cpu = DataLoader(x, y, batch_size=5, shuffle=True, seed=9)
    cuda = DataLoader(x, y, batch_size=5, shuffle=True, seed=9, device="cuda")
    for _ in range(2):
        for (xc, yc), (xg, yg) in zip(cpu, cuda):
            np.testing.assert_array_equal(xc.numpy(), xg.numpy())
            np.testing.assert_array_equal(yc.numpy(), yg.numpy())


def test_loader_over_the_embedded_sample():
    sample = load_mnist_sample("test")
    loader = DataLoader(scale_images(sample.images, flatten=True), sample.labels, batch_size=128)
    assert len(loader) == 8
    xb, yb = next(iter(loader))
    assert tuple(xb.shape) == (128, 784) and tuple(yb.shape) == (128,)


def test_loader_rejects_bad_input():
    x, y = _rows_dataset(4)
    with pytest.raises(ValueError, match="same number of rows"):
        DataLoader(x, y[:3], batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(x, y, batch_size=0)
    with pytest.raises(TypeError, match="DataLoader: y: unsupported dtype bool"):
        DataLoader(x, y.astype(bool), batch_size=2)
