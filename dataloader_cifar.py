"""CIFAR-10 / CIFAR-100 (and Fashion-MNIST) with injected label noise, for DivideMix.

Stand-alone: imports only the standard library, numpy, torch, torchvision, PIL and
scikit-learn, so this file can be copied into other code as is.

Public API, as in the DivideMix reference:
    loader = cifar_dataloader(dataset, r, noise_mode, batch_size, num_workers,
                              root_dir, log, noise_file='')
    loader.run('warmup')            -> (img, noisy_label, index), batch 2*batch_size, shuffled
    loader.run('train', pred, prob) -> (labeled_loader, unlabeled_loader)
                                       labeled items (img1, img2, noisy_label, prob),
                                       unlabeled items (img1, img2)
    loader.run('test')              -> (img, true_label)
    loader.run('eval_train')        -> (img, noisy_label, index), not shuffled
`log` is a writable text file (or None): each run('train', ...) writes the
reference's stats line `Numer of labeled samples:%d   AUC:%.3f` (sic) to it.

Beyond the reference (all optional keyword arguments):
    seed=...            noise is drawn from random.Random(seed) instead of the global
                        `random` module (the same numbers: the reference seeded the
                        global module once and used it for nothing else first).
    cifarn_file=...     path of CIFAR-10_human.pt / CIFAR-100_human.pt (CIFAR-N modes).
    data=...            a NoisyData from load_noisy_data(), so nothing is read twice.
Noise modes: sym, asym (reference); asym for CIFAR-100 (next class in the same
superclass), asym_blocks, pairflip, instance (part-dependent), and the CIFAR-N
human labels aggre, worst, rand1, rand2, rand3 (CIFAR-10N) and noisy100 (CIFAR-100N).
"""
import gzip
import json
import math
import os
import pickle
import random

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset


class DatasetError(Exception):
    """A data file is missing, truncated or inconsistent; the message says which and how to fix it."""


# name -> number of classes, per-channel mean/std used by Normalize, image side
DATASETS = {
    'cifar10': dict(num_class=10, mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010), size=32),
    'cifar100': dict(num_class=100, mean=(0.507, 0.487, 0.441), std=(0.267, 0.256, 0.276), size=32),
    # Computed on the 60,000 Fashion-MNIST training images (pixel / 255).
    'fashionmnist': dict(num_class=10, mean=(0.2860,), std=(0.3530,), size=28),
}

# CIFAR-10 asymmetric map of the reference (Patrini et al. 2017):
# truck->automobile, bird->airplane, deer->horse, cat<->dog; other classes unchanged.
CIFAR10_ASYM = {0: 0, 2: 0, 4: 7, 7: 7, 1: 1, 9: 1, 3: 5, 5: 3, 6: 6, 8: 8}
# Fashion-MNIST asymmetric map (our choice, same spirit: visually similar classes):
# T-shirt->shirt, pullover->coat, coat->pullover, sandal->sneaker, ankle boot->sneaker.
FASHIONMNIST_ASYM = {0: 6, 1: 1, 2: 4, 3: 3, 4: 2, 5: 7, 6: 6, 7: 7, 8: 8, 9: 7}

# CIFAR-N (Wei et al., ICLR 2022): noise mode -> (dataset, key in the official .pt file)
CIFARN_MODES = {
    'aggre': ('cifar10', 'aggre_label'),
    'worst': ('cifar10', 'worse_label'),
    'rand1': ('cifar10', 'random_label1'),
    'rand2': ('cifar10', 'random_label2'),
    'rand3': ('cifar10', 'random_label3'),
    'noisy100': ('cifar100', 'noisy_label'),
}
CIFARN_FILES = {'cifar10': 'CIFAR-10_human.pt', 'cifar100': 'CIFAR-100_human.pt'}
SYNTHETIC_MODES = ('sym', 'asym', 'asym_blocks', 'pairflip', 'instance')
NOISE_MODES = SYNTHETIC_MODES + tuple(CIFARN_MODES)


# ----------------------------------------------------------------------------------
# Reading the datasets
# ----------------------------------------------------------------------------------

def unpickle(file):
    """Read one python-version CIFAR batch (a latin1 pickle of a dict)."""
    if not os.path.isfile(file):
        raise DatasetError('missing file %s: expected the python-version CIFAR archive extracted there '
                           '(cifar-10-batches-py/ or cifar-100-python/); pass its folder as --data_path' % file)
    try:
        with open(file, 'rb') as fo:
            return pickle.load(fo, encoding='latin1')
    except Exception as e:  # EOFError, UnpicklingError, ValueError, ... all mean a damaged file
        raise DatasetError('cannot read %s (%s: %s): the file is truncated or not a CIFAR pickle; '
                           're-extract it from the original archive' % (file, type(e).__name__, e)) from None


