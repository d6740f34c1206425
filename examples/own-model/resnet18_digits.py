"""Unlearn a torchvision ResNet-18 that you trained yourself, on your own Dataset, from Python.

    python examples/own-model/resnet18_digits.py            # a few minutes on a 2-core CPU
    python examples/own-model/resnet18_digits.py --epochs 1 # a quick look

Steps, as in a notebook: (1) your Dataset, (2) your training loop, (3) `unlearnkit.unlearn`
with CoUn's contrastive module, Retrain for comparison, (4) save the weights and
unlearn the same model with the CLI.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch
import torchvision
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, Dataset

import unlearnkit as uk


class Digits(Dataset):
    """scikit-learn's 8x8 digits, 1 channel, split 80/20 as `--data digits` splits them; training items get a
    random shift of up to one pixel (your own transform: each read is a new view)."""

    def __init__(self, train: bool, augment: bool):
        digits = load_digits()
        labels = torch.from_numpy(digits.target)
        part = train_test_split(range(len(labels)), test_size=0.2, stratify=labels.numpy(), random_state=0)[0 if train else 1]
        images = torch.from_numpy(digits.images).float().div(16).unsqueeze(1)[part]
        self.images, self.targets = (images - 0.3053) / 0.3759, labels[part].tolist()
        self.augment = augment

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.augment:
            dy, dx = torch.randint(-1, 2, (2,)).tolist()
            x = torch.roll(x, (dy, dx), dims=(1, 2))
        return x, self.targets[i]


def train_resnet(train_set: Dataset, epochs: int) -> nn.Module:
    """Your own training loop (any will do)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # grey images
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(train_set, batch_size=64, shuffle=True)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimiser.step()
    return model.eval()


def main(epochs: int = 5, out: Path = Path("runs/own-model"), cli: bool = True) -> uk.UnlearnResult:
    train_set, test_set = Digits(train=True, augment=True), Digits(train=False, augment=False)
    model = train_resnet(train_set, epochs)

    # Forget 5% of the training set; unlearn by fine-tuning on the rest, with CoUn's contrastive module.
    forget = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(1))[: len(train_set) // 20]
    result = uk.unlearn(
        model, train_set, forget=forget, test_set=test_set,
        method="ft", augment=["coun-cl"], params={"method": {"epochs": max(epochs // 2, 1), "lr": 0.01}},
        train_eval_set=Digits(train=True, augment=False),  # the training samples without your random shift
        retrain=True, train={"epochs": epochs, "lr": 0.01, "batch_size": 64},  # Retrain: your recipe, on the retain set
        progress=True,
    )
    from rich.console import Console

    Console().print(result.table())
    print("unlearned model:", type(result.model).__name__, "| RA/UA/TA/MIA:",
          " / ".join(f"{result.metrics[k]:.1f}" for k in ("RA", "UA", "TA", "MIA")))

    # The unlearned network is your own ResNet: save it as usual.
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, out / "unlearned.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "original.safetensors")
    print(f"weights: {out / 'unlearned.safetensors'}")

    # The same model from the command line: torchvision:resnet18 on --data digits (the same images and split),
    # starting from your weights, without paying for a Retrain.
    command = ["unlearn", "run", "--data", "digits", "--model", "torchvision:resnet18",
               "--original", str(out / "original.safetensors"), "--method", "ft", "--augment", "coun-cl",
               "--no-retrain", "--set", f"method.params.epochs={max(epochs // 2, 1)}", "--set", "method.params.lr=0.01",
               "--out", str(out / "cli-bundle"), "--overwrite", "--quiet"]
    print("$", " ".join(command))
    if cli:
        subprocess.run([str(Path(sys.executable).parent / "unlearn"), *command[1:]], check=True)  # this venv's
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/own-model"))
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI run at the end")
    args = parser.parse_args()
    main(args.epochs, args.out, not args.no_cli)
