"""The same training run in PyTorch, side by side with ``npsenet train``.

    python benchmarks/pytorch_reference.py --data-dir ../shared/data/cifar10-subset \
        --epochs 30 --out runs/pytorch-se_resnet20-cifar10

What is the same as ``npsenet train`` with the same flags:

* the architecture: SE-ResNet (or ResNet) for CIFAR written below in PyTorch, with the
  same state_dict keys, the SE block after the residual branch's last BN (reduction 16,
  no SE biases, hidden width max(1, C // 16));
* the initial weights: an npsenet model is built with ``ns.manual_seed(seed)`` and its
  state_dict is copied in, so both runs start from identical arrays;
* the data: loaded, cut (``--limit-train``/``--limit-test``), normalised with the
  training set's per-channel statistics and augmented (pad-4 crop, flip) by ``ns.data``'s
  BatchLoader with the same seed, so every batch is the same array;
* the recipe: SGD (lr, momentum 0.9, weight decay 5e-4), the learning rate set every
  iteration by the same formula (linear warm-up, then cosine; or /10 at 50% and 75%),
  batch size, epochs, label smoothing.

Floating-point sums happen in another order, so the runs drift apart after a few steps;
what should match is the accuracy they reach. The script prints each epoch's test
accuracy and seconds, and writes ``metrics.csv`` (the columns of ``npsenet train``).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

import npsenet as ns
from npsenet import train as ns_train

try:
    import torch
    from torch import nn
except ImportError:  # PyTorch is optional: only this reference needs it
    sys.exit("benchmarks/pytorch_reference.py needs PyTorch (pip install torch, CPU build).")


class SEBlock(nn.Module):
    """s = sigmoid(fc2(relu(fc1(mean_hw(u))))); out = u * s."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, u):
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(u.mean(dim=(2, 3))))))
        return u * s[:, :, None, None]


class BasicBlock(nn.Module):
    """relu(SE(bn2(conv2(relu(bn1(conv1(x)))))) + shortcut(x))."""

    def __init__(self, in_channels, planes, stride, se):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SEBlock(planes) if se else None
        self.downsample = None
        if stride != 1 or in_channels != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.se is not None:
            out = self.se(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class CifarResNet(nn.Module):
    """3x3 stem (16), three stages of (depth - 2) / 6 blocks (16/32/64), pool, fc."""

    def __init__(self, depth, num_classes, se):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        channels = 16
        for stage, planes in enumerate((16, 32, 64), start=1):
            blocks = []
            for i in range((depth - 2) // 6):
                blocks.append(BasicBlock(channels, planes, 2 if stage > 1 and i == 0 else 1, se))
                channels = planes
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(out.mean(dim=(2, 3)))


def lr_factor(step, config, steps_per_epoch):
    """The learning rate of iteration ``step`` as a fraction of the base rate."""
    total = config["epochs"] * steps_per_epoch
    if config["schedule"] == "multistep":
        return 0.1 ** ((step >= total // 2) + (step >= (total * 3) // 4))
    warmup = config["warmup_epochs"] * steps_per_epoch
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, total - warmup) / (total - warmup)))


def build_model(config, num_classes):
    """The PyTorch model, initialised with the weights npsenet draws for the same seed."""
    name = config["model"]
    se = name.startswith("se_")
    depth = int(name.removeprefix("se_").removeprefix("resnet"))
    if depth not in (20, 32, 56, 110):
        raise SystemExit(f"pytorch_reference: --model must be a CIFAR (SE-)ResNet, got {name}.")
    model = CifarResNet(depth, num_classes, se)
    ns.manual_seed(config["seed"])
    reference = ns.models.build_model(name, num_classes=num_classes)
    state = {k: torch.from_numpy(np.array(v)) for k, v in reference.state_dict().items()}
    model.load_state_dict(state, strict=True)
    return model


def evaluate(model, loader, loss_fn):
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = torch.from_numpy(x), torch.from_numpy(y)
            logits = model(x)
            loss_sum += float(loss_fn(logits, y)) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
    model.train()
    return loss_sum / seen, correct / seen


def main(argv=None):
    defaults = ns_train.default_config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=defaults["model"])
    parser.add_argument("--dataset", default=defaults["dataset"], choices=ns_train.DATASETS)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=defaults["epochs"])
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    parser.add_argument("--lr", type=float, default=defaults["lr"])
    parser.add_argument("--momentum", type=float, default=defaults["momentum"])
    parser.add_argument("--weight-decay", type=float, default=defaults["weight_decay"])
    parser.add_argument("--label-smoothing", type=float, default=defaults["label_smoothing"])
    parser.add_argument("--schedule", choices=ns_train.SCHEDULES, default=defaults["schedule"])
    parser.add_argument("--warmup-epochs", type=int, default=defaults["warmup_epochs"])
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--limit-test", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: PyTorch's choice)")
    parser.add_argument("--out", default=None,
                        help="folder for metrics.csv (default runs/pytorch-<model>-<dataset>)")
    args = parser.parse_args(argv)
    config = ns_train.default_config(
        model=args.model, dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
        schedule=args.schedule, warmup_epochs=args.warmup_epochs, seed=args.seed,
        limit_train=args.limit_train, limit_test=args.limit_test)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or f"runs/pytorch-{args.model}-{args.dataset}")
    out.mkdir(parents=True, exist_ok=True)

    train_set = ns_train.load_split(config, train=True)
    test_set = ns_train.load_split(config, train=False)
    mean, std = ns.data.channel_stats(train_set[0])
    train_loader, test_loader = ns_train.make_loaders(config, train_set, test_set, mean, std)
    model = build_model(config, num_classes=len(train_set[2]))
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"],
                                weight_decay=config["weight_decay"])
    steps_per_epoch = len(train_loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, config, steps_per_epoch))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config["label_smoothing"])

    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads: {args.model} on "
          f"{args.dataset} ({len(train_set[1])} train / {len(test_set[1])} test images), "
          f"{args.epochs} epoch{'s' * (args.epochs != 1)} of {steps_per_epoch} steps",
          flush=True)
    rows = []
    for epoch in range(1, config["epochs"] + 1):
        model.train()
        lr_sum = 0.0       # the lr column: the mean rate over the epoch's steps, as npsenet's
        loss_sum, correct, seen = 0.0, 0, 0
        started = time.perf_counter()
        for x, y in train_loader:
            x, y = torch.from_numpy(x), torch.from_numpy(y)
            lr_sum += optimizer.param_groups[0]["lr"]
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        train_seconds = time.perf_counter() - started
        test_loss, test_acc = evaluate(model, test_loader, loss_fn)
        row = {"epoch": epoch, "lr": lr_sum / steps_per_epoch, "train_loss": loss_sum / seen,
               "train_acc": correct / seen,
               "test_loss": test_loss, "test_acc": test_acc,
               "epoch_seconds": time.perf_counter() - started,
               "images_per_second": seen / train_seconds}
        rows.append(row)
        ns_train.write_metrics(rows, out / ns_train.METRICS_NAME)
        print(f"epoch {epoch}/{config['epochs']}  lr {row['lr']:.4f}  train loss {row['train_loss']:.4f} "
              f"acc {row['train_acc']:.4f}  test loss {test_loss:.4f} test accuracy "
              f"{test_acc:.4f}  {row['epoch_seconds']:.1f} s/epoch  "
              f"{row['images_per_second']:.0f} img/s", flush=True)
    print(f"final test accuracy: {rows[-1]['test_acc']:.4f}  "
          f"(mean {np.mean([r['epoch_seconds'] for r in rows]):.1f} s per epoch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
