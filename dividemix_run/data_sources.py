"""Where DivideMix's batches come from: one interface, every pipeline behind it.

    DeviceSource    small images (CIFAR, Fashion-MNIST) as uint8 on the device, every view made
                    in batch there (device_data.DeviceImages); the default CIFAR pipeline
    LoaderSource    a reference loader's run(mode, pred, prob) API (PIL transforms + DataLoader):
                    CIFAR's --pipeline reference, and WebVision
    ClothingSource  Clothing1M's loader: each warm-up and each division draws a fresh
                    class-balanced sample; the division of net k keeps its image paths here

The interface is DataSource's (the methods dividemix.py calls, plus the random state that
checkpoints keep). Batches are tensors on the device, in the runtime's layout.

Under torchrun every rank draws the same shuffles and augmentations as the single process and takes
the rank's contiguous part of every global batch (distributed.part); dividemix.py gathers the parts
in rank order. A training batch with fewer rows than processes is skipped on every rank (it can only
be the last, ragged one of a pass); evaluation passes split every batch, however small.
"""
import abc

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from . import distributed
from .cli import UsageError
from .device_data import DeviceImages, stream_seed


class Batches(object):
    """One pass of batches that knows its length (for progress bars)."""

    def __init__(self, iterable, length):
        self.iterable, self.length = iterable, length

    def __iter__(self):
        return iter(self.iterable)

    def __len__(self):
        return self.length


def generator_device(state):
    """The kind of device ('cpu' or 'cuda') whose random generator a source's state_dict holds, or None
    for a source without a generator of its own. A generator's state continues only on its own kind of
    device: a CUDA (Philox) state is 16 bytes (seed and offset), a CPU (Mersenne Twister) one 5,056."""
    if not isinstance(state, dict) or state.get('generator') is None:
        return None
    return state.get('device') or ('cuda' if state['generator'].numel() == 16 else 'cpu')  # before 'device' was saved


class DataSource(abc.ABC):
    """What DivideMix reads; k is the network (0 or 1) a pass or a division is for."""

    @abc.abstractmethod
    def warmup_batches(self, k):
        """(x, noisy_label, index) batches of 2B, shuffled, with the train augmentation: net k's warm-up pass."""

    @abc.abstractmethod
    def eval_batches(self, k):
        """(x, noisy_label, index) batches without augmentation over the samples net k divides, each once,
        index 0..n-1 in the order train_batches(division) refers to."""

    @abc.abstractmethod
    def train_batches(self, division):
        """(labeled, unlabeled, num_labeled) for a dividemix.Division: labeled (x, x2, noisy_label, w_x)
        batches of B, shuffled, one pass; unlabeled an endless iterator of (u, u2) batches of B that
        restarts with a fresh shuffle when the set runs out, or None when nothing is unlabeled."""

    @abc.abstractmethod
    def test_batches(self, split='test'):
        """(x, label) batches of a clean split ('test'; Clothing1M also 'val', WebVision 'imagenet')."""

    def randperm(self, n, device=None):
        """The MixUp partner permutation: the reference's, from torch's global CPU generator."""
        return torch.randperm(n).to(device)

    def state_dict(self):
        """The source's own random state (beyond the global streams every checkpoint keeps)."""
        return {}

    def load_state_dict(self, state):
        pass


# ----------------------------------------------------------------------------------
# On the device
# ----------------------------------------------------------------------------------

def _chunks(order, batch_size):
    """Split an index tensor into consecutive batches; the ragged last batch is kept."""
    return [order[i:i + batch_size] for i in range(0, order.numel(), batch_size)]


def _num_chunks(n, batch_size):
    return (n + batch_size - 1) // batch_size


def _my_part(n, train, min_rows=1):
    """This rank's slice of a global batch of n rows, or None to skip the batch: a training batch
    smaller than the number of processes would leave a rank without rows, and one of fewer than
    min_rows the network cannot train on (BatchNorm needs two values per channel: a batch of one image
    whose last feature map is 1x1 has one)."""
    rank, world = distributed.rank(), distributed.world_size()
    if train and n < max(world, min_rows):
        return None
    if world == 1:
        return slice(None)
    return distributed.part(n, rank, world)


