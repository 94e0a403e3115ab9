"""Speed benchmark: ``uk.fit`` against a plain torchvision DataLoader + fp32 loop.

Not part of the test suite (pytest does not collect it). Run it by hand:

    python tests/bench_fit.py                                  # CPU: digits, small CNN
    python tests/bench_fit.py --data /path/cifar10-jpeg --model resnet18 --epochs 30 \
        --batch-size 512 --lr 0.2 --target 93                   # GPU: CIFAR-10 (JPEG copy)

Both loops train the same architecture from the same initial weights on the same data
with the same optimiser, schedule and augmentation (random crop with 4-pixel padding and
horizontal flip when the data is natural images). The plain loop decodes/augments per
sample in DataLoader workers, copies each batch to the device and runs fp32; ``uk.fit``
keeps the whole dataset on the device, augments batched there, and uses bf16 autocast and
channels-last on CUDA. Prints epochs per second of each, their ratio, and (with
``--target``) the wall time at which ``uk.fit`` first reached the target test accuracy.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

import unlearnkit as uk


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def plain_loop(model, args, data, dev):
    """The textbook loop: torchvision transforms in DataLoader workers, fp32."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, Dataset

    aug = data.augment

    class Tensors(Dataset):
        def __init__(self, x, y):
            self.x, self.y = x.cpu(), y.cpu()
            self.t = (
                T.Compose([T.RandomCrop(self.x.shape[-1], padding=4), T.RandomHorizontalFlip()])
                if aug
                else None
            )

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            x = self.x[i]
            return (self.t(x) if self.t else x), self.y[i]

    if args.data and not aug:
        raise SystemExit("ImageFolder data is expected to be natural images")
    if args.data:
        import torchvision.datasets as tvd

        tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
        ds = tvd.ImageFolder(f"{args.data}/train", transform=tf)
    else:
        ds = Tensors(data.x_train, data.y_train)
    dl = DataLoader(
        ds,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=dev.type == "cuda",
        drop_last=False,
        persistent_workers=args.workers > 0,
    )
    opt = uk.training.make_optimizer(model.parameters(), "sgd", args.lr, 0.9, 5e-4)
    steps = args.epochs * len(dl)
    sched = uk.training.make_schedule(opt, args.schedule, steps, len(dl), args.lr)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        for xb, yb in dl:
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
    _sync(dev)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="ImageFolder root (train/, test/); default: digits")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--schedule", default="onecycle")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--target", type=float, default=None, help="test accuracy (%%) to time uk.fit to")
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--json", default=None, help="write the numbers to this file")
    ap.add_argument(
        "--recipe",
        action="store_true",
        help="train with the book's fast recipe (uk.FAST_RESNET18: model, epochs, batch, lr, schedule, "
        "weight decay, label smoothing) and report seconds per epoch-equivalent",
    )
    args = ap.parse_args(argv)
    extra = {}
    if args.recipe:
        r = uk.FAST_RESNET18
        args.model, args.epochs, args.batch_size = r["model"], r["epochs"], r["batch_size"]
        args.lr, args.schedule = r["lr"], r["schedule"]
        extra = {"weight_decay": r["weight_decay"], "label_smoothing": r["label_smoothing"]}

    P = uk.profile(seed=0)
    dev = P.device
    data = uk.load_dataset(args.data or "digits", device=dev)
    print(data)
    uk.set_seed(0)
    init = uk.build_model(args.model, data)
    state = {k: v.clone() for k, v in init.state_dict().items()}

    model = uk.clone(init)
    _sync(dev)
    t0 = time.perf_counter()
    hist = uk.fit(
        model,
        data.x_train,
        data.y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        augment=data.augment,
        seed=0,
        progress=False,
        eval_data=(data.x_test, data.y_test) if args.target else None,
        **extra,
    )
    _sync(dev)
    t_fit = time.perf_counter() - t0
    acc_fit = uk.accuracy(model, data.x_test, data.y_test)
    out = {
        "device": P.provenance(),
        "model": args.model,
        "data": data.name,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "fit_seconds": t_fit,
        "fit_epochs_per_s": args.epochs / t_fit,
        "fit_test_acc": acc_fit,
    }
    if args.target:
        # hist.eval_acc is measured after each epoch; evaluation time is included in t_fit
        reach = [i + 1 for i, a in enumerate(hist.eval_acc) if a >= args.target]
        out["epochs_to_target"] = reach[0] if reach else None
        out["seconds_to_target"] = t_fit * reach[0] / args.epochs if reach else None
    # seconds per epoch-equivalent: the epochs' work in EE (unlearnkit.budget), as counted
    ee = uk.budget.ee(args.epochs * len(data.y_train), uk.budget.arch_macs(uk.budget._key(model.arch)), True)
    out["ee"], out["seconds_per_ee"] = ee, t_fit / ee
    print(f"uk.fit      : {t_fit:8.2f}s  {args.epochs / t_fit:7.3f} epochs/s  test acc {acc_fit:.2f}%")
    print(f"              {ee:.2f} EE: {t_fit / ee:.2f} s per EE on this device")

    if not args.skip_plain:
        plain = uk.clone(init)
        plain.load_state_dict(state)
        t_plain = plain_loop(plain, args, data, dev)
        acc_plain = uk.accuracy(plain, data.x_test, data.y_test)
        out.update(
            plain_seconds=t_plain,
            plain_epochs_per_s=args.epochs / t_plain,
            plain_test_acc=acc_plain,
            speedup=t_plain / t_fit,
        )
        print(
            f"plain loop  : {t_plain:8.2f}s  {args.epochs / t_plain:7.3f} epochs/s  test acc {acc_plain:.2f}%"
        )
        print(f"speed-up of uk.fit over the plain loop: {t_plain / t_fit:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