def _cifar_arrays(dic, label_key, file):
    """(data (N,32,32,3) uint8 HWC, labels int64) from one unpickled batch."""
    if not isinstance(dic, dict) or 'data' not in dic or label_key not in dic:
        raise DatasetError('%s has no "data"/"%s" entries: it is not a %s file; check --dataset and '
                           '--data_path' % (file, label_key, 'CIFAR-100' if label_key == 'fine_labels' else 'CIFAR-10'))
    data = np.asarray(dic['data'])
    if data.dtype != np.uint8:  # a cast would turn e.g. pixels scaled to [0, 1] into zeros and ones, silently
        integral = data.dtype.kind in 'iu' and data.size and 0 <= data.min() and data.max() <= 255
        if not integral:
            raise DatasetError('%s holds pixels of type %s%s; the python-version CIFAR archives store bytes '
                               '0..255 (uint8): re-extract the original archive'
                               % (file, data.dtype, ' outside 0..255' if data.dtype.kind in 'iu' else ''))
        data = data.astype(np.uint8)
    try:
        labels = np.asarray(dic[label_key], dtype=np.int64)
    except (TypeError, ValueError):
        raise DatasetError('%s: its "%s" are not integer class indices (e.g. %r): re-extract the original archive'
                           % (file, label_key, list(dic[label_key])[:1])) from None
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != len(labels):
        raise DatasetError('%s holds data of shape %s for %d labels; expected rows of 3072 bytes, one per '
                           'label: the file is damaged, re-extract it' % (file, data.shape, len(labels)))
    # rows are channel-major (1024 R, 1024 G, 1024 B): (N,3,32,32) then HWC
    return data.reshape((-1, 3, 32, 32)).transpose((0, 2, 3, 1)), labels


def load_cifar(dataset, root_dir):
    """Read CIFAR-10 (data_batch_1..5, test_batch) or CIFAR-100 (train, test) from root_dir.

    Returns dict(train_data, train_label, test_data, test_label, train_coarse) with
    uint8 HWC images and int64 labels; train_coarse holds CIFAR-100 superclasses.
    """
    if not os.path.isdir(root_dir):
        raise DatasetError('data folder %s does not exist: pass the folder holding the extracted '
                           'python-version %s archive as --data_path' % (root_dir, dataset.upper()))
    if dataset == 'cifar10':
        parts = [_cifar_arrays(unpickle(os.path.join(root_dir, 'data_batch_%d' % n)), 'labels',
                               os.path.join(root_dir, 'data_batch_%d' % n)) for n in range(1, 6)]
        train_data = np.concatenate([p[0] for p in parts])
        train_label = np.concatenate([p[1] for p in parts])
        test_file = os.path.join(root_dir, 'test_batch')
        test_data, test_label = _cifar_arrays(unpickle(test_file), 'labels', test_file)
        train_coarse = None
    elif dataset == 'cifar100':
        train_file = os.path.join(root_dir, 'train')
        train_dic = unpickle(train_file)
        train_data, train_label = _cifar_arrays(train_dic, 'fine_labels', train_file)
        train_coarse = (np.asarray(train_dic['coarse_labels'], dtype=np.int64)
                        if 'coarse_labels' in train_dic else None)
        test_file = os.path.join(root_dir, 'test')
        test_data, test_label = _cifar_arrays(unpickle(test_file), 'fine_labels', test_file)
    else:
        raise DatasetError('unknown CIFAR dataset %r: use cifar10 or cifar100' % dataset)
    return dict(train_data=train_data, train_label=train_label, test_data=test_data,
                test_label=test_label, train_coarse=train_coarse)


FASHIONMNIST_FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
                      't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')


def find_idx_folder(root_dir):
    """The folder under root_dir that holds the four Fashion-MNIST IDX files (plain or .gz),
    looking also where torchvision's download puts them (FashionMNIST/raw); None if absent."""
    for folder in (root_dir, os.path.join(root_dir, 'FashionMNIST', 'raw'), os.path.join(root_dir, 'raw')):
        if all(os.path.isfile(os.path.join(folder, f)) or os.path.isfile(os.path.join(folder, f + '.gz'))
               for f in FASHIONMNIST_FILES):
            return folder
    return None


