"""The architectures the papers use: MLP, small CNN, ResNet-18 (CIFAR stem), ResNet-20,
AllCNN, VGG-11 and a small ViT.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``).

Every model starts with a :class:`Normalize` layer, so it takes inputs in ``[0, 1]``
pixel space (attacks and mnemonic codes live there), and remembers how it was built
in ``model.arch`` so the zoo can rebuild it.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = ("mlp", "cnn", "resnet18", "resnet20", "allcnn", "vgg11", "vit")


class Normalize(nn.Module):
    """(x - mean) / std per channel, as the first layer of every model."""

    def __init__(self, mean=None, std=None, channels: int = 1):
        super().__init__()
        mean = torch.as_tensor(mean if mean is not None else [0.0] * channels, dtype=torch.float32)
        std = torch.as_tensor(std if std is not None else [1.0] * channels, dtype=torch.float32)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x):
        if x.dim() == 4:
            return (x - self.mean[None, :, None, None]) / self.std[None, :, None, None]
        return (x - self.mean) / self.std


class MLP(nn.Module):
    def __init__(self, in_shape, num_classes, hidden=(256, 256), dropout=0.0):
        super().__init__()
        d = math.prod(in_shape)
        layers = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            d = h
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def _conv_bn(cin, cout, stride=1, k=3):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SmallCNN(nn.Module):
    def __init__(self, in_shape, num_classes, width=32):
        super().__init__()
        c = in_shape[0]
        self.features = nn.Sequential(
            _conv_bn(c, width),
            _conv_bn(width, width),
            nn.MaxPool2d(2),
            _conv_bn(width, 2 * width),
            _conv_bn(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1, option="B"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with the CIFAR stem (3x3 conv, stride 1, no max-pool)."""

    def __init__(self, in_shape, num_classes, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512)):
        super().__init__()
        self.stem = _conv_bn(in_shape[0], widths[0])
        layers, cin = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, stride=2 if (i > 0 and j == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))))


