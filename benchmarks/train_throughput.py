"""Training images/s and PGD image·steps/s of uexlib against loops written the common way.

Rows appended to ``benchmarks/results/throughput.csv`` (one per ``loop``), columns
``date,device,torch,model,width,batch_size,loop,images_per_s,ratio_to_reference,git_commit``:

* ``reference``: a torchvision ``DataLoader`` over PIL images with per-image CPU transforms
  (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor) in ``--workers`` processes; the
  model in fp32 NCHW; a plain ``torch.optim.SGD`` step. Its ratio is 1.
* ``uexlib``: :class:`uexlib.Trainer` steps on batches of a :class:`uexlib.data.DeviceLoader`
  (the data on the device as uint8, crop and flip batched there). Loader and trainer are built
  before the clock starts; the batches are drawn inside the timed region, as the reference's are.
* ``uexlib_compiled`` (with ``--compile``): the same with ``Trainer(compile=True)``, timed after
  the warm-up steps that trigger compilation. Only worth running on a GPU.
* ``pgd_reference``: PGD written the common way in this script (fp32, NCHW, no autocast, a
  Python loop over batches of signed-gradient steps with ``torch.autograd.grad``). Its ratio is 1.
* ``pgd``: :func:`uexlib.attacks.pgd` on the same images, start, steps and batch, the model in
  train mode and channels_last as EM's surrogate is. For both PGD rows ``images_per_s`` is
  image·steps/s and ``batch_size`` is ``--pgd-batch``.

All loops run the same model, seeded alike, for the same number of timed steps after 3 warm-up
steps; on CUDA the clock reads follow a ``torch.cuda.synchronize()`` (none inside the loops).

    python benchmarks/train_throughput.py --model cnn --width 0.5 --steps 40 --per-class 1000 \\
        --workers 2 --pgd-images 512 --pgd-steps 5 --pgd-batch 128     # CPU
    python benchmarks/train_throughput.py --batch-size 512 --workers 8  # GPU, full CIFAR-10
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import uexlib as ue
from uexlib.data import DeviceLoader

from _bench import RESULTS, append_rows, device_label, now_utc, sync

COLUMNS = ["date", "device", "torch", "model", "width", "batch_size", "loop", "images_per_s",
           "ratio_to_reference", "git_commit"]
WARMUP_STEPS = 3
EPS = 8 / 255  # L-inf radius on the [0, 1] pixel scale, as EM


class PILDataset(Dataset):
    """The dataset as the common pipeline sees it: one PIL image per item, transformed on the CPU."""

    def __init__(self, dataset: ue.ImageDataset, transform):
        self.images = dataset.images.permute(0, 2, 3, 1).numpy()
        self.labels = dataset.labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def endless(loader):
    """Batches of successive epochs, so a run may be longer than one epoch."""
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def fresh_model(args, dev: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return ue.models.create(args.model, 10, 3, width=args.width).to(dev)


def reference_images_per_s(model, dataset, batch_size, steps, dev, workers) -> float:
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    loader = DataLoader(PILDataset(dataset, transform), batch_size=batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, pin_memory=dev.type == "cuda", persistent_workers=workers > 0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    batches = endless(loader)

    def step():
        x, y = next(batches)
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(WARMUP_STEPS):
        step()
    sync(dev)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync(dev)
    return steps * batch_size / (time.perf_counter() - started)


def uexlib_images_per_s(model, dataset, batch_size, steps, dev, compile: bool = False) -> float:
    loader = DeviceLoader(dataset, batch_size, dev, shuffle=True, augment="crop_flip", drop_last=True)
    trainer = ue.Trainer(model, total_steps=WARMUP_STEPS + steps, lr=0.01, schedule="constant", device=dev,
                         compile=compile)
    batches = endless(loader)
    for _ in range(WARMUP_STEPS):
        x, y, _ = next(batches)
        trainer.step(x, y)
    sync(dev)
    started = time.perf_counter()
    for _ in range(steps):
        x, y, _ = next(batches)
        trainer.step(x, y)
    sync(dev)
    return steps * batch_size / (time.perf_counter() - started)


def reference_pgd(model, x, y, delta, eps, step_size, steps, batch_size) -> torch.Tensor:
    """Error-minimizing L-inf PGD the common way: fp32, NCHW, one batch at a time."""
    out = []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        d = delta[start:start + batch_size].clone()
        for _ in range(steps):
            d.requires_grad_(True)
            loss = F.cross_entropy(model(xb + d), yb)
            (grad,) = torch.autograd.grad(loss, d)
            d = (d.detach() - step_size * grad.sign()).clamp(-eps, eps)
            d = (xb + d).clamp(0, 1) - xb
        out.append(d)
    return torch.cat(out)


@torch.no_grad()
def mean_loss(model, x, y, delta, batch_size) -> float:
    """Cross-entropy on ``x + delta``, batched as the attack was (train-mode batch norm uses batch statistics)."""
    total = sum(F.cross_entropy(model(x[s:s + batch_size] + delta[s:s + batch_size]), y[s:s + batch_size],
                                reduction="sum") for s in range(0, len(x), batch_size))
    return total.item() / len(x)


def pgd_image_steps_per_s(args, dataset, dev) -> tuple[float, float, dict]:
    """(reference, uexlib) image·steps/s, and the mean loss at the start and on each loop's noise."""
    count = args.pgd_images
    x = dataset.images[:count].to(dev).float().div_(255)
    y = dataset.labels[:count].to(dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    # EM's PGD starts from the current noise: uniform in the ball for the first round.
    start = (torch.rand(x.shape, device=dev, generator=gen) * 2 - 1) * EPS
    start = (x + start).clamp(0, 1) - x  # a valid start, so neither loop projects it differently
    step_size = 2 * EPS / args.pgd_steps  # EM's default
    warm = slice(0, min(count, args.pgd_batch))

    reference = fresh_model(args, dev).train()
    reference_pgd(reference, x[warm], y[warm], start[warm], EPS, step_size, 1, args.pgd_batch)
    sync(dev)
    started = time.perf_counter()
    expected = reference_pgd(reference, x, y, start, EPS, step_size, args.pgd_steps, args.pgd_batch)
    sync(dev)
    reference_rate = count * args.pgd_steps / (time.perf_counter() - started)

    surrogate = fresh_model(args, dev).to(memory_format=torch.channels_last).train()

    def run(xs, ys, ds, steps):
        return ue.attacks.pgd(surrogate, xs, ys, eps=EPS, steps=steps, step_size=step_size, minimize=True,
                              delta=ds, batch_size=args.pgd_batch)

    run(x[warm], y[warm], start[warm], 1)
    sync(dev)
    started = time.perf_counter()
    got = run(x, y, start, args.pgd_steps)
    sync(dev)
    uexlib_rate = count * args.pgd_steps / (time.perf_counter() - started)
    # Signed steps amplify rounding differences (NCHW vs channels_last, fp32 vs bf16), so the two
    # noises need not match bit for bit; the loss they reach should.
    losses = {name: mean_loss(reference, x, y, d, args.pgd_batch)
              for name, d in (("start", start), ("reference", expected), ("uexlib", got))}
    return reference_rate, uexlib_rate, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier of the model")
    parser.add_argument("--batch-size", type=int, default=128, help="SGD batch")
    parser.add_argument("--steps", type=int, default=100, help="timed SGD steps per training loop")
    parser.add_argument("--per-class", type=int, default=None,
                        help="training images per class (default all 5,000; pass fewer on a CPU)")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader worker processes of the reference")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--root", help="dataset root (default $UEX_DATA_ROOT)")
    parser.add_argument("--pgd-images", type=int, default=2048, help="images attacked in the PGD rows")
    parser.add_argument("--pgd-steps", type=int, default=10, help="PGD steps per image")
    parser.add_argument("--pgd-batch", type=int, default=512, help="images per PGD batch")
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput.csv", help="CSV the rows are appended to")
    parser.add_argument("--compile", action="store_true", help="also time Trainer(compile=True) (GPU)")
    args = parser.parse_args()

    dev = ue.device(args.device)
    dataset = ue.load_dataset("cifar10", "train", args.root, per_class=args.per_class)
    if not 1 <= args.pgd_images <= len(dataset):
        parser.error(f"--pgd-images must be in [1, {len(dataset)}], got {args.pgd_images}")

    rates = {"reference": reference_images_per_s(fresh_model(args, dev), dataset, args.batch_size, args.steps,
                                                 dev, args.workers),
             "uexlib": uexlib_images_per_s(fresh_model(args, dev), dataset, args.batch_size, args.steps, dev)}
    if args.compile:
        rates["uexlib_compiled"] = uexlib_images_per_s(fresh_model(args, dev), dataset, args.batch_size,
                                                       args.steps, dev, compile=True)
    rates["pgd_reference"], rates["pgd"], losses = pgd_image_steps_per_s(args, dataset, dev)

    common = {"date": now_utc(), "device": device_label(dev), "torch": torch.__version__, "model": args.model,
              "width": args.width, "git_commit": ue.git_commit()}
    rows = []
    for loop, rate in rates.items():
        pgd_loop = loop.startswith("pgd")
        baseline = rates["pgd_reference" if pgd_loop else "reference"]
        rows.append({**common, "batch_size": args.pgd_batch if pgd_loop else args.batch_size, "loop": loop,
                     "images_per_s": round(rate, 1), "ratio_to_reference": round(rate / baseline, 3)})
    append_rows(args.out, COLUMNS, rows)

    print(f"{args.model} (width {args.width}), {len(dataset)} images of {dataset.source}, {common['device']}, "
          f"torch {common['torch']}")
    print(f"training: batch {args.batch_size}, {args.steps} timed steps; PGD: {args.pgd_images} images, "
          f"{args.pgd_steps} steps, batch {args.pgd_batch}")
    print(f"  {'loop':<16} {'images/s':>10} {'ratio':>7}")
    for row in rows:
        print(f"  {row['loop']:<16} {row['images_per_s']:>10.1f} {row['ratio_to_reference']:>7.2f}")
    print(f"  (PGD rows: image·steps/s; mean loss at the start {losses['start']:.4f}, after PGD: reference "
          f"{losses['reference']:.4f}, uexlib {losses['uexlib']:.4f})")
    print(f"appended {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
