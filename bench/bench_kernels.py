"""Kernel benchmarks: nncore against the field's yardsticks, measured side by side in one run.

CPU rows: SGEMM vs numpy.matmul (OpenBLAS), conv2d/pooling vs PyTorch CPU (when installed),
memory-bound kernels (pooling, im2col/col2im, ReLU) in GB/s vs the copy bandwidth.
GPU rows (when nncore has a CUDA device): SGEMM vs cuBLAS FP32 (TF32 off) through PyTorch or
CuPy, conv2d/pooling vs cuDNN through PyTorch, the memory-bound kernels vs a device copy.

    python bench/bench_kernels.py [--quick] [--json out.json] [--markdown out.md] [--plot out.png]
                                  [--device cpu|cuda|all] [--sgemm-only]

NNCORE_CUDA_SGEMM_TILE=128|64|32 makes the CUDA SGEMM use one tile configuration for every
shape (bench/gpu_check.sh runs the SGEMM rows once per setting to check the automatic choice).
Absolute times drift on shared machines; the ratio to the peer in the same run is the figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import nncore as nc
from nncore import _C


def _time(fn, sync=lambda: None, min_time=0.2, warmup=2, max_repeats=200) -> float:
    """Median seconds per call after warm-up, repeating until min_time has passed."""
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    start = time.perf_counter()
    while (time.perf_counter() - start < min_time or len(samples) < 3) and len(samples) < max_repeats:
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _time_pair(fn_a, fn_b, sync_a=lambda: None, sync_b=lambda: None, rounds=3,
               min_time=0.08, settle=0.12) -> tuple[float, float]:
    """Seconds per call of fn_a and fn_b, measured in alternating rounds (a, b, a, b, ...): each
    round's median, then the best round of each. On a shared machine a burst of other work then
    lands on both sides instead of on whichever happened to run during it. Each round starts
    after `settle` idle seconds: OpenBLAS's threads keep spinning ~0.1 s after a call (and
    OpenMP's briefly), which on a 2-core machine would take a core from the next round."""
    best_a = best_b = float("inf")
    for _ in range(rounds):
        time.sleep(settle)
        best_a = min(best_a, _time(fn_a, sync_a, min_time=min_time))
        time.sleep(settle)
        best_b = min(best_b, _time(fn_b, sync_b, min_time=min_time))
    return best_a, best_b


def training_gemm_shapes(batch: int) -> list[tuple[str, int, int, int, bool, bool]]:
    """(label, M, N, K, trans_a, trans_b) of every GEMM one training step of MLP-800 and
    LeNet-5 performs at this batch size (forward, weight gradient, input gradient)."""
    b = batch
    return [
        (f"mlp fc1 fwd  b{b}", b, 800, 784, False, True),
        (f"mlp fc1 dW   b{b}", 800, 784, b, True, False),
        (f"mlp fc2 fwd  b{b}", b, 10, 800, False, True),
        (f"mlp fc2 dW   b{b}", 10, 800, b, True, False),
        (f"mlp fc2 dx   b{b}", b, 800, 10, False, False),
        (f"lenet c1 fwd b{b}", 6, b * 784, 25, False, False),
        (f"lenet c1 dW  b{b}", 6, 25, b * 784, False, True),
        (f"lenet c2 fwd b{b}", 16, b * 100, 150, False, False),
        (f"lenet c2 dW  b{b}", 16, 150, b * 100, False, True),
        (f"lenet c2 dx  b{b}", 150, b * 100, 16, True, False),
        (f"lenet f1 fwd b{b}", b, 120, 400, False, True),
        (f"lenet f1 dW  b{b}", 120, 400, b, True, False),
        (f"lenet f1 dx  b{b}", b, 400, 120, False, False),
    ]


def _operands(rng, m, n, k, ta, tb):
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    return a, b