class DeviceSource(DataSource):
    """The reference loader's modes on device tensors: index tensors instead of datasets,
    nothing rebuilt per epoch, no DataLoader in the hot loop.

    train_images (N,H,W,C) uint8, noise_label (N,), test_images, test_label; mean, std;
    batch_size B (warm-up 2B, labeled and unlabeled B); eval_batch_size: eval_train/test
    batches (eval mode, so any size gives the same numbers up to float summation order).
    seed: the run's seed; the source's generator starts from stream_seed(seed), a stream
    unrelated to torch.manual_seed(seed)'s. crop_flip: False trains on plain views. min_train_rows:
    training batches with fewer rows are skipped (2 for networks that cannot train on one image).
    """

    def __init__(self, train_images, noise_label, test_images, test_label, mean, std, batch_size, device, *,
                 seed=0, eval_batch_size=1024, channels_last=False, crop_flip=True, min_train_rows=1):
        self.min_train_rows = min_train_rows
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
        """MixUp partner permutation from the source's generator (same signature as torch.randperm)."""
        return self._perm(n)

    def state_dict(self):
        return {'generator': self.generator.get_state(), 'device': self.device.type}

    def load_state_dict(self, state):
        self.generator.set_state(state['generator'])

    def _views(self, idx, part):
        """Train views of idx[part]; the random draws are made for the whole global batch idx, so
        that every rank's generator stays in step and its views are the single process's."""
        if not self.train.crop_flip_views:
            return self.train.plain(idx[part])
        dy, dx, flip = self.train.draw(idx.numel(), self.generator)
        return self.train.crop_flip(idx[part], dy[part], dx[part], flip[part])

    def warmup_batches(self, k=0):
        def batches():
            for idx in _chunks(self._perm(self.num_samples), self.batch_size * 2):
                part = _my_part(idx.numel(), True, self.min_train_rows)
                if part is not None:
                    yield self._views(idx, part), self.noise_label[idx[part]], idx[part]
        return Batches(batches(), _num_chunks(self.num_samples, self.batch_size * 2))

    def _in_order(self, n):
        """This rank's parts of the in-order batches of n samples (eval_train, test)."""
        for idx in _chunks(torch.arange(n, device=self.device), self.eval_batch_size):
            idx = idx[_my_part(idx.numel(), train=False)]
            if idx.numel():
                yield idx

    def eval_batches(self, k=0):
        def batches():
            for idx in self._in_order(self.num_samples):
                yield self.train.plain(idx), self.noise_label[idx], idx
        return Batches(batches(), _num_chunks(self.num_samples, self.eval_batch_size))

    def test_batches(self, split='test'):
        if split != 'test':
            raise ValueError('DeviceSource has a test split only, not %r' % split)

        def batches():
            for idx in self._in_order(len(self.test_images)):
                yield self.test_images.plain(idx), self.test_label[idx]
        return Batches(batches(), _num_chunks(len(self.test_images), self.eval_batch_size))

    def train_batches(self, division):
        # the division is a host array: its index sets are cut there (a nonzero() on the device would
        # make the host wait for it) and copied over once
        pred = np.asarray(division.pred, dtype=bool).reshape(-1)
        prob = torch.as_tensor(division.prob, dtype=torch.float32).to(self.device)
        labeled_idx = torch.from_numpy(np.flatnonzero(pred)).to(self.device)
        unlabeled_idx = torch.from_numpy(np.flatnonzero(~pred)).to(self.device)
        unlabeled = self._unlabeled_stream(unlabeled_idx) if unlabeled_idx.numel() else None
        return self._labeled(labeled_idx, prob), unlabeled, int(labeled_idx.numel())

    def _two_views(self, idx):
        """One shuffled pass over the samples idx in training batches: (this rank's rows, view, second view)."""
        for batch in _chunks(idx[self._perm(idx.numel())], self.batch_size):
            part = _my_part(batch.numel(), True, self.min_train_rows)
            if part is not None:
                yield batch[part], self._views(batch, part), self._views(batch, part)

    def _labeled(self, labeled_idx, prob):
        if not labeled_idx.numel():
            return
        for rows, x, x2 in self._two_views(labeled_idx):
            yield x, x2, self.noise_label[rows], prob[rows]

    def _unlabeled_stream(self, unlabeled_idx):
        while True:  # the reference's loader restart: a fresh shuffle each time the set runs out
            for _, u, u2 in self._two_views(unlabeled_idx):
                yield u, u2


# ----------------------------------------------------------------------------------
# Through the reference's DataLoaders
# ----------------------------------------------------------------------------------

