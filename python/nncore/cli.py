"""``python -m nncore train | evaluate | predict``: train LeNet-5 or an MLP on MNIST /
Fashion-MNIST, then reload the checkpoint to score a test set or classify one image."""
from __future__ import annotations

import argparse
import json
import struct
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

import nncore
from nncore import data, models, optim
from nncore.checkpoint import load_checkpoint, save_checkpoint

NORMALIZATION = {"mnist": (data.MNIST_MEAN, data.MNIST_STD),
                 "fashion-mnist": (data.FASHION_MNIST_MEAN, data.FASHION_MNIST_STD)}
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3}
DEFAULT_MOMENTUM = 0.9


# ---------------------------------------------------------------- shared helpers


def resolve_device(name: str) -> str:
    """"auto" -> "cuda" when a GPU is usable, else "cpu"; other names checked before any work."""
    if name == "auto":
        return "cuda" if nncore.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not nncore.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available "
                         f"({'no GPU found' if nncore.cuda.is_compiled() else 'this build has no CUDA backend'})")
    nncore._device_type(name)  # "gpu", "CUDA", "": the tensors' ValueError
    return name


def json_safe(value):
    """``value`` with NaN and infinities as None (null): JSON has no NaN, and strict parsers
    reject the token Python's json writes for it."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def checked_metadata(args, meta: dict) -> tuple[str, dict, list | None]:
    """The dataset, image scaling and class names a ``train`` checkpoint records, checked: one
    saved by save_checkpoint without them, or edited, is a one-line error, not a KeyError."""
    spec = meta.get("input")
    if not (isinstance(spec, dict) and isinstance(spec.get("flatten"), bool)
            and all(isinstance(spec.get(key), (int, float)) for key in ("mean", "std"))
            and spec["std"] > 0):
        raise ValueError(f"{args.checkpoint}: its metadata has no valid 'input' (the image scaling "
                         "`python -m nncore train` records): not a train checkpoint, or edited")
    dataset = args.dataset or meta.get("dataset")
    if dataset not in NORMALIZATION:
        raise ValueError(f"{args.checkpoint}: its metadata names no known dataset "
                         f"({meta.get('dataset')!r}): pass --dataset")
    names = meta.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ValueError(f"{args.checkpoint}: class_names in its metadata is not a list of names")
    return dataset, spec, names


def class_names(args, names: list | None, count: int) -> list:
    """The checkpoint's class names for ``count`` outputs, else "0", "1", ..."""
    if names is None:
        return [str(c) for c in range(count)]
    if len(names) != count:
        raise ValueError(f"{args.checkpoint}: {len(names)} class names in its metadata for a "
                         f"model of {count} outputs")
    return names


