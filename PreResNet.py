"""Pre-activation ResNet-18, the CIFAR backbone of DivideMix.

Stand-alone: imports only torch, so it can be copied into other code as is.

Parameter names (conv1, bn1, layer1..layer4, linear; inside a block bn1, conv1,
bn2, conv2, shortcut.0) match the DivideMix reference, so state dicts load in
either direction.

Architecture (He et al. 2016, "Identity Mappings in Deep Residual Networks"):
    stem    conv3x3(in_channels, 64) -> BN -> ReLU
    layer1  2 x PreActBlock(64,  stride 1)      32x32
    layer2  2 x PreActBlock(128, stride 2)      16x16
    layer3  2 x PreActBlock(256, stride 2)       8x8
    layer4  2 x PreActBlock(512, stride 2)       4x4
    avg_pool2d(4) -> flatten -> Linear(512, num_classes)
(widths for the default width=64; spatial sizes for 32x32 input)
Kept quirk of the reference: there is no final BN-ReLU after layer4. The reference
pooled with a fixed 4x4 window, which is the whole layer4 map for 25..32 px inputs
(CIFAR, and 28 px Fashion-MNIST): that is kept, bit for bit. A map of any other size
is averaged whole (the fixed window crashed below 25 px and from 57 px, and read only
the top-left 4x4 of the 5x5..7x7 maps of 33..56 px inputs), so any image size trains.
"""
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class PreActBlock(nn.Module):
    """BN-ReLU -> conv3x3 -> BN-ReLU -> conv3x3, plus a shortcut.

    The shortcut is taken from the first BN-ReLU activation (not from the raw
    input) and is a bias-free 1x1 conv, without BN, whenever the shape changes.
    """
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10, in_channels=3, width=64):
        super().__init__()
        self.in_planes = width
        self.conv1 = conv3x3(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(block, width, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 2 * width, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, num_blocks[3], stride=2)
        self.linear = nn.Linear(8 * width * block.expansion, num_classes)

    def _make_layer(self, block, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x, lin=0, lout=5):
        """x: (B, in_channels, H, W) -> logits (B, num_classes).

        lin/lout select a slice of the network as in the reference (stage 0 is
        the stem, 1..4 the residual stages, 5 the classifier): with the defaults
        the whole network runs.
        """
        out = x
        if lin < 1 and lout > -1:
            out = F.relu(self.bn1(self.conv1(out)))
        for stage, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=1):
            if lin < stage + 1 and lout > stage - 1:
                out = layer(out)
        if lout > 4:
            # the reference's avg_pool2d(out, 4) where the map is 4x4 (the same bits as before); the whole
            # map's mean elsewhere, so that the Linear layer sees 8 * width features at any input size
            out = F.avg_pool2d(out, 4) if out.shape[-2:] == (4, 4) else F.adaptive_avg_pool2d(out, 1)
            out = out.view(out.size(0), -1)
            out = self.linear(out)
        return out


def ResNet18(num_classes=10, in_channels=3, width=64):
    """Pre-activation ResNet-18.

    The defaults build the paper's network. in_channels=1 serves grayscale data
    (Fashion-MNIST); width scales every stage (64 -> 64/128/256/512 channels),
    so width=8 gives the same topology at about 1/64 of the compute, for CPU runs.
    """
    return ResNet(PreActBlock, [2, 2, 2, 2], num_classes=num_classes, in_channels=in_channels, width=width)
