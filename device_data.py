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

DevicePipeline mirrors the reference loader's modes with index tensors: nothing is
rebuilt per epoch and no DataLoader runs in the hot loop.
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
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
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


def _batches(order, batch_size):
    """Split an index tensor into consecutive batches; the ragged last batch is kept."""
    return [order[i:i + batch_size] for i in range(0, order.numel(), batch_size)]


class DevicePipeline(object):
    """The reference loader's modes, on device tensors.

    train_images (N,H,W,C) uint8, noise_label (N,), test_images, test_label; mean, std;
    batch_size: as the reference (warm-up 2x, labeled and unlabeled 1x);
    eval_batch_size: eval_train/test batches (eval mode, so any size gives the same
    numbers up to float summation order). seed: the run's seed; the pipeline's own generator
    starts from stream_seed(seed), a stream unrelated to torch.manual_seed(seed)'s.
    crop_flip: False trains on plain views (see DeviceImages).
    """

    def __init__(self, train_images, noise_label, test_images, test_label, mean, std, batch_size, device,
                 seed=0, eval_batch_size=1024, channels_last=False, crop_flip=True):
        self.device = torch.device(device)
        self.train = DeviceImages(train_images, mean, std, self.device, channels_last=channels_last,
                                  crop_flip=crop_flip)
        self.test_images = DeviceImages(test_images, mean, std, self.device, channels_last=channels_last)
        self.noise_label = torch.as_tensor(noise_label, dtype=torch.long).to(self.device)
        self.test_label = torch.as_tensor(test_label, dtype=torch.long).to(self.device)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(stream_seed(seed))

    @property
    def num_samples(self):
        return len(self.train)

    def _perm(self, n):
        return torch.randperm(n, device=self.device, generator=self.generator)

    def randperm(self, n, device=None):
        """MixUp partner permutation from the pipeline's generator (same signature as torch.randperm)."""
        return self._perm(n)

    def warmup_batches(self):
        """(x, noisy_label, index), shuffled, batch 2 x batch_size."""
        for idx in _batches(self._perm(self.num_samples), self.batch_size * 2):
            yield self.train.augment(idx, self.generator), self.noise_label[idx], idx

    def eval_batches(self):
        """(x, noisy_label, index), in order, no augmentation."""
        for idx in _batches(torch.arange(self.num_samples, device=self.device), self.eval_batch_size):
            yield self.train.plain(idx), self.noise_label[idx], idx

    def test_batches(self):
        """(x, true_label), in order."""
        for idx in _batches(torch.arange(len(self.test_images), device=self.device), self.eval_batch_size):
            yield self.test_images.plain(idx), self.test_label[idx]

    def train_batches(self, pred, prob):
        """Co-divide as index tensors. pred (N,) bool (labeled = True), prob (N,) clean probability.
        Returns (labeled batches, unlabeled stream or None, number labeled):
          labeled: iterator of (x, x2, noisy_label, prob), shuffled, batch_size, ragged last kept;
          unlabeled: endless iterator of (u, u2), shuffled batches of batch_size that restart
                     with a fresh permutation when the set runs out (like the reference's
                     loader restart); None when nothing is unlabeled."""
        pred = torch.as_tensor(pred, dtype=torch.bool).to(self.device)
        prob = torch.as_tensor(prob, dtype=torch.float32).to(self.device)
        labeled_idx = pred.nonzero().view(-1)
        unlabeled_idx = (~pred).nonzero().view(-1)
        unlabeled = self._unlabeled_stream(unlabeled_idx) if unlabeled_idx.numel() else None
        return self._labeled(labeled_idx, prob), unlabeled, int(labeled_idx.numel())

    def _labeled(self, labeled_idx, prob):
        if not labeled_idx.numel():
            return
        for batch in _batches(labeled_idx[self._perm(labeled_idx.numel())], self.batch_size):
            x = self.train.augment(batch, self.generator)
            x2 = self.train.augment(batch, self.generator)
            yield x, x2, self.noise_label[batch], prob[batch]

    def _unlabeled_stream(self, unlabeled_idx):
        while True:
            for batch in _batches(unlabeled_idx[self._perm(unlabeled_idx.numel())], self.batch_size):
                u = self.train.augment(batch, self.generator)
                u2 = self.train.augment(batch, self.generator)
                yield u, u2