def bench_cpu_sgemm(sizes, batches, rng) -> list[dict]:
    rows = []
    cases = [(f"square {s}", s, s, s, False, False) for s in sizes]
    for batch in batches:
        cases += training_gemm_shapes(batch)
    for label, m, n, k, ta, tb in cases:
        a, b = _operands(rng, m, n, k, ta, tb)
        c_np = np.empty((m, n), np.float32)
        a_op, b_op = (a.T if ta else a), (b.T if tb else b)
        ta_nc, tb_nc = nc.tensor(a), nc.tensor(b)
        c_nc = nc.zeros((m, n))
        t_nc, t_np = _time_pair(lambda: _C.gemm_(ta_nc, tb_nc, c_nc, ta, tb, 1.0, 0.0),
                                lambda: np.matmul(a_op, b_op, out=c_np))
        err = float(np.abs(c_nc.numpy() - c_np).max() / (np.abs(c_np).max() + 1e-30))
        flops = 2.0 * m * n * k
        rows.append(dict(device="cpu", op="sgemm", case=label, m=m, n=n, k=k,
                         nncore_gflops=flops / t_nc / 1e9, peer_gflops=flops / t_np / 1e9,
                         peer="numpy (OpenBLAS)", ratio=t_np / t_nc, max_rel_err=err))
        _print_row(rows[-1])
    return rows


def _layer_cases(quick: bool):
    """(label, N, C, H, W, Cout, k, stride, pad) convolutions and pooling inputs of LeNet-5."""
    batches = [64] if quick else [64, 256]
    convs, pools = [], []
    for n in batches:
        convs += [(f"lenet conv1 b{n}", n, 1, 28, 28, 6, 5, 1, 2),
                  (f"lenet conv2 b{n}", n, 6, 14, 14, 16, 5, 1, 0)]
        pools += [(f"lenet pool1 b{n}", n, 6, 28, 28), (f"lenet pool2 b{n}", n, 16, 10, 10)]
    return convs, pools