def read_idx(path):
    """Read an IDX file (as MNIST/Fashion-MNIST ship them), gzipped or not, to a uint8 array."""
    opener = gzip.open if path.endswith('.gz') else open
    try:
        with opener(path, 'rb') as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError('cannot read %s (%s): the file is damaged; download it again' % (path, e)) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError('%s is not an unsigned-byte IDX file (bad magic number)' % path)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise DatasetError('%s should hold %s bytes of data for shape %s but holds %d: it is truncated; '
                           'download it again' % (path, int(np.prod(dims)), dims, len(raw) - offset))
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims).copy()  # writable


def load_fashionmnist(root_dir):
    """Fashion-MNIST from IDX files: images as (N,28,28,1) uint8, labels int64."""
    folder = find_idx_folder(root_dir)
    if folder is None:
        raise DatasetError(
            'no Fashion-MNIST IDX files (%s, plain or .gz) in %s: install Debian\'s dataset-fashion-mnist '
            '(files land in /usr/share/datasets/fashion-mnist) and pass that folder as --data_path, or let '
            'torchvision download them (torchvision.datasets.FashionMNIST(root, download=True)) and pass root'
            % (', '.join(FASHIONMNIST_FILES), root_dir))

    def read(name):
        path = os.path.join(folder, name)
        return read_idx(path if os.path.isfile(path) else path + '.gz')

    out = {}
    for split, prefix in (('train', 'train'), ('test', 't10k')):
        images, labels = read(prefix + '-images-idx3-ubyte'), read(prefix + '-labels-idx1-ubyte')
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError('%s: %s images %s do not match labels %s' % (folder, split, images.shape, labels.shape))
        out[split + '_data'] = images[..., None]
        out[split + '_label'] = labels.astype(np.int64)
    out['train_coarse'] = None
    return out


def load_dataset(dataset, root_dir):
    if dataset in ('cifar10', 'cifar100'):
        return load_cifar(dataset, root_dir)
    if dataset == 'fashionmnist':
        return load_fashionmnist(root_dir)
    raise DatasetError('unknown dataset %r: use one of %s' % (dataset, ', '.join(DATASETS)))


# ----------------------------------------------------------------------------------
# Label noise
# ----------------------------------------------------------------------------------

def noisy_indices(num_samples, r, rng):
    """The reference's choice of noisy samples: shuffle range(N) with `rng` (a
    random.Random or the `random` module), take the first int(r * N)."""
    idx = list(range(num_samples))
    rng.shuffle(idx)
    return idx[:int(r * num_samples)]


def superclass_next_map(fine, coarse):
    """CIFAR-100 asym: fine class -> the next fine class (cyclic, by index) within its superclass."""
    members = {}
    for f, c in sorted(set(zip(np.asarray(fine).tolist(), np.asarray(coarse).tolist()))):
        members.setdefault(c, []).append(f)
    mapping = {}
    for group in members.values():
        for k, f in enumerate(group):
            mapping[f] = group[(k + 1) % len(group)]
    return mapping