def load_split(args, dataset: str, split: str, limit: int | None = None):
    """The Dataset for ``split``; the sample fallback is announced on one line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", data.SampleFallbackWarning)
        loaded = data.load_dataset(dataset, root=args.data_root, split=split, download=not args.no_download)
    for warning in caught:
        print(f"note: {warning.message}", file=sys.stderr)
    if limit is not None:
        loaded = type(loaded)(loaded.name, loaded.split, loaded.images[:limit], loaded.labels[:limit],
                              loaded.source, loaded.class_names)
    return loaded


def prepare_images(images: np.ndarray, input_spec: dict) -> np.ndarray:
    """uint8 (N, 28, 28) -> the float32 input the model was trained on."""
    return data.scale_images(images, input_spec["mean"], input_spec["std"], flatten=input_spec["flatten"])


def build_model(name: str, num_classes: int, device: str):
    if name == "lenet5":
        return models.lenet5(num_classes=num_classes, device=device)
    if name == "mlp":
        return models.mlp(784, 800, num_classes, device=device)
    raise ValueError(f"unknown model {name!r}")


# ---------------------------------------------------------------- train


def cmd_train(args) -> int:
    started = time.perf_counter()
    device = resolve_device(args.device)
    out = Path(args.out or f"runs/{args.model}-{args.dataset}")
    out.mkdir(parents=True, exist_ok=True)  # now: a --out that cannot be a folder fails before training
    nncore.manual_seed(args.seed)
    nncore.set_float32_matmul_precision(args.float32_matmul_precision)
    train = load_split(args, args.dataset, "train", args.limit)
    test = load_split(args, args.dataset, "test", args.limit)
    mean, std = NORMALIZATION[train.name]
    input_spec = {"mean": mean, "std": std, "flatten": args.model == "mlp"}
    x_train, x_test = prepare_images(train.images, input_spec), prepare_images(test.images, input_spec)
    print(f"{args.model} on {train.name} ({'embedded sample' if train.is_sample else train.source}): "
          f"{len(x_train)} train / {len(x_test)} test images, device {device}")

    model = build_model(args.model, train.num_classes, device)
    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    if args.optimizer == "sgd":
        momentum = DEFAULT_MOMENTUM if args.momentum is None else args.momentum
        optimizer = optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=args.weight_decay)
    else:
        optimizer = optim.Adam(model.parameters(), lr=lr, weight_decay=args.weight_decay)
    scheduler = optim.CosineAnnealingLR(optimizer, max(args.epochs, 1)) if args.schedule == "cosine" else None
    history = model.fit(x_train, train.labels, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=args.val_fraction, optimizer=optimizer, lr_scheduler=scheduler,
                        early_stopping_patience=args.early_stopping, seed=args.seed, verbose=1)
    train_seconds = time.perf_counter() - started
    result = model.evaluate(x_test, test.labels)
    print(f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f}) - total time {train_seconds:.1f}s")

    metadata = {"dataset": train.name, "input": input_spec, "class_names": list(train.class_names),
                "test_accuracy": result["accuracy"], "epochs": len(history.epoch), "seed": args.seed}
    save_checkpoint(model, out / "model.npz", metadata)
    metrics = {"history": history.history, "test": result, "best_epoch": history.best_epoch,
               "total_seconds": train_seconds, "device": device, "data_source": train.source,
               "test_data_source": test.source,
               "float32_matmul_precision": nncore.get_float32_matmul_precision(),
               "train_images": len(x_train),
               "args": {key: value for key, value in vars(args).items() if key != "run"}}
    (out / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2, allow_nan=False))
    wrote = ["model.npz", "metrics.json"]
    if save_curves(history.history, out / "curves.png"):
        wrote.append("curves.png")
    else:
        print("matplotlib is not installed: skipping curves.png")
    print(f"wrote {', '.join(wrote)} to {out}")
    return 0


def save_curves(history: dict, path: Path) -> bool:
    """Loss and accuracy per epoch as a PNG; False when matplotlib is not importable."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for axes, key in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = history.get(prefix + key)
            if values:
                axes.plot(range(1, len(values) + 1), values, marker="o", label=label)
        axes.set_xlabel("epoch")
        axes.set_ylabel(key)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


# ---------------------------------------------------------------- evaluate / predict


def cmd_evaluate(args) -> int:
    device = resolve_device(args.device)
    model, meta = load_checkpoint(args.checkpoint, device=device)
    dataset, input_spec, names = checked_metadata(args, meta)
    test = load_split(args, dataset, "test", args.limit)
    x_test = prepare_images(test.images, input_spec)
    result = model.evaluate(x_test, test.labels)
    outputs = model.predict(x_test)
    predicted = outputs.argmax(axis=1)
    print(f"{args.checkpoint}: {meta['model']['name']} on {test.name} test ({len(x_test)} images, "
          f"{'embedded sample' if test.is_sample else test.source})")
    print(f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f})")
    for label, name in enumerate(class_names(args, names, outputs.shape[1])):
        rows = test.labels == label
        if rows.any():
            print(f"  {name:>12}: {np.mean(predicted[rows] == label):.4f} ({int(rows.sum())} images)")
    return 0


