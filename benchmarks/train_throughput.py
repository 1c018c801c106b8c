"""Training images/s: the uexlib trainer against a reference loop written the common way.

The reference is a torchvision ``DataLoader`` over PIL images with per-image CPU transforms
(RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor). Same model, batch size, optimizer
and number of steps, in one run; the ratio is uexlib / reference.

    python benchmarks/train_throughput.py --model cnn --steps 40
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from torch.utils.data import DataLoader, Dataset

import uexlib as ue


class PILDataset(Dataset):
    def __init__(self, dataset: ue.ImageDataset, transform):
        self.images = dataset.images.permute(0, 2, 3, 1).numpy()
        self.labels = dataset.labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def reference_images_per_s(model, dataset, batch_size, steps, dev, workers) -> float:
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    loader = DataLoader(PILDataset(dataset, transform), batch_size=batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, pin_memory=dev.type == "cuda", persistent_workers=workers > 0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=False)
    model.train()
    done, started = 0, None
    while done < steps + 2:
        for x, y in loader:
            if done == 2:  # two warm-up steps
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps + 2:
                break
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - started)


def uexlib_images_per_s(model, dataset, batch_size, steps, dev) -> float:
    ue.train(model, dataset, iterations=2, batch_size=batch_size, lr=0.01, schedule="constant", device=str(dev),
             progress=False)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    ue.train(model, dataset, iterations=steps, batch_size=batch_size, lr=0.01, schedule="constant",
             device=str(dev), progress=False)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40, help="timed SGD steps per loop")
    parser.add_argument("--per-class", type=int, default=1000, help="training images per class")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--root", help="dataset root (default $UEX_DATA_ROOT)")
    args = parser.parse_args()
    dev = ue.device(args.device)
    dataset = ue.load_dataset("cifar10", "train", args.root, per_class=args.per_class)
    results = {}
    for name in ("reference", "uexlib"):
        torch.manual_seed(0)
        model = ue.models.create(args.model, 10, 3, width=args.width).to(dev)
        if name == "reference":
            results[name] = reference_images_per_s(model, dataset, args.batch_size, args.steps, dev, args.workers)
        else:
            results[name] = uexlib_images_per_s(model, dataset, args.batch_size, args.steps, dev)
    where = torch.cuda.get_device_name() if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"model {args.model} (width {args.width}), batch {args.batch_size}, {args.steps} steps, {where}, "
          f"data {dataset.source}")
    for name, value in results.items():
        print(f"  {name:<10} {value:8.1f} images/s")
    print(f"  ratio uexlib / reference: {results['uexlib'] / results['reference']:.2f}")


if __name__ == "__main__":
    main()
