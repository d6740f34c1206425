"""The toolkit's training loop against a plain PyTorch loop: same model, data, batches, augmentation, optimiser.

    python benchmarks/loop_overhead.py                      # ResNet-18 (width 16), 2048 Fashion-MNIST-shaped images
    python benchmarks/loop_overhead.py --model small-cnn --rounds 7

Both loops train one epoch per round from the same starting weights; rounds alternate
(plain, toolkit, plain, toolkit, ...) so that drift in the machine's speed hits both.
It prints each round's seconds and the ratio of the medians. Target on CPU: <= 1.03.
Run it alone: another torch process on the same cores makes any timing meaningless.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
import torch.nn.functional as F

from unlearnkit.api import TrainParams
from unlearnkit.data.forget import Split
from unlearnkit.data.images import ImageSet, Transform
from unlearnkit.engine import CostMeter, RunData, fit, retain_cross_entropy
from unlearnkit.engine.streams import shuffled
from unlearnkit.engine.train import lr_factor
from unlearnkit.models import resnet18, small_cnn


def plain_epoch(model, images: ImageSet, transform: Transform, params: TrainParams, generator: torch.Generator) -> None:
    """The loop a PyTorch user would write, with the toolkit's batch augmentation (a fair comparison)."""
    optimiser = torch.optim.SGD(model.parameters(), lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay)
    chunks = shuffled(torch.arange(len(images.train_y)), params.batch_size, generator)
    model.train()
    for i, index in enumerate(chunks):
        for group in optimiser.param_groups:
            group["lr"] = params.lr * lr_factor(params, i / len(chunks))
        x = transform.train_view(images.train_x[index], generator)
        loss = F.cross_entropy(model(x), images.train_y[index])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()


def toolkit_epoch(model, data: RunData, params: TrainParams, generator: torch.Generator) -> None:
    fit(model, data, "all", retain_cross_entropy, params, generator=generator, cost=CostMeter(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["resnet18", "small-cnn"], default="resnet18")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (the cores you have)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    n = args.images
    images = ImageSet(torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(n) % 10,
                      torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.zeros(2, dtype=torch.long),
                      [str(i) for i in range(10)])
    transform = Transform((0.286,), (0.353,), crop_padding=2, flip=True)
    data = RunData(images, transform, Split(forget=torch.arange(0), retain=torch.arange(n)), torch.device("cpu"))
    params = TrainParams(epochs=1, lr=0.05, batch_size=args.batch_size, schedule="cosine")
    torch.manual_seed(0)
    start = resnet18(1, 10, width=args.width) if args.model == "resnet18" else small_cnn(1, 10, width=args.width, image_size=28)

    times: dict[str, list[float]] = {"plain": [], "toolkit": []}
    plain_epoch(copy.deepcopy(start), images, transform, params, torch.Generator().manual_seed(0))  # warm-up
    for r in range(args.rounds):
        for kind in ("plain", "toolkit"):
            model = copy.deepcopy(start)
            gen = torch.Generator().manual_seed(r)
            t = time.perf_counter()
            if kind == "plain":
                plain_epoch(model, images, transform, params, gen)
            else:
                toolkit_epoch(model, data, params, gen)
            times[kind].append(time.perf_counter() - t)
        print(f"round {r + 1}: plain {times['plain'][-1]:.2f} s, toolkit {times['toolkit'][-1]:.2f} s", flush=True)
    plain, toolkit = statistics.median(times["plain"]), statistics.median(times["toolkit"])
    print(f"\n{args.model} width {args.width}, {n} images 1x28x28, batch {args.batch_size}, {args.threads} threads, "
          f"{args.rounds} alternating rounds of one epoch")
    print(f"median epoch: plain {plain:.2f} s, toolkit {toolkit:.2f} s; ratio toolkit/plain {toolkit / plain:.3f} "
          f"(target <= 1.03: {'ok' if toolkit / plain <= 1.03 else 'OVER'})")


if __name__ == "__main__":
    main()