def cmd_predict(args) -> int:
    device = resolve_device(args.device)
    model, meta = load_checkpoint(args.checkpoint, device=device)
    dataset, input_spec, names = checked_metadata(args, meta)
    truth = None
    if args.image is not None:
        image = read_image(args.image)
        source = args.image
    else:
        test = load_split(args, dataset, "test")
        if not 0 <= args.index < test.num_samples:
            raise ValueError(f"--index {args.index} is out of range for {test.num_samples} test images")
        image, truth = test.images[args.index], int(test.labels[args.index])
        source = f"{test.name} test image {args.index}"
    probabilities = model.predict(prepare_images(image[None], input_spec), softmax=True)[0]
    names = class_names(args, names, len(probabilities))
    best = int(np.argmax(probabilities))
    print(f"{source}: predicted {names[best]} (class {best}, p={probabilities[best]:.4f})"
          + ("" if truth is None else f", true label {names[truth]} (class {truth})"))
    for rank, label in enumerate(np.argsort(probabilities)[::-1][:3], 1):
        print(f"  {rank}. {names[label]:>12}  {probabilities[label]:.4f}")
    return 0


def read_image(path) -> np.ndarray:
    """A 28x28 grayscale image from .npy, .pgm or .png, as uint8 0..255 (white digit on black)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            image = np.load(path, allow_pickle=False)
        except (ValueError, EOFError) as error:  # empty, truncated, pickled, not an .npy
            raise ValueError(f"{path}: not a readable .npy array ({error})") from error
    elif suffix == ".pgm":
        image = _read_pgm(path)
    elif suffix == ".png":
        image = _read_png(path)
    else:
        raise ValueError(f"{path}: unsupported image type {suffix!r} (use .png, .pgm or .npy)")
    image = np.asarray(image)
    if image.dtype.kind not in "biuf":
        raise TypeError(f"{path}: pixels must be booleans or real numbers, got dtype {image.dtype}")
    if image.dtype.kind == "b":  # a mask: True is the digit's white, not the value 1 of 255
        image = image.astype(np.uint8) * 255
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ValueError(f"{path}: the image has NaN or infinite pixels")
    if image.ndim == 3 and 1 <= image.shape[2] <= 4:  # colour: average RGB, drop alpha
        image = image[..., :3].mean(axis=2) if image.shape[2] >= 3 else image[..., 0]
    if image.shape != (28, 28):
        raise ValueError(f"{path}: expected a 28x28 grayscale image, got shape {image.shape}")
    if np.issubdtype(image.dtype, np.floating) and image.max() <= 1.0:
        image = image * 255.0
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _read_pgm(path: Path) -> np.ndarray:
    """Binary (P5) or ASCII (P2) PGM, 8 or 16 bit."""
    content = path.read_bytes()
    fields, position = [], 0
    while len(fields) < 4:  # magic, width, height, maxval, with '#' comments between
        while position < len(content) and content[position:position + 1].isspace():
            position += 1
        if content[position:position + 1] == b"#":
            position = content.find(b"\n", position) + 1
            if position == 0:
                raise ValueError(f"{path}: truncated PGM header (a comment runs to the end of the file)")
            continue
        end = position
        while end < len(content) and not content[end:end + 1].isspace():
            end += 1
        if end == position:
            raise ValueError(f"{path}: truncated PGM header")
        fields.append(content[position:end])
        position = end
    magic = fields[0]
    if magic not in (b"P5", b"P2"):
        raise ValueError(f"{path}: not a PGM file (magic {magic!r})")
    if not all(field.isdigit() for field in fields[1:]):
        raise ValueError(f"{path}: bad PGM header {b' '.join(fields).decode(errors='replace')!r}")
    width, height, maxval = map(int, fields[1:])
    if not (width > 0 and height > 0 and 0 < maxval < 65536):
        raise ValueError(f"{path}: bad PGM header: {width}x{height}, maxval {maxval} "
                         "(the PGM format takes maxval 1..65535)")

    def check_size(found: int, expected: int, unit: str) -> None:
        if found != expected:
            problem = "truncated PGM data" if found < expected else "PGM data longer than its header says"
            raise ValueError(f"{path}: {problem} ({found} {unit}, {expected} expected for {width}x{height}, "
                             f"maxval {maxval})")

    if magic == b"P5":
        dtype = np.dtype(np.uint8 if maxval < 256 else ">u2")
        check_size(len(content) - (position + 1), width * height * dtype.itemsize, "bytes")
        pixels = np.frombuffer(content, dtype=dtype, offset=position + 1)
        largest = int(pixels.max())
    else:
        values = content[position:].split()
        if not all(value.isdigit() for value in values):
            raise ValueError(f"{path}: bad PGM data (P2 pixels are decimal integers)")
        check_size(len(values), width * height, "pixels")
        pixels = [int(value) for value in values]  # Python ints: a huge value cannot overflow before the check
        largest = max(pixels)
    if largest > maxval:
        raise ValueError(f"{path}: bad PGM data (pixel value {largest} is above maxval {maxval})")
    return (np.asarray(pixels, dtype=np.float64).reshape(height, width) * (255.0 / maxval))


def _read_png(path: Path) -> np.ndarray:
    """8-bit, non-interlaced PNG (gray, gray+alpha, RGB, RGBA) with Pillow if present, else by hand."""
    try:
        from PIL import Image
    except ImportError:
        pass
    else:
        try:
            with Image.open(path) as image:
                if image.mode.startswith("I"):  # 16-bit gray: scaled (convert("L") clips at 255)
                    return np.asarray(image, dtype=np.float64) * (255.0 / 65535.0)
                return np.asarray(image.convert("L"))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise ValueError(f"{path}: cannot read the PNG ({error})") from error
    content = path.read_bytes()
    if content[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    position, chunks, header = 8, [], None
    while position < len(content):
        if position + 8 > len(content):
            raise ValueError(f"{path}: corrupt PNG: truncated chunk header at byte {position}")
        length, kind = struct.unpack(">I4s", content[position:position + 8])
        body = content[position + 8:position + 8 + length]
        if len(body) != length:
            raise ValueError(f"{path}: corrupt PNG: truncated {kind.decode('ascii', 'replace')} chunk "
                             f"({len(body)} of {length} bytes)")
        position += 12 + length
        if kind == b"IHDR":
            if length != 13:
                raise ValueError(f"{path}: corrupt PNG: IHDR chunk of {length} bytes (13 expected)")
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path}: PNG without a header")
    width, height, depth, color, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"{path}: only 8-bit non-interlaced gray/RGB(A) PNGs are supported without Pillow")
    stride = width * channels
    expected = height * (stride + 1)
    try:  # inflates at most one byte past what the header allows (a small file can inflate to GBs)
        raw = np.frombuffer(zlib.decompressobj().decompress(b"".join(chunks), expected + 1),
                            dtype=np.uint8)
    except zlib.error as error:
        raise ValueError(f"{path}: corrupt PNG: bad image data ({error})") from error
    if raw.size != expected:
        found = "more" if raw.size > expected else f"{raw.size}"
        raise ValueError(f"{path}: corrupt PNG: {found} bytes of image data, {expected} expected "
                         f"for {width}x{height}")
    rows = raw.reshape(height, stride + 1)
    image = np.zeros((height, stride), dtype=np.int64)
    for y in range(height):  # undo the per-row filters (PNG spec, section 9)
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int64)
        if kind > 4:
            raise ValueError(f"{path}: corrupt PNG: row {y} has filter type {kind} (0..4 expected)")
        above = image[y - 1] if y else np.zeros(stride, dtype=np.int64)
        if kind in (0, 2):
            image[y] = (line + (above if kind == 2 else 0)) % 256
            continue
        for x in range(stride):
            left = image[y, x - channels] if x >= channels else 0
            upper_left = above[x - channels] if x >= channels else 0
            if kind == 1:
                predictor = left
            elif kind == 3:
                predictor = (left + above[x]) // 2
            else:  # Paeth
                estimate = left + above[x] - upper_left
                distances = (abs(estimate - left), abs(estimate - above[x]), abs(estimate - upper_left))
                predictor = (left, above[x], upper_left)[distances.index(min(distances))]
            image[y, x] = (line[x] + predictor) % 256
    image = image.reshape(height, width, channels).astype(np.uint8)
    return image[..., 0] if channels <= 2 else image


# ---------------------------------------------------------------- argument parsing


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a count of images, a batch size)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (a number of epochs)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return value


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nncore", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add_common(sub):
        sub.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
        sub.add_argument("--data-root", default=None, help="folder holding the IDX files (default: search)")
        sub.add_argument("--no-download", action="store_true", help="never download a dataset")

    train = commands.add_parser("train", help="train a model and write a checkpoint, metrics and curves")
    train.add_argument("--model", choices=["lenet5", "mlp"], default="lenet5")
    train.add_argument("--dataset", choices=sorted(NORMALIZATION), default="mnist")
    train.add_argument("--epochs", type=non_negative_int, default=10)
    train.add_argument("--batch-size", type=positive_int, default=64)
    train.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    train.add_argument("--lr", type=float, default=None, help="default: 0.05 for sgd, 0.001 for adam")
    train.add_argument("--momentum", type=float, default=None,
                       help=f"SGD momentum (default {DEFAULT_MOMENTUM}; sgd only)")
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument("--schedule", choices=["none", "cosine"], default="cosine",
                       help="learning-rate schedule over the epochs (default: cosine annealing to 0)")
    train.add_argument("--val-fraction", type=float, default=0.1,
                       help="last fraction of the train split held out for validation")
    train.add_argument("--early-stopping", type=non_negative_int, default=None, metavar="PATIENCE")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--limit", type=positive_int, default=None,
                       help="use only the first N train and test images")
    train.add_argument("--out", default=None, help="output folder (default runs/<model>-<dataset>)")
    train.add_argument("--float32-matmul-precision", choices=nncore._MATMUL_PRECISIONS, default="highest",
                       help="high: large GPU GEMMs may use TF32 tensor cores "
                            "(nncore.set_float32_matmul_precision; default highest, FP32)")
    add_common(train)
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("evaluate", help="accuracy of a checkpoint on a test set")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--dataset", choices=sorted(NORMALIZATION), default=None,
                          help="default: the dataset it was trained on")
    evaluate.add_argument("--limit", type=positive_int, default=None)
    add_common(evaluate)
    evaluate.set_defaults(run=cmd_evaluate)

    predict = commands.add_parser("predict", help="classify one image")
    predict.add_argument("--checkpoint", required=True)
    which = predict.add_mutually_exclusive_group(required=True)
    which.add_argument("--image", help="a 28x28 grayscale .png, .pgm or .npy (white on black)")
    which.add_argument("--index", type=int, help="index into the test split")
    predict.add_argument("--dataset", choices=sorted(NORMALIZATION), default=None)
    add_common(predict)
    predict.set_defaults(run=cmd_predict)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, with the checks that involve more than one option."""
    parser = make_parser()
    args = parser.parse_args(argv)
    # None means not given: an explicit --momentum with Adam would otherwise be silently ignored.
    if args.command == "train" and args.optimizer != "sgd" and args.momentum is not None:
        parser.error(f"train: --momentum is for --optimizer sgd; {args.optimizer} has no momentum")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"nncore {args.command}: error: {error}", file=sys.stderr)
        return 1