class AllCNN(nn.Module):
    """All-CNN-C (Springenberg et al. 2015) with batch norm, as used by UNSIR."""

    def __init__(self, in_shape, num_classes, width=96, dropout=0.0):
        super().__init__()
        w1, w2 = width, 2 * width
        self.features = nn.Sequential(
            _conv_bn(in_shape[0], w1),
            _conv_bn(w1, w1),
            _conv_bn(w1, w1, stride=2),
            nn.Dropout(dropout),
            _conv_bn(w1, w2),
            _conv_bn(w2, w2),
            _conv_bn(w2, w2, stride=2),
            nn.Dropout(dropout),
            _conv_bn(w2, w2),
            _conv_bn(w2, w2, k=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(w2, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


class VGG11(nn.Module):
    """VGG-11 with batch norm; max-pools stop once the feature map is 1x1 (small inputs)."""

    CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, in_shape, num_classes, width_mult=1.0):
        super().__init__()
        layers, c, size = [], in_shape[0], min(in_shape[1:])
        for v in self.CFG:
            if v == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
            else:
                v = max(8, int(v * width_mult))
                layers.append(_conv_bn(c, v))
                c = v
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(c, c), nn.ReLU(inplace=True), nn.Linear(c, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class ViT(nn.Module):
    """A small Vision Transformer (pre-norm encoder, class token, learned positions)."""

    def __init__(
        self, in_shape, num_classes, patch=None, dim=192, depth=6, heads=3, mlp_ratio=2.0, dropout=0.0
    ):
        super().__init__()
        c, h, w = in_shape
        patch = patch or (4 if h >= 16 else 2)
        if h % patch or w % patch:
            raise ValueError(f"ViT patch size {patch} must divide the input size {h}x{w}.")
        self.embed = nn.Conv2d(c, dim, patch, patch)
        n = (h // patch) * (w // patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, int(dim * mlp_ratio), dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1) + self.pos
        return self.fc(self.norm(self.encoder(t))[:, 0])


_BUILDERS = {
    "mlp": MLP,
    "cnn": SmallCNN,
    "allcnn": AllCNN,
    "vgg11": VGG11,
    "vit": ViT,
    "resnet18": lambda s, k, **kw: ResNet(
        s, k, blocks=(2, 2, 2, 2), widths=kw.pop("widths", (64, 128, 256, 512))
    ),
    "resnet20": lambda s, k, **kw: ResNet(s, k, blocks=(3, 3, 3), widths=kw.pop("widths", (16, 32, 64))),
}


def build_model(
    name: str, data=None, *, in_shape=None, num_classes=None, mean=None, std=None, device=None, **kwargs
) -> nn.Module:
    """Build a fresh model for ``data`` (a :class:`~unlearnkit.data.Dataset`) or explicit shapes.

    ``model.arch`` records the arguments, so ``rebuild(model)`` gives an untrained twin.
    """
    key = str(name).lower()
    if key not in _BUILDERS:
        raise ValueError(f"Unknown model {name!r}: choose one of {', '.join(MODELS)}.")
    if data is not None:
        in_shape = in_shape or data.input_shape
        num_classes = num_classes or data.num_classes
        mean = mean if mean is not None else data.mean
        std = std if std is not None else data.std
        device = device or data.device
    if in_shape is None or num_classes is None:
        raise ValueError("build_model needs a dataset or both in_shape and num_classes.")
    in_shape = tuple(int(s) for s in in_shape)
    if key not in ("mlp",) and len(in_shape) != 3:
        raise ValueError(
            f"{name} expects image inputs (C, H, W) but the data has shape {in_shape}; "
            f"use model='mlp' for vector inputs such as the 2-D toys."
        )
    net = _BUILDERS[key](in_shape, int(num_classes), **dict(kwargs))
    model = nn.Sequential()
    model.add_module(
        "normalize",
        Normalize(mean, std, channels=in_shape[0])
        if len(in_shape) == 3
        else Normalize(mean, std, channels=in_shape[0]),
    )
    model.add_module("net", net)
    model.arch = {
        "name": key,
        "in_shape": list(in_shape),
        "num_classes": int(num_classes),
        "mean": list(mean) if mean is not None else None,
        "std": list(std) if std is not None else None,
        "kwargs": dict(kwargs),
    }
    if data is not None and data.meta.get("dry_run_scale"):
        # a dry run's model: a pass over its (capped) data counts at the planned size (unlearnkit.budget)
        model.dry_run_scale = float(data.meta["dry_run_scale"])
    return model.to(device) if device is not None else model


def rebuild(model: nn.Module, device=None) -> nn.Module:
    """A freshly initialised model of the same architecture."""
    a = getattr(model, "arch", None)
    if a is None:
        raise ValueError(
            "This model was not made by unlearnkit.build_model, so it cannot be rebuilt; "
            "pass a model built with uk.build_model(...)."
        )
    dev = device or next(model.parameters()).device
    fresh = build_model(
        a["name"],
        in_shape=a["in_shape"],
        num_classes=a["num_classes"],
        mean=a["mean"],
        std=a["std"],
        device=dev,
        **a["kwargs"],
    )
    if getattr(model, "dry_run_scale", None):
        fresh.dry_run_scale = model.dry_run_scale
    return fresh


def clone(model: nn.Module) -> nn.Module:
    """A deep copy that keeps ``model.arch``."""
    import copy

    new = copy.deepcopy(model)
    if hasattr(model, "arch"):
        new.arch = copy.deepcopy(model.arch)
    return new


def check_finite(model: nn.Module, what: str = "model") -> None:
    """Raise if any parameter is NaN or infinite (a diverged run must not be evaluated silently)."""
    for n, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise ValueError(
                f"The {what} has non-finite weights in {n!r} (NaN or inf): training or "
                f"unlearning diverged. Lower the learning rate or reload the checkpoint."
            )