def bench_layers(device: str, quick: bool, rng) -> list[dict]:
    """conv2d forward+backward (alone, and with ReLU and a 2x2 max pool after it) and 2x2
    pooling forward+backward vs PyTorch on the same device."""
    try:
        import torch
    except ImportError:
        print(f"  (PyTorch not installed: conv/pool rows on {device} skipped)")
        return []
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    tdev = "cuda" if device == "cuda" else "cpu"
    sync_nc = nc.cuda.synchronize if device == "cuda" else (lambda: None)
    sync_t = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    convs, pools = _layer_cases(quick)
    for label, n, c, h, w, cout, k, s, p in convs:
        x = rng.standard_normal((n, c, h, w), dtype=np.float32)
        wt = rng.standard_normal((cout, c, k, k), dtype=np.float32) * 0.1
        bias = np.zeros(cout, np.float32)
        x_nc, w_nc, b_nc = (nc.tensor(v, device=device) for v in (x, wt, bias))
        dw_nc, db_nc = nc.zeros(wt.shape, device=device), nc.zeros(bias.shape, device=device)
        y_nc = _C.conv2d_forward(x_nc, w_nc, b_nc, s, s, p, p)
        dy_nc = nc.tensor(np.ones(y_nc.shape, np.float32), device=device)

        def step_nc():
            _C.conv2d_forward(x_nc, w_nc, b_nc, s, s, p, p)
            _C.conv2d_backward(x_nc, w_nc, dy_nc, dw_nc, db_nc, s, s, p, p, True)

        x_t = torch.tensor(x, device=tdev, requires_grad=True)
        conv_t = torch.nn.Conv2d(c, cout, k, s, p).to(tdev)
        dy_t = torch.ones(y_nc.shape, device=tdev)

        def step_t():
            conv_t(x_t).backward(dy_t)

        t_nc, t_t = _time_pair(step_nc, step_t, sync_nc, sync_t)
        rows.append(dict(device=device, op="conv2d fwd+bwd", case=label, nncore_ms=t_nc * 1e3,
                         peer_ms=t_t * 1e3, peer=f"torch {torch.__version__}", ratio=t_t / t_nc))
        _print_row(rows[-1])

        # LeNet's block: convolution, ReLU, 2x2 max pool (nncore: one fused op each way).
        y_pool, _ = _C.conv2d_pool_forward(x_nc, w_nc, b_nc, s, s, p, p, True)
        dy_pool_nc = nc.tensor(np.ones(y_pool.shape, np.float32), device=device)
        dy_pool_t = torch.ones(y_pool.shape, device=tdev)
        pool_t = torch.nn.MaxPool2d(2)

        def block_nc():
            y, argmax = _C.conv2d_pool_forward(x_nc, w_nc, b_nc, s, s, p, p, True)
            _C.conv2d_pool_backward(x_nc, w_nc, dy_pool_nc, argmax, dw_nc, db_nc, s, s, p, p,
                                    True, y)

        def block_t():
            pool_t(torch.relu(conv_t(x_t))).backward(dy_pool_t)

        t_nc, t_t = _time_pair(block_nc, block_t, sync_nc, sync_t)
        rows.append(dict(device=device, op="conv2d+relu+max_pool2d fwd+bwd", case=label,
                         nncore_ms=t_nc * 1e3, peer_ms=t_t * 1e3,
                         peer=f"torch {torch.__version__}", ratio=t_t / t_nc))
        _print_row(rows[-1])
    for label, n, c, h, w in pools:
        x = rng.standard_normal((n, c, h, w), dtype=np.float32)
        x_nc = nc.tensor(x, device=device)
        for kind in ("max", "avg"):
            if kind == "max":
                def step_nc():
                    y, arg = _C.max_pool2d_forward(x_nc, 2, 2, 2, 2, 0, 0)
                    _C.max_pool2d_backward(y, arg, x_nc.shape)
                pool_t = torch.nn.MaxPool2d(2)
            else:
                def step_nc():
                    y = _C.avg_pool2d_forward(x_nc, 2, 2, 2, 2, 0, 0, True)
                    _C.avg_pool2d_backward(y, x_nc.shape, 2, 2, 2, 2, 0, 0, True)
                pool_t = torch.nn.AvgPool2d(2)
            x_t = torch.tensor(x, device=tdev, requires_grad=True)

            def step_t():
                y = pool_t(x_t)
                y.backward(y)

            t_nc, t_t = _time_pair(step_nc, step_t, sync_nc, sync_t)
            rows.append(dict(device=device, op=f"{kind}_pool2d fwd+bwd", case=label,
                             nncore_ms=t_nc * 1e3, peer_ms=t_t * 1e3,
                             peer=f"torch {torch.__version__}", ratio=t_t / t_nc))
            _print_row(rows[-1])
    return rows


