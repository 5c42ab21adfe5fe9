"""Your own noisily labelled images for DivideMix: an ImageFolder tree or list files.

Stand-alone: imports only the standard library, numpy, torch, torchvision and PIL, so this file
can be copied into other code as is.

Layouts of the data root (Train_folder.py --data_path ROOT):
    ROOT/train/<class>/<image>         the folder's name is the given (possibly noisy) label
    ROOT/val/<class>/<image>           optional clean splits, with the same class folders
    ROOT/test/<class>/<image>
or list files (the Clothing1M/WebVision convention):
    ROOT/train.txt                     lines '<path relative to ROOT> <label index>'
    ROOT/val.txt, ROOT/test.txt        optional, the same form
    ROOT/classes.txt                   optional: one class name per line, line k names label k
                                       (without it the classes are 0..max label)
Images: anything Pillow reads (PNG, JPEG, BMP, TIFF, WebP, ...), any size, grey or colour.

    data = scan(root)                  -> FolderData: classes, splits {'train': (paths, labels), ...}
    images = load_images(paths, size, channels)   -> uint8 (N, size, size, channels), for small images
    loader = folder_dataloader(data, batch_size, num_workers, train_transform, test_transform)
    loader.run('warmup' | 'eval_train' | 'test' | 'val'), loader.run('train', pred, prob)
                                       -> the reference loaders' API, for large images
"""
import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm', '.pgm', '.pbm')
SPLITS = ('train', 'val', 'test')


class DatasetError(Exception):
    """A folder, list, label or image is missing, malformed or unreadable; the message names it."""


class FolderData(object):
    """What scan() found: layout ('folders' or 'lists'), classes (names, index = label), and for each
    split present, (paths, labels) with absolute paths and int64 labels."""

    def __init__(self, root, layout, classes, splits):
        self.root, self.layout, self.classes, self.splits = root, layout, list(classes), splits

    @property
    def num_class(self):
        return len(self.classes)

    @property
    def eval_split(self):
        """The clean split the run is tested on: test if there is one, else val, else None."""
        return 'test' if 'test' in self.splits else ('val' if 'val' in self.splits else None)


def _images_in(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if not f.startswith('.') and f.lower().endswith(IMAGE_EXTENSIONS)
                  and os.path.isfile(os.path.join(folder, f)))


def _scan_folders(root):
    splits, classes = {}, None
    for split in SPLITS:
        top = os.path.join(root, split)
        if not os.path.isdir(top):
            continue
        names = sorted(d for d in os.listdir(top) if not d.startswith('.') and os.path.isdir(os.path.join(top, d)))
        if classes is None:
            classes = names
        elif names != classes:
            extra, missing = sorted(set(names) - set(classes)), sorted(set(classes) - set(names))
            raise DatasetError('%s has other class folders than %s (%s): every split needs the same classes'
                               % (top, os.path.join(root, 'train'), '; '.join(
                                   ([('not in train: ' + ', '.join(extra))] if extra else [])
                                   + ([('missing: ' + ', '.join(missing))] if missing else []))))
        paths, labels = [], []
        for label, name in enumerate(names):
            images = _images_in(os.path.join(top, name))
            if not images:
                raise DatasetError('class folder %s holds no image (%s): remove the folder, or put its images '
                                   'there' % (os.path.join(top, name), '/'.join(e[1:] for e in IMAGE_EXTENSIONS[:4])))
            paths += images
            labels += [label] * len(images)
        splits[split] = (paths, np.asarray(labels, dtype=np.int64))
    return classes, splits


def _read_list(root, split, classes):
    path = os.path.join(root, split + '.txt')
    paths, labels = [], []
    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            entry = line.split()
            if not entry:
                continue
            if len(entry) != 2:
                raise DatasetError('%s line %d is %r; expected "<relative path> <label index>"'
                                   % (path, lineno, line.strip()))
            try:
                label = int(entry[1])
            except ValueError:
                raise DatasetError('%s line %d: label %r is not an integer' % (path, lineno, entry[1])) from None
            if classes is not None and not 0 <= label < len(classes):
                raise DatasetError('%s line %d: label %d is outside the class list (0..%d, %s)'
                                   % (path, lineno, label, len(classes) - 1, os.path.join(root, 'classes.txt')))
            if label < 0:
                raise DatasetError('%s line %d: label %d is negative' % (path, lineno, label))
            paths.append(os.path.join(root, entry[0]))
            labels.append(label)
    return paths, np.asarray(labels, dtype=np.int64)


