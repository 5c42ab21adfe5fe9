"""Device-resident data pipeline for small images (CIFAR, Fashion-MNIST).

Stand-alone: imports only torch (numpy arrays are accepted as input).

The training images live on the device once, as uint8 (N, H+2p, W+2p, C) with a
zero border of p = 4 pixels, and every view is made in batch on the device:
    random crop  - offsets (dy, dx) uniform on {0..2p}^2 (81 offsets for p = 4),
                   the zero border standing in for torchvision's RandomCrop(padding=4)
    random flip  - horizontal, p = 0.5, applied to the crop
    normalise    - x / 255, then (x - mean) / std per channel, in float32, exactly the
                   arithmetic of ToTensor + Normalize
This is the distribution of the reference's PIL transforms; only the random stream
differs (one torch.Generator on the device, whose state checkpoints save).

data_sources.DeviceSource builds the reference loader's modes on top of DeviceImages, with
index tensors: nothing is rebuilt per epoch and no DataLoader runs in the hot loop.
"""
import torch


class DeviceImages(object):
    """uint8 images on the device and the batch transforms that read them.

    images: (N, H, W, C) uint8 (numpy or tensor). mean, std: per-channel sequences.
    channels_last: return views in channels-last memory format (no copy: the gather
    produces NHWC, and the NCHW view of it is channels-last already).
    crop_flip: False makes every training view the plain image (no crop, no flip; the
    random stream is not drawn), like a train transform of ToTensor + Normalize only.
    """

    def __init__(self, images, mean, std, device, pad=4, channels_last=False, crop_flip=True):
        data = torch.as_tensor(images)
        if data.dtype != torch.uint8 or data.dim() != 4:
            raise ValueError('images must be uint8 (N, H, W, C), got %s %s' % (data.dtype, tuple(data.shape)))
        self.device = torch.device(device)
        self.pad = pad
        self.channels_last = channels_last
        self.crop_flip_views = crop_flip
        self.num, self.height, self.width, self.channels = data.shape
        data = data.to(self.device)
        # the zero border of RandomCrop(padding=pad, fill=0): a black pixel before normalisation
        self.padded = torch.nn.functional.pad(data, (0, 0, pad, pad, pad, pad))
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
        self._rows = torch.arange(self.height, device=self.device)
        self._cols = torch.arange(self.width, device=self.device)

    def __len__(self):
        return self.num

    def _normalise(self, nhwc):
        """(B, H, W, C) uint8 -> (B, C, H, W) float32, ToTensor + Normalize arithmetic."""
        if nhwc.size(3) == 1:
            # One channel: reshape, not permute. The permuted view has strides (HW, 1, W, 1),
            # which PyTorch calls contiguous (so .contiguous() keeps them) but which oneDNN's
            # CPU convolution backward mishandles (seen: a hang, and "double free or
            # corruption", torch 2.15 CPU). The reshape has the canonical (HW, HW, W, 1).
            x = nhwc.reshape(nhwc.size(0), 1, nhwc.size(1), nhwc.size(2)).float().div(255)
            return x.sub(self.mean).div(self.std)
        x = nhwc.permute(0, 3, 1, 2).float().div(255)
        x = x.sub(self.mean).div(self.std)
        return x if self.channels_last else x.contiguous()

    def draw(self, n, generator):
        """Random crop offsets dy, dx (n,) in [0, 2*pad] and flips (n,) bool, p = 0.5."""
        dy = torch.randint(0, 2 * self.pad + 1, (n,), device=self.device, generator=generator)
        dx = torch.randint(0, 2 * self.pad + 1, (n,), device=self.device, generator=generator)
        flip = torch.rand(n, device=self.device, generator=generator) < 0.5
        return dy, dx, flip

    def crop_flip(self, idx, dy, dx, flip):
        """The views of samples idx for given offsets/flips: crop rows dy..dy+H-1 and
        columns dx..dx+W-1 of the padded image, mirrored when flip. (B, C, H, W) float32."""
        rows = dy.view(-1, 1) + self._rows                              # (B, H)
        cols = dx.view(-1, 1) + self._cols                              # (B, W)
        cols = torch.where(flip.view(-1, 1), cols.flip(1), cols)        # mirror inside the crop
        out = self.padded[idx.view(-1, 1, 1), rows.unsqueeze(2), cols.unsqueeze(1)]  # (B, H, W, C)
        return self._normalise(out)

    def augment(self, idx, generator):
        """One random train view of each sample in idx (the plain view when crop_flip is off)."""
        if not self.crop_flip_views:
            return self.plain(idx)
        return self.crop_flip(idx, *self.draw(idx.numel(), generator))

    def plain(self, idx):
        """Un-augmented, normalised images idx (eval_train/test)."""
        p = self.pad
        return self._normalise(self.padded[idx, p:p + self.height, p:p + self.width])


_MASK64 = (1 << 64) - 1


def stream_seed(seed, stream=1):
    """A 64-bit seed for an extra generator, derived from a run's `seed` (splitmix64 of
    seed + stream * golden ratio). Why not `seed` itself: a CPU torch.Generator seeded with
    the number torch.manual_seed got replays the global stream from its start, i.e. the very
    numbers that initialised the networks' weights, so crops, flips and shuffles would be
    functions of the initial weights (e.g. flip k == (uniform weight draw k < 0.5)) for as
    many draws as the init took (about one per weight: 414k for two SmallCNNs of width 16,
    22M for two PreResNet18s). The derived seed starts an unrelated stream."""
    z = (int(seed) + 0x9E3779B97F4A7C15 * stream) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)
