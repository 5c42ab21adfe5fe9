"""Inception-ResNet-v2 (Szegedy et al., AAAI 2017) for 299x299 input, the WebVision
backbone of DivideMix (trained from scratch there).

Stand-alone: imports only torch, so it can be copied into other code as is.

Module names follow the widely used PyTorch port that the DivideMix reference
ships (conv2d_1a ... repeat, repeat_1, repeat_2, block8, conv2d_7b, last_linear),
so its state dicts load here.

Shapes for a (B, 3, 299, 299) input:
    stem          -> (B, 192, 35, 35)
    mixed_5b      -> (B, 320, 35, 35)    then 10 x Block35 (residual scale 0.17)
    mixed_6a      -> (B, 1088, 17, 17)   then 20 x Block17 (scale 0.10)
    mixed_7a      -> (B, 2080, 8, 8)     then 9 x Block8 (scale 0.20), 1 Block8 without ReLU
    conv2d_7b     -> (B, 1536, 8, 8)
    avgpool_1a(8, count_include_pad=False) -> (B, 1536) -> last_linear -> (B, num_classes)
Every BasicConv2d is conv (no bias) + BatchNorm(eps=0.001) + ReLU; the 1x1
convolution that closes each residual block keeps its bias, as in the original.
"""
import torch
import torch.nn as nn


class BasicConv2d(nn.Module):
    def __init__(self, in_planes, out_planes, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=kernel_size, stride=stride,
                              padding=padding, bias=False)
        # eps=0.001 is TensorFlow's value, which the original weights were trained with.
        self.bn = nn.BatchNorm2d(out_planes, eps=0.001, momentum=0.1, affine=True)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def _chain(*specs):
    """nn.Sequential of BasicConv2d from (in, out, kernel, stride, padding) tuples."""
    return nn.Sequential(*[BasicConv2d(*s) for s in specs])


class Mixed_5b(nn.Module):
    """(B, 192, 35, 35) -> (B, 96 + 64 + 96 + 64 = 320, 35, 35)"""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(192, 96, 1)
        self.branch1 = _chain((192, 48, 1), (48, 64, 5, 1, 2))
        self.branch2 = _chain((192, 64, 1), (64, 96, 3, 1, 1), (96, 96, 3, 1, 1))
        self.branch3 = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                                     BasicConv2d(192, 64, 1))

    def forward(self, x):
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class _Residual(nn.Module):
    """Shared body of Block35/Block17/Block8: run the block's branch0..branchK,
    concat them, 1x1 conv back to the input width, out = x + scale * conv(...),
    then ReLU unless noReLU."""

    def __init__(self, scale, num_branches, noReLU=False):
        super().__init__()
        self.scale = scale
        self.num_branches = num_branches
        self.noReLU = noReLU
        if not noReLU:
            self.relu = nn.ReLU(inplace=False)

    def forward(self, x):
        branches = [getattr(self, 'branch%d' % i)(x) for i in range(self.num_branches)]
        out = self.conv2d(torch.cat(branches, 1))
        out = out * self.scale + x
        return out if self.noReLU else self.relu(out)


class Block35(_Residual):
    """Inception-ResNet-A, (B, 320, 35, 35) -> same."""

    def __init__(self, scale=1.0):
        super().__init__(scale, num_branches=3)
        self.branch0 = BasicConv2d(320, 32, 1)
        self.branch1 = _chain((320, 32, 1), (32, 32, 3, 1, 1))
        self.branch2 = _chain((320, 32, 1), (32, 48, 3, 1, 1), (48, 64, 3, 1, 1))
        self.conv2d = nn.Conv2d(128, 320, kernel_size=1, stride=1)


class Mixed_6a(nn.Module):
    """Reduction-A, (B, 320, 35, 35) -> (B, 384 + 384 + 320 = 1088, 17, 17)"""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(320, 384, 3, stride=2)
        self.branch1 = _chain((320, 256, 1), (256, 256, 3, 1, 1), (256, 384, 3, 2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class Block17(_Residual):
    """Inception-ResNet-B, (B, 1088, 17, 17) -> same."""

    def __init__(self, scale=1.0):
        super().__init__(scale, num_branches=2)
        self.branch0 = BasicConv2d(1088, 192, 1)
        self.branch1 = _chain((1088, 128, 1), (128, 160, (1, 7), 1, (0, 3)), (160, 192, (7, 1), 1, (3, 0)))
        self.conv2d = nn.Conv2d(384, 1088, kernel_size=1, stride=1)


class Mixed_7a(nn.Module):
    """Reduction-B, (B, 1088, 17, 17) -> (B, 384 + 288 + 320 + 1088 = 2080, 8, 8)"""

    def __init__(self):
        super().__init__()
        self.branch0 = _chain((1088, 256, 1), (256, 384, 3, 2))
        self.branch1 = _chain((1088, 256, 1), (256, 288, 3, 2))
        self.branch2 = _chain((1088, 256, 1), (256, 288, 3, 1, 1), (288, 320, 3, 2))
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class Block8(_Residual):
    """Inception-ResNet-C, (B, 2080, 8, 8) -> same."""

    def __init__(self, scale=1.0, noReLU=False):
        super().__init__(scale, num_branches=2, noReLU=noReLU)
        self.branch0 = BasicConv2d(2080, 192, 1)
        self.branch1 = _chain((2080, 192, 1), (192, 224, (1, 3), 1, (0, 1)), (224, 256, (3, 1), 1, (1, 0)))
        self.conv2d = nn.Conv2d(448, 2080, kernel_size=1, stride=1)


class InceptionResNetV2(nn.Module):
    def __init__(self, num_classes=1001):
        super().__init__()
        self.input_size = (299, 299, 3)
        # Stem: (B, 3, 299, 299) -> (B, 192, 35, 35)
        self.conv2d_1a = BasicConv2d(3, 32, 3, stride=2)          # 149
        self.conv2d_2a = BasicConv2d(32, 32, 3)                   # 147
        self.conv2d_2b = BasicConv2d(32, 64, 3, padding=1)        # 147
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)               # 73
        self.conv2d_3b = BasicConv2d(64, 80, 1)                   # 73
        self.conv2d_4a = BasicConv2d(80, 192, 3)                  # 71
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)               # 35
        self.mixed_5b = Mixed_5b()
        self.repeat = nn.Sequential(*[Block35(scale=0.17) for _ in range(10)])
        self.mixed_6a = Mixed_6a()
        self.repeat_1 = nn.Sequential(*[Block17(scale=0.10) for _ in range(20)])
        self.mixed_7a = Mixed_7a()
        self.repeat_2 = nn.Sequential(*[Block8(scale=0.20) for _ in range(9)])
        self.block8 = Block8(noReLU=True)
        self.conv2d_7b = BasicConv2d(2080, 1536, 1)
        self.avgpool_1a = nn.AvgPool2d(8, count_include_pad=False)
        self.last_linear = nn.Linear(1536, num_classes)

    def features(self, x):
        """(B, 3, 299, 299) -> (B, 1536, 8, 8)"""
        for layer in (self.conv2d_1a, self.conv2d_2a, self.conv2d_2b, self.maxpool_3a,
                      self.conv2d_3b, self.conv2d_4a, self.maxpool_5a, self.mixed_5b,
                      self.repeat, self.mixed_6a, self.repeat_1, self.mixed_7a,
                      self.repeat_2, self.block8, self.conv2d_7b):
            x = layer(x)
        return x

    def logits(self, features):
        x = self.avgpool_1a(features)
        return self.last_linear(x.view(x.size(0), -1))

    def forward(self, x):
        return self.logits(self.features(x))