def _scan_lists(root):
    classes_file = os.path.join(root, 'classes.txt')
    classes = None
    if os.path.isfile(classes_file):
        with open(classes_file) as f:
            classes = [l.strip() for l in f if l.strip()]
    splits = {split: _read_list(root, split, classes) for split in SPLITS
              if os.path.isfile(os.path.join(root, split + '.txt'))}
    if classes is None:  # labels 0..max, named by their numbers
        classes = [str(c) for c in range(int(max(l.max() if len(l) else -1 for _, l in splits.values())) + 1)]
    for split, (paths, _) in splits.items():
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise DatasetError('%d of the %d images listed in %s are missing, e.g. %s: restore them, or remove '
                               'their lines from the list' % (len(missing), len(paths), os.path.join(
                                   root, split + '.txt'), ', '.join(missing[:5])))
    return classes, splits


def scan(root):
    """Find the layout of `root` and read its splits (see the module docstring). DatasetError when the
    layout is neither, a class folder is empty, splits disagree on the classes, a list is malformed
    or names a missing file, there are fewer than two classes, or no training image."""
    if not os.path.isdir(root):
        raise DatasetError('data folder %s does not exist: pass the folder that holds train/ (one folder per '
                           'class) or train.txt as --data_path' % root)
    if os.path.isdir(os.path.join(root, 'train')):
        layout, (classes, splits) = 'folders', _scan_folders(root)
    elif os.path.isfile(os.path.join(root, 'train.txt')):
        layout, (classes, splits) = 'lists', _scan_lists(root)
    else:
        raise DatasetError('%s holds neither train/ (one folder per class, named after it) nor train.txt '
                           '(lines "<relative path> <label>"): see README, "Your own data"' % root)
    paths, labels = splits['train']
    if len(paths) < 2:
        raise DatasetError('the training split of %s has %d image(s); DivideMix needs at least 2' % (root, len(paths)))
    used = np.unique(labels)
    if len(classes) < 2 or len(used) < 2:
        raise DatasetError('the training split of %s has %s: DivideMix needs at least two classes to tell noisy '
                           'labels from clean ones' % (root, 'a single class (%s)' % classes[int(used[0])]
                                                       if len(used) == 1 else '%d classes' % len(classes)))
    return FolderData(root, layout, classes, splits)


# ----------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------

def open_image(path, mode='RGB'):
    try:
        with Image.open(path) as img:
            return img.convert(mode)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError('cannot read image %s (%s): replace the file or remove it from the data'
                           % (path, e)) from None


def survey(paths, sample=256, seed=0):
    """(largest side, all grey) over a fixed random sample of the images: enough to choose the pipeline
    without opening a million files. Reads headers only."""
    rng = np.random.RandomState(seed)
    chosen = [paths[i] for i in (rng.choice(len(paths), sample, replace=False) if len(paths) > sample
                                 else range(len(paths)))]
    side, grey = 0, True
    for p in chosen:
        try:
            with Image.open(p) as img:
                side = max(side, *img.size)
                grey = grey and img.mode in ('L', '1', 'I;16', 'I')
        except (OSError, ValueError) as e:
            raise DatasetError('cannot read image %s (%s): replace the file or remove it from the data'
                               % (p, e)) from None
    return side, grey


def load_images(paths, size, channels):
    """Decode every image to uint8 (N, size, size, channels): grey ('L') when channels is 1, else RGB;
    resized to size x size (bilinear) when it is not that size already."""
    out = np.empty((len(paths), size, size, channels), dtype=np.uint8)
    mode = 'L' if channels == 1 else 'RGB'
    for i, p in enumerate(paths):
        img = open_image(p, mode)
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
        out[i] = arr[..., None] if channels == 1 else arr
    return out