def bench_bandwidth(device: str, quick: bool, rng) -> list[dict]:
    """Memory-bound kernels of a LeNet-5 step (pooling, im2col/col2im, ReLU) as effective GB/s:
    the bytes each must read and write over its time, beside the device's copy bandwidth for the
    same number of bytes measured in the same run (a buffer of half that size copied, so the
    copy too reads and writes that many bytes): ratio = kernel GB/s / copy GB/s."""
    sync = nc.cuda.synchronize if device == "cuda" else (lambda: None)
    try:
        import torch
        copy_name = "torch copy_"
        if device == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
            copy_name += f", {torch.get_num_threads()} threads"
        tdev = "cuda" if device == "cuda" else "cpu"
        sync_copy = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def make_copy(nbytes):
            src = torch.ones(max(1, nbytes // 8), device=tdev)
            dst = torch.empty_like(src)
            return lambda: dst.copy_(src)
    except ImportError:
        if device != "cpu":
            print(f"  (PyTorch not installed: no copy bandwidth on {device}; rows skipped)")
            return []
        copy_name, sync_copy = "numpy.copyto, 1 thread", (lambda: None)

        def make_copy(nbytes):
            src = np.ones(max(1, nbytes // 8), np.float32)
            dst = np.empty_like(src)
            return lambda: np.copyto(dst, src)

    batch = 64 if quick else 256
    T = lambda shape: nc.tensor(rng.standard_normal(shape, dtype=np.float32), device=device)
    pool_in = T((batch, 6, 28, 28))
    pool_out, argmax = _C.max_pool2d_forward(pool_in, 2, 2, 2, 2, 0, 0)
    avg_out = _C.avg_pool2d_forward(pool_in, 2, 2, 2, 2, 0, 0, True)
    conv1_in, conv2_in = T((batch, 1, 28, 28)), T((batch, 6, 14, 14))
    col1 = _C.im2col(conv1_in, 5, 5, 1, 1, 2, 2)
    col2 = _C.im2col(conv2_in, 5, 5, 1, 1, 0, 0)
    f = 4  # bytes per float or int32
    size = lambda t: int(np.prod(t.shape))
    n_in, n_out = size(pool_in), size(pool_out)
    cases = [  # (label, fn, bytes read + written)
        ("max_pool2d fwd pool1", lambda: _C.max_pool2d_forward(pool_in, 2, 2, 2, 2, 0, 0),
         f * (n_in + 2 * n_out)),
        ("max_pool2d bwd pool1", lambda: _C.max_pool2d_backward(pool_out, argmax, pool_in.shape),
         f * (2 * n_out + n_in)),
        ("avg_pool2d fwd pool1", lambda: _C.avg_pool2d_forward(pool_in, 2, 2, 2, 2, 0, 0, True),
         f * (n_in + n_out)),
        ("avg_pool2d bwd pool1",
         lambda: _C.avg_pool2d_backward(avg_out, pool_in.shape, 2, 2, 2, 2, 0, 0, True),
         f * (n_out + n_in)),
        ("relu fwd conv1 out", lambda: _C.relu_forward(pool_in), f * 2 * n_in),
        ("im2col conv1", lambda: _C.im2col(conv1_in, 5, 5, 1, 1, 2, 2),
         f * (size(conv1_in) + size(col1))),
        ("col2im conv1", lambda: _C.col2im(col1, conv1_in.shape, 5, 5, 1, 1, 2, 2),
         f * (size(col1) + size(conv1_in))),
        ("im2col conv2", lambda: _C.im2col(conv2_in, 5, 5, 1, 1, 0, 0),
         f * (size(conv2_in) + size(col2))),
        ("col2im conv2", lambda: _C.col2im(col2, conv2_in.shape, 5, 5, 1, 1, 0, 0),
         f * (size(col2) + size(conv2_in))),
    ]
    rows = []
    for label, fn, nbytes in cases:
        t_nc, t_copy = _time_pair(fn, make_copy(nbytes), sync, sync_copy)
        rows.append(dict(device=device, op="bandwidth", case=f"{label} b{batch}",
                         bytes=nbytes, nncore_gbs=nbytes / t_nc / 1e9,
                         peer_gbs=nbytes / t_copy / 1e9, peer=copy_name, ratio=t_copy / t_nc))
        _print_row(rows[-1])
    return rows


def bench_gpu_sgemm(sizes, batches, rng) -> list[dict]:
    """nncore's CUDA SGEMM vs cuBLAS FP32 with TF32 disabled, through PyTorch (or CuPy)."""
    try:
        import torch
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        peer_name = f"cuBLAS FP32 via torch {torch.__version__} (TF32 off)"

        def peer(a, b, ta, tb):
            a_t, b_t = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
            a_op, b_op = (a_t.t() if ta else a_t), (b_t.t() if tb else b_t)
            out = torch.empty((a_op.shape[0], b_op.shape[1]), device="cuda")
            return (lambda: torch.matmul(a_op, b_op, out=out)), torch.cuda.synchronize
    except ImportError:
        import cupy
        peer_name = f"cuBLAS FP32 via cupy {cupy.__version__}"

        def peer(a, b, ta, tb):
            a_c, b_c = cupy.asarray(a), cupy.asarray(b)
            a_op, b_op = (a_c.T if ta else a_c), (b_c.T if tb else b_c)
            out = cupy.empty((a_op.shape[0], b_op.shape[1]), dtype=cupy.float32)
            return (lambda: cupy.matmul(a_op, b_op, out=out)), cupy.cuda.Device().synchronize
    rows = []
    cases = [(f"square {s}", s, s, s, False, False) for s in sizes]
    for batch in batches:
        cases += training_gemm_shapes(batch)
    for label, m, n, k, ta, tb in cases:
        a, b = _operands(rng, m, n, k, ta, tb)
        a_nc, b_nc = nc.tensor(a, device="cuda"), nc.tensor(b, device="cuda")
        c_nc = nc.zeros((m, n), device="cuda")
        run_peer, sync_peer = peer(a, b, ta, tb)
        t_nc, t_peer = _time_pair(lambda: _C.gemm_(a_nc, b_nc, c_nc, ta, tb, 1.0, 0.0), run_peer,
                                  nc.cuda.synchronize, sync_peer)
        ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64) \
            if m * n * k <= 2048 ** 3 else None
        err = float("nan") if ref is None else \
            float(np.abs(c_nc.numpy() - ref).max() / (np.abs(ref).max() + 1e-30))
        flops = 2.0 * m * n * k
        rows.append(dict(device="cuda", op="sgemm", case=label, m=m, n=n, k=k,
                         nncore_gflops=flops / t_nc / 1e9, peer_gflops=flops / t_peer / 1e9,
                         peer=peer_name, ratio=t_peer / t_nc, max_rel_err=err))
        _print_row(rows[-1])
    return rows


def _print_row(row: dict) -> None:
    if "nncore_gflops" in row:
        speed = f"{row['nncore_gflops']:9.1f} vs {row['peer_gflops']:9.1f} GFLOP/s"
    elif "nncore_gbs" in row:
        speed = f"{row['nncore_gbs']:9.1f} vs {row['peer_gbs']:9.1f} GB/s   "
    else:
        speed = f"{row['nncore_ms']:8.3f} vs {row['peer_ms']:8.3f} ms   "
    print(f"  {row['device']:4s} {row['op']:18s} {row['case']:20s} {speed}  ratio {row['ratio']:5.2f}",
          flush=True)


def source_commit() -> str:
    """The nncore commit measured: this checkout's HEAD, "-dirty" when the library's sources
    (not the results this writes) have local edits."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", *args], cwd=os.path.dirname(os.path.abspath(__file__)),
                              capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        head = git("rev-parse", "--short=7", "HEAD")
        edited = git("status", "--porcelain", "--", "../src", "../cuda", "../python",
                     "../CMakeLists.txt", "../pyproject.toml")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("-dirty" if edited else "")


def environment() -> dict:
    env = dict(commit=source_commit(), python=platform.python_version(), numpy=np.__version__,
               nncore=nc.__file__, machine=platform.machine(),
               processor=_cpu_name(), cpus=os.cpu_count(), cpu_gemm_kernel=_C.cpu_gemm_kernel(),
               omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
               cuda_compiled=nc.cuda.is_compiled(), cuda_available=nc.cuda.is_available())
    if nc.cuda.is_available():
        env["gpu"] = nc.cuda.device_name()
        env["cuda_sgemm_tile"] = os.environ.get("NNCORE_CUDA_SGEMM_TILE", "auto")
    try:
        import torch
        env["torch"] = torch.__version__
    except ImportError:
        pass
    return env


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown_table(rows: list[dict], env: dict) -> str:
    lines = [f"Machine: {env['processor']} ({env['cpus']} CPUs), CPU GEMM kernel "
             f"`{env['cpu_gemm_kernel']}`" + (f"; GPU: {env['gpu']}" if "gpu" in env else "")
             + f"; nncore at {env['commit']}", "",
             "| device | op | case | nncore | peer | peer name | ratio (peer time / nncore time) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "nncore_gflops" in r:
            ours, theirs = f"{r['nncore_gflops']:.1f} GFLOP/s", f"{r['peer_gflops']:.1f} GFLOP/s"
        elif "nncore_gbs" in r:
            ours, theirs = f"{r['nncore_gbs']:.1f} GB/s", f"{r['peer_gbs']:.1f} GB/s"
        else:
            ours, theirs = f"{r['nncore_ms']:.3f} ms", f"{r['peer_ms']:.3f} ms"
        lines.append(f"| {r['device']} | {r['op']} | {r['case']} | {ours} | {theirs} | "
                     f"{r['peer']} | {r['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def plot_sgemm(rows: list[dict], env: dict, path: str) -> bool:
    """GFLOP/s against size for the square SGEMM rows, a panel per device, nncore beside its
    peer; False (nothing written) without matplotlib or without such rows."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    square = [r for r in rows if r["op"] == "sgemm" and r["case"].startswith("square")]
    devices = sorted({r["device"] for r in square})
    if not devices:
        return False
    fig, axes = plt.subplots(1, len(devices), figsize=(6.5 * len(devices), 4.2), squeeze=False)
    for ax, device in zip(axes[0], devices):
        mine = [r for r in square if r["device"] == device]
        sizes = [r["m"] for r in mine]
        ax.plot(sizes, [r["nncore_gflops"] for r in mine], "o-", label="nncore")
        ax.plot(sizes, [r["peer_gflops"] for r in mine], "s--", label=mine[0]["peer"])
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(size) for size in sizes], rotation=45)
        ax.set_xlabel("M = N = K")
        ax.set_ylabel("GFLOP/s")
        name = env["processor"] + f", {env['cpus']} CPUs" if device == "cpu" else env.get("gpu", "GPU")
        ax.set_title(f"{device.upper()} SGEMM (FP32), {name}", fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes (a smoke run)")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--sgemm-only", action="store_true",
                        help="only the SGEMM rows (e.g. once per NNCORE_CUDA_SGEMM_TILE setting)")
    parser.add_argument("--json", default="bench/results/kernels.json", help="JSON output path")
    parser.add_argument("--markdown", default="bench/results/kernels.md", help="Markdown table path")
    parser.add_argument("--plot", default="bench/results/sgemm_gflops.png",
                        help="GFLOP/s-vs-size plot of the square SGEMM rows (needs matplotlib)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    env = environment()
    print("environment:", json.dumps(env))
    rows: list[dict] = []
    if args.device in ("cpu", "all"):
        sizes = [128, 512, 1024] if args.quick else [64, 128, 192, 256, 384, 512, 768, 1024,
                                                     1536, 2048]
        print("CPU SGEMM, nncore vs numpy.matmul (same run):")
        rows += bench_cpu_sgemm(sizes, [256] if args.quick else [64, 256], rng)
        if not args.sgemm_only:
            print("CPU conv2d / pooling, nncore vs PyTorch:")
            rows += bench_layers("cpu", args.quick, rng)
            print("CPU memory-bound kernels, GB/s vs the copy bandwidth (same run):")
            rows += bench_bandwidth("cpu", args.quick, rng)
    if args.device in ("cuda", "all"):
        if nc.cuda.is_available():
            sizes = [512, 1024, 4096] if args.quick else [256, 512, 1024, 2048, 4096, 8192]
            print("GPU SGEMM, nncore vs cuBLAS (same run):")
            rows += bench_gpu_sgemm(sizes, [256] if args.quick else [64, 256, 1024], rng)
            if not args.sgemm_only:
                print("GPU conv2d / pooling, nncore vs PyTorch (cuDNN):")
                rows += bench_layers("cuda", args.quick, rng)
                print("GPU memory-bound kernels, GB/s vs the device-to-device copy bandwidth:")
                rows += bench_bandwidth("cuda", args.quick, rng)
        else:
            print("no CUDA device: GPU rows skipped")
    for path, text in ((args.json, json.dumps(dict(environment=env, rows=rows), indent=1)),
                       (args.markdown, markdown_table(rows, env))):
        if path:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
    print(f"wrote {args.json} and {args.markdown}")
    if args.plot:
        if plot_sgemm(rows, env, args.plot):
            print(f"wrote {args.plot}")
        else:
            print("no plot: needs matplotlib (pip install .[plot]) and SGEMM rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