def class_map(dataset, noise_mode, num_class, coarse=None, fine=None):
    """Class transition map of a class-dependent mode (asym, asym_blocks, pairflip)."""
    if noise_mode == 'pairflip':
        return {c: (c + 1) % num_class for c in range(num_class)}
    if noise_mode == 'asym_blocks':
        # classes in blocks of 5 consecutive indices (0-4, 5-9, ...): next index within the block, cyclic
        return {c: 5 * (c // 5) + (c + 1) % 5 for c in range(num_class)}
    if noise_mode == 'asym':
        if dataset == 'cifar10':
            return dict(CIFAR10_ASYM)
        if dataset == 'fashionmnist':
            return dict(FASHIONMNIST_ASYM)
        if dataset == 'cifar100':
            if coarse is None:
                raise DatasetError('CIFAR-100 asym noise needs the superclass labels ("coarse_labels") of the '
                                   'train file, which this copy lacks: use the original cifar-100-python archive')
            return superclass_next_map(fine, coarse)
    raise DatasetError('no class map for noise mode %r on %s' % (noise_mode, dataset))


def inject_noise(train_label, r, noise_mode, num_class, rng=random, dataset='cifar10', coarse=None):
    """Noisy labels as the reference makes them, for any number of samples.

    rng: random.Random(seed), or the `random` module seeded once by the caller (as the
    reference did). The first int(r*N) of a shuffled range(N) are noisy; then i = 0..N-1
    in order: a noisy sample gets rng.randint(0, C-1) for sym (it may equal the true label:
    kept quirk, the real flip rate is r*(1-1/C)), or its class map image for the
    class-dependent modes (no random draw). Returns a list of int.
    """
    train_label = [int(t) for t in train_label]
    noise_idx = set(noisy_indices(len(train_label), r, rng))  # a set: the reference's list lookup was O(N^2)
    if noise_mode == 'sym':
        return [rng.randint(0, num_class - 1) if i in noise_idx else t for i, t in enumerate(train_label)]
    mapping = class_map(dataset, noise_mode, num_class, coarse=coarse, fine=train_label)
    return [mapping[t] if i in noise_idx else t for i, t in enumerate(train_label)]


def normalised_flat(images, mean, std):
    """(N,H,W,C) uint8 -> (N, C*H*W) float32: x/255, per-channel (x-mean)/std, flattened in CHW order
    (what ToTensor + Normalize + view(-1) gives)."""
    x = images.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.transpose(0, 3, 1, 2).reshape(len(images), -1)


def instance_flip_probs(images, labels, r, num_class, rng, mean, std, sd=0.1, chunk=4096):
    """Part-dependent instance noise (Xia et al., NeurIPS 2020), vectorised.

    Draws, from the numpy Generator `rng` in this order:
      q  (N,)     per-sample flip rates, normal(r, sd) truncated to [0, 1] (rejection);
      W  (C,D,C)  standard-normal projection, one (D, C) matrix per true class.
    x_i is the normalised, flattened image (see normalised_flat). Scores s_i = x_i W[y_i];
    the true class is excluded (-inf) and the flip mass q_i is spread by softmax:
        P[i, c] = q_i * softmax(s_i)[c] for c != y_i,   P[i, y_i] = 1 - q_i.
    Returns P (N, C) float64, rows summing to 1.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    q = rng.normal(r, sd, n)
    bad = (q < 0) | (q > 1)
    while bad.any():
        q[bad] = rng.normal(r, sd, int(bad.sum()))
        bad = (q < 0) | (q > 1)
    dim = int(np.prod(images.shape[1:]))
    W = rng.standard_normal((num_class, dim, num_class), dtype=np.float32)
    P = np.empty((n, num_class), dtype=np.float64)
    for start in range(0, n, chunk):  # chunks keep the float copy of the images small
        sl = slice(start, min(start + chunk, n))
        x = normalised_flat(images[sl], mean, std)
        y = labels[sl]
        scores = np.empty((len(y), num_class), dtype=np.float64)
        for c in np.unique(y):
            rows = np.nonzero(y == c)[0]
            scores[rows] = x[rows] @ W[c]
        scores[np.arange(len(y)), y] = -np.inf
        scores -= scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        P[sl] = q[sl, None] * e / e.sum(axis=1, keepdims=True)
        P[np.arange(start, sl.stop), y] = 1.0 - q[sl]
    return P


def instance_noise(images, labels, r, num_class, seed, mean, std):
    """Labels drawn from instance_flip_probs with np.random.default_rng(seed): after q and W,
    one uniform u_i per sample picks the class by inverse CDF. Returns a list of int."""
    rng = np.random.default_rng(seed)
    P = instance_flip_probs(images, labels, r, num_class, rng, mean, std)
    u = rng.random(len(P))
    noisy = (u[:, None] > np.cumsum(P, axis=1)).sum(axis=1)
    return np.minimum(noisy, num_class - 1).tolist()  # guard against cumsum rounding below 1


def _numpy_safe_globals():
    """The numpy globals a pickled int64 ndarray needs, for torch.load(weights_only=True)."""
    core = getattr(np, '_core', None) or np.core
    return [(core.multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
            (core.multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
            np.ndarray, np.dtype, type(np.dtype(np.int64))]


def load_cifarn(path, noise_mode, train_label, index=None):
    """Noisy labels of a CIFAR-N mode from the official .pt file, checked against the dataset.

    The file is read with torch.load(weights_only=True) and only the numpy globals an
    int64 array needs allowed, so it cannot run code. Its clean_label must equal the
    training labels; otherwise the error says whether the file is truncated, for the
    other dataset, or in another order.
    """
    dataset, key = CIFARN_MODES[noise_mode]
    if not path or not os.path.isfile(path):
        raise DatasetError('noise mode %s needs the CIFAR-N file %s, not found at %r: download it from '
                           'https://github.com/UCSC-REAL/cifar-10-100n (folder data/) and pass its path as '
                           '--cifarn_file' % (noise_mode, CIFARN_FILES[dataset], path))
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            content = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise DatasetError('cannot read CIFAR-N file %s (%s): it is damaged or not a CIFAR-N label file; '
                           'download %s again' % (path, str(e).splitlines()[0][:200], CIFARN_FILES[dataset])) from None
    if not isinstance(content, dict) or key not in content or 'clean_label' not in content:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise DatasetError('%s has no "%s"/"clean_label" entries (it holds %s): noise mode %s needs %s'
                           % (path, key, keys, noise_mode, CIFARN_FILES[dataset]))
    clean = np.asarray(content['clean_label'], dtype=np.int64).reshape(-1)
    noisy = np.asarray(content[key], dtype=np.int64).reshape(-1)
    train_label = np.asarray(train_label, dtype=np.int64)
    if index is not None and len(clean) > len(train_label):  # a subset of the training set
        index = np.asarray(index)
        if index.max() >= len(clean):
            raise DatasetError('%s holds %d labels, fewer than the training set it should cover'
                               % (path, len(clean)))
        clean, noisy = clean[index], noisy[index]
    if len(clean) != len(train_label) or len(noisy) != len(train_label):
        raise DatasetError('%s holds %d labels but the training set has %d images: the file is truncated or '
                           'made for a subset; use the official %s' % (path, len(clean), len(train_label),
                                                                         CIFARN_FILES[dataset]))
    if not np.array_equal(clean, train_label):
        if clean.max() != train_label.max():
            reason = ('it is for another dataset (its labels span %d classes, the training set %d): pair '
                      'CIFAR-10_human.pt with CIFAR-10 and CIFAR-100_human.pt with CIFAR-100'
                      % (clean.max() + 1, train_label.max() + 1))
        elif np.array_equal(np.bincount(clean, minlength=100), np.bincount(train_label, minlength=100)):
            reason = ('the same labels in another order: the training set must be the python-version '
                      'archive in its own order (data_batch_1..5 concatenated, or CIFAR-100 train)')
        else:
            reason = ('%.1f%% of its clean labels differ from the training labels: wrong dataset or a '
                      'modified training set' % (100.0 * np.mean(clean != train_label)))
        raise DatasetError('CIFAR-N file %s does not match the training set: %s' % (path, reason))
    return noisy.tolist()


def default_noise_file(root_dir, r, noise_mode, seed=None, dataset='cifar10'):
    """The cache file of a noise mode. sym/asym keep the reference's '<root>/<r %.1f>_<mode>.json';
    the class-dependent extras add only the mode, instance noise adds the seed it depends on,
    CIFAR-N modes are named after the mode alone (their labels do not depend on r or seed)."""
    if noise_mode in CIFARN_MODES:
        return os.path.join(root_dir, '%sn_%s.json' % (dataset, noise_mode))
    if noise_mode == 'instance':
        return os.path.join(root_dir, '%.1f_%s_seed%s.json' % (r, noise_mode, seed))
    return os.path.join(root_dir, '%.1f_%s.json' % (r, noise_mode))


def read_noise_file(noise_file, num_samples, num_class):
    """Read and check a cached noise file: a JSON list of num_samples ints in [0, num_class)."""
    if os.path.isdir(noise_file):
        raise DatasetError('noise file %s is a folder: pass the path of a JSON file with --noise_file (it is '
                           'created there when missing)' % noise_file)
    try:
        with open(noise_file, 'r') as f:
            labels = json.load(f)
    except OSError as e:
        raise DatasetError('cannot read noise file %s (%s): make it readable, or pass another --noise_file'
                           % (noise_file, e.strerror or e)) from None
    except ValueError as e:
        raise DatasetError('noise file %s is not valid JSON (%s): delete it to regenerate the noise, '
                           'or pass a valid --noise_file' % (noise_file, e)) from None
    if not isinstance(labels, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        raise DatasetError('noise file %s must hold a JSON list of integer labels: delete it to regenerate '
                           'the noise, or pass a valid --noise_file' % noise_file)
    if len(labels) != num_samples:
        raise DatasetError('noise file %s has %d labels but the training set has %d images: it was made for '
                           'another dataset or subset; delete it to regenerate the noise, or pass the right '
                           '--noise_file' % (noise_file, len(labels), num_samples))
    bad = [v for v in labels if v < 0 or v >= num_class]
    if bad:
        raise DatasetError('noise file %s holds labels outside [0, %d) (e.g. %d): it was made for a dataset '
                           'with more classes; delete it or pass the right --noise_file'
                           % (noise_file, num_class, bad[0]))
    return labels


def expected_noise_rate(noise_mode, r, train_label, num_class, dataset='cifar10', coarse=None):
    """(mean, sd) of the fraction of labels that the noise of a synthetic mode changes, for these true
    labels: what a noise file made for r and noise_mode must show, up to sampling noise. None for the
    CIFAR-N modes (human labels: no r). n = int(r * N) samples are chosen; sym gives each of them a
    uniform label (changed with probability (C-1)/C), the class maps change the chosen samples whose
    class maps elsewhere (hypergeometric), instance flips sample i with q_i ~ N(r, 0.1) on [0, 1]."""
    labels = np.asarray(train_label, dtype=np.int64)
    N = len(labels)
    if noise_mode in CIFARN_MODES or N == 0:
        return None
    n = int(r * N)
    if noise_mode == 'sym':
        p = (num_class - 1) / num_class
        return n * p / N, (n * p * (1 - p)) ** 0.5 / N
    if noise_mode == 'instance':
        s = 0.1
        pdf = lambda z: np.exp(-z * z / 2) / (2 * np.pi) ** 0.5
        cdf = lambda z: 0.5 * (1 + math.erf(z / 2 ** 0.5))
        a, b = (0 - r) / s, (1 - r) / s
        mean = r + s * (pdf(a) - pdf(b)) / (cdf(b) - cdf(a))  # the truncated normal's mean
        return mean, ((N * mean * (1 - mean)) ** 0.5 + s * N ** 0.5) / N
    mapping = class_map(dataset, noise_mode, num_class, coarse=coarse, fine=labels)
    p = float(np.mean([mapping[int(c)] != int(c) for c in labels]))
    var = n * p * (1 - p) * (N - n) / max(N - 1, 1)
    return n * p / N, var ** 0.5 / N


def make_noise_labels(dataset, data, r, noise_mode, num_class, rng=random, seed=None, cifarn_file=None):
    """Noisy labels for `data` (from load_dataset) without any caching."""
    if noise_mode in CIFARN_MODES:
        want = CIFARN_MODES[noise_mode][0]
        if dataset != want:
            raise DatasetError('noise mode %s is a %s label set; use --dataset %s' % (noise_mode, want, want))
        return load_cifarn(cifarn_file, noise_mode, data['train_label'], data.get('train_index'))
    if noise_mode == 'instance':
        info = DATASETS[dataset]
        return instance_noise(data['train_data'], data['train_label'], r, num_class,
                              0 if seed is None else seed, info['mean'], info['std'])
    if noise_mode not in SYNTHETIC_MODES:
        raise DatasetError('unknown noise mode %r: use one of %s' % (noise_mode, ', '.join(NOISE_MODES)))
    return inject_noise(data['train_label'], r, noise_mode, num_class, rng=rng, dataset=dataset,
                        coarse=data.get('train_coarse'))


class NoisyData(object):
    """A dataset read once with its noisy labels; what the datasets and loaders share.

    Attributes: dataset, num_class, mean, std, train_data (N,H,W,C) uint8,
    train_label / noise_label / test_label int64 arrays, test_data, noise_file,
    created_noise (True when the labels were generated now rather than read).
    """

    def __init__(self, dataset, raw, noise_label, noise_file='', created_noise=False):
        info = DATASETS[dataset]
        self.dataset = dataset
        self.num_class = info['num_class']
        self.mean, self.std = info['mean'], info['std']
        self.train_data = raw['train_data']
        self.train_label = np.asarray(raw['train_label'], dtype=np.int64)
        self.train_coarse = raw.get('train_coarse')
        self.test_data = raw['test_data']
        self.test_label = np.asarray(raw['test_label'], dtype=np.int64)
        self.noise_label = np.asarray(noise_label, dtype=np.int64)
        self.noise_file = noise_file
        self.created_noise = created_noise

    @property
    def clean(self):
        """Boolean (N,): the noisy label equals the true label."""
        return self.noise_label == self.train_label

    @property
    def noise_rate(self):
        """The realised fraction of training labels that differ from the true ones."""
        return float(np.mean(~self.clean)) if len(self.noise_label) else 0.0


def take_subset(raw, train_subset=None, test_subset=None):
    """Keep a fixed random subset of the training and/or test images (for quick runs).
    The subset depends only on its size (numpy RandomState(0)), never on the run's seed,
    so runs that differ in seed or method see the same images; it keeps dataset order."""
    raw = dict(raw)
    for split, size in (('train', train_subset), ('test', test_subset)):
        if not size:
            continue
        n = len(raw[split + '_label'])
        if size > n:
            raise DatasetError('a %s subset of %d images was asked for, but the %s set has only %d'
                               % (split, size, split, n))
        keep = np.sort(np.random.RandomState(0).permutation(n)[:size])
        if split == 'train':
            raw['train_index'] = keep  # positions in the full training set (CIFAR-N files cover all of it)
        for key in (split + '_data', split + '_label', split + '_coarse'):
            if raw.get(key) is not None:
                raw[key] = np.asarray(raw[key])[keep]
    return raw


def load_noisy_data(dataset, r, noise_mode, root_dir, noise_file='', rng=None, seed=None, cifarn_file=None,
                    train_subset=None, test_subset=None, write_noise_file=True):
    """Read `dataset` from root_dir and attach noisy labels: read from noise_file when it
    exists (used as is, whatever the seed: the reference's rule), else generated and
    written there (JSON list of int) when noise_file is not ''.

    rng: where sym/asym draws come from; default random.Random(seed) when a seed is
    given, else the global `random` module (the reference's behaviour).
    train_subset/test_subset: see take_subset (the noise is drawn over the subset).
    write_noise_file=False: generate the labels without writing them (the processes of a torchrun
    job other than rank 0 draw the same labels from the same seed; rank 0 alone writes the file).
    """
    raw = take_subset(load_dataset(dataset, root_dir), train_subset, test_subset)
    num_class = DATASETS[dataset]['num_class']
    n = len(raw['train_label'])
    if noise_file and os.path.exists(noise_file):
        return NoisyData(dataset, raw, read_noise_file(noise_file, n, num_class), noise_file)
    if rng is None:
        rng = random.Random(seed) if seed is not None else random
    labels = make_noise_labels(dataset, raw, r, noise_mode, num_class, rng=rng, seed=seed, cifarn_file=cifarn_file)
    if noise_file and write_noise_file:
        tmp = noise_file + '.tmp%d' % os.getpid()
        try:
            with open(tmp, 'w') as f:
                json.dump(labels, f)
            os.replace(tmp, noise_file)  # never leave a half-written cache behind
        except OSError as e:
            raise DatasetError('cannot write the noise file %s (%s): make its folder writable or pass '
                               '--noise_file with a writable path' % (noise_file, e)) from None
    return NoisyData(dataset, raw, labels, noise_file, created_noise=True)


def labeled_auc(prob, clean):
    """ROC AUC of the clean probability against the truly-clean indicator (NaN when undefined).

    sklearn's tie-aware AUC; the reference used torchnet's AUCMeter, which does not group
    tied scores, so the two can differ in the third decimal when many probabilities tie.
    """
    from sklearn.metrics import roc_auc_score
    clean = np.asarray(clean, dtype=bool)
    if clean.all() or not clean.any():
        return float('nan')
    return float(roc_auc_score(clean, np.asarray(prob, dtype=np.float64)))


# ----------------------------------------------------------------------------------
# Datasets and loaders (reference API)
# ----------------------------------------------------------------------------------

def _to_pil(img):
    return Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)


def make_transforms(dataset, crop_flip=True):
    """(train, test) transforms: RandomCrop(side, padding=4) with zero padding, horizontal
    flip, ToTensor, Normalize; test: ToTensor, Normalize. crop_flip=False: the train
    transform is the test one (no augmentation; not the reference's)."""
    # imported here: torchvision takes about a second to import (its ops pull in torch._dynamo), and
    # only the reference pipeline (and the copy-alone use of this file) needs its transforms
    import torchvision.transforms as transforms
    info = DATASETS[dataset]
    normalize = transforms.Normalize(info['mean'], info['std'])
    augment = [transforms.RandomCrop(info['size'], padding=4), transforms.RandomHorizontalFlip()] if crop_flip else []
    train = transforms.Compose(augment + [transforms.ToTensor(), normalize])
    test = transforms.Compose([transforms.ToTensor(), normalize])
    return train, test


class cifar_dataset(Dataset):
    """One view of the data, by mode: 'all' (every training sample, noisy label, index),
    'labeled' (pred True: two views, noisy label, clean probability), 'unlabeled'
    (pred False: two views), 'test' (true labels)."""

    def __init__(self, dataset, r, noise_mode, root_dir, transform, mode, noise_file='', pred=[],
                 probability=[], log='', data=None, seed=None, cifarn_file=None):
        self.transform = transform
        self.mode = mode
        if data is None:
            data = load_noisy_data(dataset, r, noise_mode, root_dir, noise_file, seed=seed, cifarn_file=cifarn_file)
        self.data = data
        if mode == 'test':
            self.test_data, self.test_label = data.test_data, data.test_label.tolist()
            return
        if mode == 'all':
            self.train_data, self.noise_label = data.train_data, data.noise_label.tolist()
            return
        pred = np.asarray(pred).astype(bool).reshape(-1)  # bool or 0/1; (1 - bool_array) fails in numpy >= 1.25
        if len(pred) != len(data.noise_label):
            raise ValueError('pred has %d entries for %d training samples' % (len(pred), len(data.noise_label)))
        if mode == 'labeled':
            pred_idx = pred.nonzero()[0]
            probability = np.asarray(probability, dtype=np.float64).reshape(-1)
            self.probability = probability[pred_idx].tolist()
            if log:
                auc = labeled_auc(probability, data.clean)
                log.write('Numer of labeled samples:%d   AUC:%.3f\n' % (pred.sum(), auc))
                log.flush()
        elif mode == 'unlabeled':
            pred_idx = (~pred).nonzero()[0]
        else:
            raise ValueError("mode must be one of 'all', 'labeled', 'unlabeled', 'test', not %r" % mode)
        self.train_data = data.train_data[pred_idx]
        self.noise_label = data.noise_label[pred_idx].tolist()

    def __getitem__(self, index):
        if self.mode == 'labeled':
            img = _to_pil(self.train_data[index])
            return self.transform(img), self.transform(img), self.noise_label[index], self.probability[index]
        if self.mode == 'unlabeled':
            img = _to_pil(self.train_data[index])
            return self.transform(img), self.transform(img)
        if self.mode == 'all':
            return self.transform(_to_pil(self.train_data[index])), self.noise_label[index], index
        return self.transform(_to_pil(self.test_data[index])), self.test_label[index]

    def __len__(self):
        return len(self.test_data) if self.mode == 'test' else len(self.train_data)


class cifar_dataloader():
    """Builds the reference's loaders; the data and noisy labels are read once, here."""

    def __init__(self, dataset, r, noise_mode, batch_size, num_workers, root_dir, log, noise_file='',
                 seed=None, cifarn_file=None, data=None, eval_batch_size=None, crop_flip=True, pin_memory=False):
        """pin_memory: page-locked batches for fast copies to a GPU (Train_cifar.py passes whether its run
        is on a GPU; the reference did not pin)."""
        self.pin_memory = pin_memory
        self.dataset = dataset
        self.r = r
        self.noise_mode = noise_mode
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.root_dir = root_dir
        self.log = log
        self.noise_file = noise_file
        self.data = data if data is not None else load_noisy_data(
            dataset, r, noise_mode, root_dir, noise_file, seed=seed, cifarn_file=cifarn_file)
        self.transform_train, self.transform_test = make_transforms(dataset, crop_flip)

    def _dataset(self, mode, transform, pred=[], prob=[], log=''):
        return cifar_dataset(self.dataset, self.r, self.noise_mode, self.root_dir, transform, mode,
                             self.noise_file, pred=pred, probability=prob, log=log, data=self.data)

    def _loader(self, dataset, batch_size, shuffle):
        # an empty set (a division with nothing on one side) cannot be shuffled: RandomSampler refuses 0 items
        return DataLoader(dataset=dataset, batch_size=batch_size, shuffle=shuffle and len(dataset) > 0,
                          num_workers=self.num_workers, persistent_workers=False, pin_memory=self.pin_memory)

    def run(self, mode, pred=[], prob=[]):
        if mode == 'warmup':
            return self._loader(self._dataset('all', self.transform_train), self.batch_size * 2, True)
        if mode == 'train':
            labeled = self._dataset('labeled', self.transform_train, pred, prob, log=self.log)
            unlabeled = self._dataset('unlabeled', self.transform_train, pred)
            return (self._loader(labeled, self.batch_size, True), self._loader(unlabeled, self.batch_size, True))
        if mode == 'test':
            return self._loader(self._dataset('test', self.transform_test), self.eval_batch_size, False)
        if mode == 'eval_train':
            return self._loader(self._dataset('all', self.transform_test), self.eval_batch_size, False)
        raise ValueError("mode must be one of 'warmup', 'train', 'test', 'eval_train', not %r" % mode)
