"""A small CNN for CPU-scale runs (the Fashion-MNIST demo); not a model of the paper.

Stand-alone: imports only torch, so it can be copied into other code as is.

For a (B, C, S, S) input, with w = width:
    conv3x3(C, w) -> BN -> ReLU -> maxpool 2      (B, w, S/2, S/2)
    conv3x3(w, 2w) -> BN -> ReLU -> maxpool 2     (B, 2w, S/4, S/4)
    flatten -> Linear(2w * (S/4)^2, 8w) -> ReLU -> Linear(8w, num_classes)
Why this net for the demo: DivideMix's GMM split needs a network that fits the clean
samples well within the budget (bimodal per-sample losses). On 2 CPU cores the paper's
PreResNet-18 is too slow for that, and a narrow one under-fits (its losses stay unimodal
and the split fails); this net has many parameters per FLOP (most in the first
Linear), so it fits in a few epochs. No BatchNorm in the head: a ragged batch of one
sample stays valid in train mode.
"""
import torch.nn as nn


class SmallCNN(nn.Module):
    def __init__(self, num_classes=10, in_channels=1, width=16, image_size=28):
        super().__init__()
        if image_size < 4:
            raise ValueError('SmallCNN needs images of at least 4 px (two 2x2 max-pools), not %d' % image_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2))
        side = image_size // 4
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * side * side, 8 * width), nn.ReLU(),
                                        nn.Linear(8 * width, num_classes))

    def forward(self, x):
        """x: (B, in_channels, image_size, image_size) -> logits (B, num_classes)."""
        return self.classifier(self.features(x))
