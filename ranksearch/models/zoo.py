"""Dense reference networks; `ranksearch.models.tensorize` turns chosen layers into tensor layers.

Every factory takes the per-sample input shape and the class count so one architecture serves
several datasets (LeNet-5 on 28x28 digits, LeNet-300-100 on 8x8 digits, ...).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet300(nn.Module):
    """LeNet-300-100: a 3-layer MLP (fc1, fc2, fc3); hidden sizes configurable."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, int] = (300, 100)):
        super().__init__()
        n_in = math.prod(input_shape)
        self.fc1 = nn.Linear(n_in, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNet5(nn.Module):
    """LeNet-5 as PSTRN uses it: 20c5 (padding 2) - pool - 50c5 - pool - fc320 - fc10."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, channels: tuple[int, int] = (20, 50), hidden: int = 320):
        super().__init__()
        c, h, w = input_shape
        self.conv1 = nn.Conv2d(c, channels[0], 5, padding=2)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 5)
        fh, fw = (h // 2 - 4) // 2, (w // 2 - 4) // 2
        if fh < 1 or fw < 1:
            raise ValueError(f"LeNet5 needs inputs of at least 12x12 pixels, got {h}x{w}")
        self.fc1 = nn.Linear(channels[1] * fh * fw, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class _ShortcutA(nn.Module):
    """Option-A shortcut: subsample by stride and zero-pad the new channels (no parameters)."""

    def __init__(self, extra: int):
        super().__init__()
        self.extra = extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = (
            _ShortcutA(c_out - c_in) if stride != 1 or c_in != c_out else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet-(6n+2) with option-A shortcuts (ResNet-20: n=3)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, depth: int = 20, width: int = 16):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 56, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        widths = (width, 2 * width, 4 * width)
        c_in = width
        stages = []
        for i, c_out in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(c_in, c_out, 2 if (i > 0 and j == 0) else 1))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def lenet300(input_shape, num_classes, **options) -> nn.Module:
    return LeNet300(input_shape, num_classes, **options)


def lenet5(input_shape, num_classes, **options) -> nn.Module:
    return LeNet5(input_shape, num_classes, **options)


def resnet20(input_shape, num_classes, **options) -> nn.Module:
    return CifarResNet(input_shape, num_classes, depth=20, **options)


def resnet32(input_shape, num_classes, **options) -> nn.Module:
    return CifarResNet(input_shape, num_classes, depth=32, **options)


def resnet56(input_shape, num_classes, **options) -> nn.Module:
    return CifarResNet(input_shape, num_classes, depth=56, **options)


ZOO = {
    "lenet300": lenet300,
    "lenet5": lenet5,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
}
