"""Training throughput (images/s) and model FLOP utilisation of the toolkit's loop on a GPU, per compute setting.

    python benchmarks/gpu_throughput.py                         # ResNet-18 (width 64), CIFAR-shaped 3x32x32, batch 256
    python benchmarks/gpu_throughput.py --steps 100 --peak-tflops 989,495
    python benchmarks/gpu_throughput.py --device cpu --width 8 --steps 2 --settings fp32   # a smoke run without a GPU

Each setting (precision x channels-last x compile) trains a fresh copy of the same model through
`unlearnkit.engine.fit`, the loop Original, Retrain and every method use, with the data already on
the device and the toolkit's batch augmentation. After warm-up steps (which include compilation),
the timed steps are synchronised before and after. Model FLOPs per image are the forward pass's
(torch's FLOP counter) times 3 for forward and backward; MFU is achieved FLOP/s over the device's
dense peak for the setting's precision: bf16/fp16 tensor cores, or TF32 for fp32 (cuDNN runs fp32
convolutions on TF32 tensor cores by default). Give the peaks with --peak-tflops; known GPUs
have theirs below. Run it alone on the device.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import time

import torch

from unlearnkit.api import TrainParams
from unlearnkit.data.forget import Split
from unlearnkit.data.images import ImageSet, Transform
from unlearnkit.engine import CostMeter, RunData, fit, forward_flops, retain_cross_entropy
from unlearnkit.engine.compute import Compute, repeatable_kernels
from unlearnkit.models import resnet18

# Dense peaks in TFLOP/s (half precision, TF32) from NVIDIA's data sheets, without structured sparsity.
PEAKS = {"H100 80GB HBM3": (989.4, 494.7), "H100 PCIe": (756.0, 378.0), "H200": (989.4, 494.7), "A100": (312.0, 156.0)}


def two_peaks(text: str) -> tuple[float, float]:
    """--peak-tflops HALF,TF32."""
    try:
        half, tf32 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give two numbers, HALF,TF32 (e.g. 989.4,494.7)") from None
    return half, tf32


def peaks(device: torch.device, given: tuple[float, float] | None) -> tuple[float, float] | None:
    """(half-precision, TF32) dense peak TFLOP/s of the device: given, or known by its name; None if unknown."""
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((p for known, p in PEAKS.items() if known in name), None)


def setting_label(compute: Compute) -> str:
    return f"{compute.precision}{' channels-last' if compute.channels_last else ''}{' compiled' if compute.compile else ''}"


def images_per_second(start, data: RunData, compute: Compute, batch: int, warmup: int, timed: int) -> float:
    """Train a copy of `start` for warmup + timed steps with `compute`; images per second over the timed steps."""
    model = compute.prepare(copy.deepcopy(start))
    params = TrainParams(epochs=1, lr=0.05, batch_size=batch)

    def epoch_of(steps: int) -> RunData:
        """The data with exactly `steps` batches of training images, so that one epoch is `steps` steps."""
        return RunData(data.images, data.transform, Split(forget=torch.arange(0), retain=torch.arange(batch * steps)),
                       data.device)

    def train(part: RunData, seed: int) -> None:
        fit(model, part, "retain", retain_cross_entropy, params, generator=torch.Generator().manual_seed(seed),
            cost=CostMeter(1), compute=compute)

    warm, measured = epoch_of(warmup), epoch_of(timed)
    train(warm, 0)
    if data.device.type == "cuda":
        torch.cuda.synchronize(data.device)
    began = time.perf_counter()
    train(measured, 1)
    if data.device.type == "cuda":
        torch.cuda.synchronize(data.device)
    return batch * timed / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--width", type=int, default=64, help="ResNet-18's first-layer channels (64: the standard model)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (compilation happens here)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per setting")
    parser.add_argument("--settings", default="all", help="all (every precision x channels-last x compile), or "
                        "comma-separated precisions (fp32,bf16,fp16) in a run's default layout, uncompiled")
    parser.add_argument("--peak-tflops", type=two_peaks, default=None, help="HALF,TF32 dense peaks of the device, for MFU")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here; this benchmark measures a GPU (--device cpu for a smoke run)")
    repeatable_kernels(device)  # the kernels a run uses: deterministic cuDNN, no autotuning
    n = args.batch_size * max(args.warmup, args.steps)
    g = torch.Generator().manual_seed(0)
    images = ImageSet(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 10,
                      torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(2, dtype=torch.long),
                      [str(i) for i in range(10)])
    transform = Transform((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), crop_padding=4, flip=True)
    data = RunData(images, transform, Split(forget=torch.arange(0), retain=torch.arange(n)), device)
    torch.manual_seed(0)
    start = resnet18(3, 10, width=args.width)
    flops_per_image = 3 * forward_flops(start, torch.zeros(1, 3, 32, 32))
    peak = peaks(device, args.peak_tflops)

    precisions = ["fp32", "bf16"] if args.settings == "all" else args.settings.split(",")
    layouts = [False, True] if args.settings == "all" else [device.type == "cuda"]
    compiles = [False, True] if args.settings == "all" else [False]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}: ResNet-18 width {args.width}, 3x32x32, batch {args.batch_size}, {args.warmup} warm-up + "
          f"{args.steps} timed steps; {flops_per_image / 1e9:.3f} GFLOP per image (forward + backward)")
    print("| setting | images/s | MFU |\n| --- | ---: | ---: |")
    for precision, channels_last, compiled in itertools.product(precisions, layouts, compiles):
        compute = Compute(device, precision, channels_last, compiled)  # type: ignore[arg-type]
        rate = images_per_second(start, data, compute, args.batch_size, args.warmup, args.steps)
        mfu = "—"
        if peak is not None:
            mfu = f"{rate * flops_per_image / (1e12 * (peak[1] if precision == 'fp32' else peak[0])):.1%}"
        print(f"| {setting_label(compute)} | {rate:,.0f} | {mfu} |", flush=True)


if __name__ == "__main__":
    main()
