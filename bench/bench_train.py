"""End-to-end training throughput: LeNet-5 and MLP-800, nncore vs PyTorch, same model, same
batch, same run. One training step = forward + loss + backward + SGD(momentum) update.

    python bench/bench_train.py [--batches 64 256 1024] [--device cpu|cuda|all] [--threads N]
                                [--float32-matmul-precision highest|high]

Each (framework, model, batch, device) runs in its own subprocess so that peak memory (resident
set on the CPU; allocator high-water mark on the GPU) belongs to that run alone.
Writes bench/results/train.json and bench/results/train.md. The GPU rows are FP32 unless
--float32-matmul-precision high, which lets both frameworks use TF32 tensor cores (nncore's
set_float32_matmul_precision; PyTorch's allow_tf32 for matmul and cuDNN).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _input_shape(model: str, batch: int) -> tuple:
    return (batch, 1, 28, 28) if model == "lenet5" else (batch, 784)


def _measure(step, sync, min_time: float, min_steps: int) -> float:
    """Images per step / seconds per step, after warm-up."""
    for _ in range(3):
        step()
    sync()
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < min_time:
        step()
        steps += 1
    sync()
    return (time.perf_counter() - start) / steps


def worker_nncore(model: str, batch: int, device: str, min_time: float, precision: str) -> dict:
    import nncore as nc
    from nncore import models, nn, optim
    nc.manual_seed(0)
    nc.set_float32_matmul_precision(precision)
    net = models.lenet5(device=device) if model == "lenet5" else models.mlp(784, 800, 10, device=device)
    net.train()
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = nc.tensor(rng.random(_input_shape(model, batch), dtype=np.float32), device=device)
    y = nc.tensor(rng.integers(0, 10, batch).astype(np.int32), device=device)

    def step():
        out = net.forward(x)
        loss_fn.forward_tensor(out, y)
        net.backward(loss_fn.backward(), need_dx=False)
        opt.step()
        opt.zero_grad()

    on_gpu = device == "cuda"
    if on_gpu:
        nc.cuda.reset_peak_memory_stats()
    seconds = _measure(step, nc.cuda.synchronize if on_gpu else (lambda: None), min_time, 5)
    peak = nc.cuda.memory_stats()["peak_allocated_bytes"] if on_gpu else _peak_rss_bytes()
    return dict(framework=f"nncore {nc.__version__}", images_per_s=batch / seconds, peak_bytes=peak)


def worker_torch(model: str, batch: int, device: str, min_time: float, threads: int,
                 precision: str) -> dict:
    import torch
    torch.manual_seed(0)
    if device == "cpu":
        torch.set_num_threads(threads)
    else:  # cuDNN's convolutions allow TF32 by default: set both, either way
        torch.backends.cudnn.allow_tf32 = precision == "high"
        torch.backends.cuda.matmul.allow_tf32 = precision == "high"
    t = torch.nn
    if model == "lenet5":
        net = t.Sequential(t.Conv2d(1, 6, 5, padding=2), t.ReLU(), t.MaxPool2d(2),
                           t.Conv2d(6, 16, 5), t.ReLU(), t.MaxPool2d(2), t.Flatten(),
                           t.Linear(400, 120), t.ReLU(), t.Linear(120, 84), t.ReLU(), t.Linear(84, 10))
    else:
        net = t.Sequential(t.Linear(784, 800), t.ReLU(), t.Linear(800, 10))
    net = net.to(device)
    loss_fn = t.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.random(_input_shape(model, batch), dtype=np.float32), device=device)
    y = torch.tensor(rng.integers(0, 10, batch), device=device)

    def step():
        opt.zero_grad(set_to_none=False)
        loss_fn(net(x), y).backward()
        opt.step()

    on_gpu = device == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    seconds = _measure(step, torch.cuda.synchronize if on_gpu else (lambda: None), min_time, 5)
    peak = torch.cuda.max_memory_allocated() if on_gpu else _peak_rss_bytes()
    return dict(framework=f"torch {torch.__version__}", images_per_s=batch / seconds,
                peak_bytes=peak)


def _peak_rss_bytes() -> int:
    """Peak resident set of this process. VmHWM belongs to the process image; getrusage's
    ru_maxrss would carry the parent's peak across fork + exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run_worker(framework, model, batch, device, min_time, threads, precision) -> dict | None:
    cmd = [sys.executable, __file__, "--worker", framework, model, str(batch), device,
           "--min-time", str(min_time), "--threads", str(threads),
           "--float32-matmul-precision", precision]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print(f"  {framework} {model} b{batch} {device}: failed\n{done.stderr[-2000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=4, metavar=("FRAMEWORK", "MODEL", "BATCH", "DEVICE"))
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--models", nargs="+", default=["lenet5", "mlp"])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="CPU threads for both frameworks (OMP_NUM_THREADS / torch)")
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds timed per row")
    parser.add_argument("--float32-matmul-precision", choices=["highest", "high"],
                        default="highest", help="high: TF32 tensor cores on the GPU, both frameworks")
    parser.add_argument("--json", default="bench/results/train.json")
    parser.add_argument("--markdown", default="bench/results/train.md")
    args = parser.parse_args(argv)

    if args.worker:
        framework, model, batch, device = args.worker
        precision = args.float32_matmul_precision
        if framework == "nncore":
            result = worker_nncore(model, int(batch), device, args.min_time, precision)
        else:
            result = worker_torch(model, int(batch), device, args.min_time, args.threads, precision)
        print(json.dumps(result))
        return 0

    import nncore as nc
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not nc.cuda.is_available():
        print("no CUDA device: GPU rows skipped")
        devices.remove("cuda")
    if importlib.util.find_spec("torch") is not None:  # not imported here: workers measure memory
        frameworks = ["nncore", "torch"]
    else:
        print("PyTorch not installed: nncore rows only (pip install torch for the comparison)")
        frameworks = ["nncore"]
    rows = []
    for device in devices:
        for model in args.models:
            for batch in args.batches:
                results = {fw: _run_worker(fw, model, batch, device, args.min_time, args.threads,
                                           args.float32_matmul_precision)
                           for fw in frameworks}
                ours, theirs = results["nncore"], results.get("torch")
                if ours is None:
                    continue
                row = dict(device=device, model=model, batch=batch, threads=args.threads,
                           float32_matmul_precision=args.float32_matmul_precision,
                           nncore_images_per_s=ours["images_per_s"],
                           nncore_peak_mib=ours["peak_bytes"] / 2**20)
                if theirs:
                    row.update(torch=theirs["framework"], torch_images_per_s=theirs["images_per_s"],
                               torch_peak_mib=theirs["peak_bytes"] / 2**20,
                               speedup=ours["images_per_s"] / theirs["images_per_s"])
                rows.append(row)
                print(f"  {device:4s} {model:6s} batch {batch:5d}: nncore {row['nncore_images_per_s']:9.0f} img/s "
                      f"({row['nncore_peak_mib']:.0f} MiB)" +
                      (f" | torch {row['torch_images_per_s']:9.0f} img/s ({row['torch_peak_mib']:.0f} MiB)"
                       f" | speedup {row['speedup']:.2f}x" if theirs else ""), flush=True)
    from bench_kernels import environment  # the same record as the kernel table's

    env = environment()
    memory_note = "peak memory: resident set (CPU) / allocator high-water mark (GPU)"
    precision = ("FP32" if args.float32_matmul_precision == "highest"
                 else "float32 matmul precision 'high' (TF32 tensor cores allowed on the GPU)")
    lines = [f"nncore at {env['commit']}; threads: {args.threads}; {precision}; {memory_note}.", "",
             "| device | model | batch | nncore img/s | torch img/s | speedup | nncore MiB | torch MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['device']} | {r['model']} | {r['batch']} | {r['nncore_images_per_s']:.0f} | "
                     f"{r.get('torch_images_per_s', float('nan')):.0f} | {r.get('speedup', float('nan')):.2f} | "
                     f"{r['nncore_peak_mib']:.0f} | {r.get('torch_peak_mib', float('nan')):.0f} |")
    for path, text in ((args.json, json.dumps(dict(environment=env, rows=rows), indent=1)),
                       (args.markdown, "\n".join(lines) + "\n")):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    print(f"wrote {args.json} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