def channel_stats(images):
    """Per-channel mean and std of uint8 (N, H, W, C) images scaled to [0, 1] (ToTensor's scale)."""
    x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return tuple(float(v) for v in x.mean(0)), tuple(float(v) for v in x.std(0))


# ----------------------------------------------------------------------------------
# Datasets and loaders (the reference API), for images too large to hold on the device
# ----------------------------------------------------------------------------------

class folder_dataset(Dataset):
    """One view of a split, by mode: 'all' (every training sample: image, given label, index), 'labeled'
    (pred True: two views, given label, clean probability), 'unlabeled' (pred False: two views),
    'test' (a clean split: image, label)."""

    def __init__(self, paths, labels, transform, mode, pred=None, probability=None):
        self.transform, self.mode = transform, mode
        paths, labels = list(paths), np.asarray(labels, dtype=np.int64)
        if mode in ('labeled', 'unlabeled'):
            pred = np.asarray(pred).astype(bool).reshape(-1)
            if len(pred) != len(paths):
                raise ValueError('pred has %d entries for %d training samples' % (len(pred), len(paths)))
            keep = np.nonzero(pred if mode == 'labeled' else ~pred)[0]
            if mode == 'labeled':
                self.probability = np.asarray(probability, dtype=np.float64).reshape(-1)[keep].tolist()
            paths, labels = [paths[i] for i in keep], labels[keep]
        elif mode not in ('all', 'test'):
            raise ValueError("mode must be all, labeled, unlabeled or test, not %r" % mode)
        self.paths, self.labels = paths, labels.tolist()

    def __getitem__(self, index):
        img = open_image(self.paths[index])
        if self.mode == 'labeled':
            return self.transform(img), self.transform(img), self.labels[index], self.probability[index]
        if self.mode == 'unlabeled':
            return self.transform(img), self.transform(img)
        if self.mode == 'all':
            return self.transform(img), self.labels[index], index
        return self.transform(img), self.labels[index]

    def __len__(self):
        return len(self.paths)


class folder_dataloader():
    """The reference loaders' run(mode, pred, prob) over a FolderData: 'warmup' (all training images,
    batch 2B, shuffled), 'eval_train' (all, in order, test transform), 'train' (labeled and unlabeled
    loaders of the division), and the clean splits by name ('val', 'test')."""

    def __init__(self, data, batch_size, num_workers, transform_train, transform_test, eval_batch_size=None,
                 pin_memory=None):
        """pin_memory: page-locked batches for fast copies to a GPU (default: when CUDA is available;
        Train_folder.py passes whether its run is on a GPU)."""
        self.data, self.batch_size, self.num_workers = data, batch_size, num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.eval_batch_size = eval_batch_size or batch_size
        self.transform_train, self.transform_test = transform_train, transform_test

    def _loader(self, dataset, batch_size, shuffle):
        # an empty set (a division with nothing on one side) cannot be shuffled: RandomSampler refuses 0 items
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and len(dataset) > 0,
                          num_workers=self.num_workers, pin_memory=self.pin_memory)

    def run(self, mode, pred=None, prob=None):
        paths, labels = self.data.splits['train']
        if mode == 'warmup':
            return self._loader(folder_dataset(paths, labels, self.transform_train, 'all'), self.batch_size * 2, True)
        if mode == 'eval_train':
            return self._loader(folder_dataset(paths, labels, self.transform_test, 'all'), self.eval_batch_size,
                                False)
        if mode == 'train':
            labeled = folder_dataset(paths, labels, self.transform_train, 'labeled', pred, prob)
            unlabeled = folder_dataset(paths, labels, self.transform_train, 'unlabeled', pred)
            return self._loader(labeled, self.batch_size, True), self._loader(unlabeled, self.batch_size, True)
        if mode in self.data.splits and mode != 'train':
            split_paths, split_labels = self.data.splits[mode]
            return self._loader(folder_dataset(split_paths, split_labels, self.transform_test, 'test'),
                                self.eval_batch_size, False)
        raise ValueError("mode must be warmup, eval_train, train or a clean split (%s), not %r"
                         % (', '.join(s for s in self.data.splits if s != 'train'), mode))