def on_device(loader, runtime):
    """Batches of a DataLoader moved to the device (float tensors in the runtime's layout)."""
    for batch in loader:
        yield tuple(runtime.inputs(t) if isinstance(t, torch.Tensor) else t for t in batch)


def cycle(loader, runtime):
    """The reference's unlabeled stream: iterate the loader, start it again when it runs out."""
    while True:
        yield from on_device(loader, runtime)


class RankBatches(Sampler):
    """The batches of batch_sampler (its shuffle drawn alike on every rank), cut to this rank's part;
    train: a batch smaller than the number of processes, or than min_rows, is skipped on every rank."""

    def __init__(self, batch_sampler, train, min_rows=1):
        self.batch_sampler, self.train, self.min_rows = batch_sampler, train, min_rows

    def __iter__(self):
        for batch in self.batch_sampler:
            part = _my_part(len(batch), self.train, self.min_rows)
            if part is not None and batch[part]:
                yield batch[part]

    def __len__(self):
        return len(self.batch_sampler)


class WithIndex(Dataset):
    """(item[0], item[1], index): a dataset's items with their position (Clothing1M's carry paths)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getitem__(self, index):
        item = self.dataset[index]
        return item[0], item[1], index

    def __len__(self):
        return len(self.dataset)


def shard(loader, train, dataset=None, min_rows=1):
    """A DataLoader over this rank's parts of `loader`'s batches (itself without a process group, when
    no batch is to be skipped)."""
    if distributed.world_size() == 1 and dataset is None and (min_rows <= 1 or not train):
        return loader
    return DataLoader(dataset or loader.dataset, batch_sampler=RankBatches(loader.batch_sampler, train, min_rows),
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory)


def _train_streams(labeled, unlabeled, runtime, min_rows=1):
    return (on_device(shard(labeled, True, min_rows=min_rows), runtime),
            cycle(shard(unlabeled, True, min_rows=min_rows), runtime) if len(unlabeled.dataset) else None,
            len(labeled.dataset))


class LoaderSource(DataSource):
    """A loader with the reference's run(mode, pred, prob) API: modes 'warmup', 'eval_train',
    'train' and the clean splits (CIFAR 'test'; WebVision 'test', 'imagenet'). min_train_rows: training
    batches with fewer rows are skipped (2 for networks that cannot train on one image)."""

    def __init__(self, loader, runtime, min_train_rows=1):
        self.loader = loader
        self.runtime = runtime
        self.min_train_rows = min_train_rows

    def _batches(self, mode):
        loader = self.loader.run(mode)
        return Batches(on_device(shard(loader, mode == 'warmup', min_rows=self.min_train_rows), self.runtime),
                       len(loader))

    def warmup_batches(self, k=0):
        return self._batches('warmup')

    def eval_batches(self, k=0):
        return self._batches('eval_train')

    def test_batches(self, split='test'):
        return self._batches(split)

    def train_batches(self, division):
        return _train_streams(*self.loader.run('train', division.pred, division.prob), self.runtime,
                              self.min_train_rows)


class ClothingSource(LoaderSource):
    """Clothing1M's loader: warmup_batches(k) and eval_batches(k) each draw a fresh class-balanced
    sample (from Python's `random`, as the reference); the paths of the sample net k divided stay
    here until train_batches trains the other net on that division."""

    def __init__(self, loader, runtime):
        super().__init__(loader, runtime)
        self.paths = [None, None]

    def eval_batches(self, k=0):
        loader = self.loader.run('eval_train')
        self.paths[k] = list(loader.dataset.train_imgs)  # the sample's paths, in its order
        # drawn alike by every process (same seeded stream, same lists); a node whose lists differ would
        # apply the division to other images
        distributed.check_same('\n'.join(self.paths[k]), "this epoch's class-balanced sample of Clothing1M",
                               UsageError)

        def batches():  # items carry their path; the index is the position in the sample
            for x, y, index in shard(loader, False, WithIndex(loader.dataset)):
                yield self.runtime.inputs(x), y.to(self.runtime.device), index
        return Batches(batches(), len(loader))

    def train_batches(self, division):
        paths = self.paths[division.net]
        if paths is None or len(paths) != len(division.pred):
            raise ValueError('this division was not made on the sample eval_batches(%d) drew last' % division.net)
        return _train_streams(*self.loader.run('train', division.pred, division.prob, paths=paths), self.runtime)
