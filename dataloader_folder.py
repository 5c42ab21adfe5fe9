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


def _scan_folders(root, ignore=()):
    splits, classes = {}, None
    ignore = {os.path.realpath(p) for p in ignore}
    for split in SPLITS:
        top = os.path.join(root, split)
        if not os.path.isdir(top):
            continue
        # a folder to ignore: the run's own output folder when it lies in the tree (its files are no class)
        names = sorted(d for d in os.listdir(top) if not d.startswith('.') and os.path.isdir(os.path.join(top, d))
                       and os.path.realpath(os.path.join(top, d)) not in ignore)
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


def read_text(path):
    """The lines of a list file decoded as UTF-8, with or without a byte-order mark (Notepad writes one).
    DatasetError naming the file and its encoding for anything else: UTF-16/UTF-32 (Notepad's "Unicode"),
    or bytes that are not UTF-8 (Latin-1, Windows-1252): the paths in it would be misread."""
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except OSError as e:
        raise DatasetError('cannot read %s (%s)' % (path, e.strerror or e)) from None
    boms = {b'\xff\xfe\x00\x00': 'UTF-32', b'\x00\x00\xfe\xff': 'UTF-32', b'\xff\xfe': 'UTF-16',
            b'\xfe\xff': 'UTF-16'}
    how = 'save it as UTF-8 (in Notepad: Save as, Encoding UTF-8), or convert it: iconv -f %s -t UTF-8'
    for bom, name in boms.items():
        if raw.startswith(bom):
            raise DatasetError('%s is %s text (Notepad\'s "Unicode"), not UTF-8: %s' % (path, name, how % name))
    if b'\x00' in raw:
        raise DatasetError('%s holds NUL bytes: it is UTF-16 text without a byte-order mark, or no text file: %s'
                           % (path, how % 'UTF-16'))
    try:
        text = raw.decode('utf-8-sig')  # a UTF-8 byte-order mark is dropped, not read as part of a path
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b'\n') + 1
        raise DatasetError('%s is not UTF-8 text (byte 0x%02x on line %d); it is probably Latin-1 or Windows-1252: %s'
                           % (path, raw[e.start], line, how % 'LATIN1')) from None
    return text.splitlines()


def _read_list(root, split, classes):
    path = os.path.join(root, split + '.txt')
    paths, labels, where = [], [], {}
    for lineno, line in enumerate(read_text(path), start=1):
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
        where.setdefault(label, (path, lineno))
    return paths, np.asarray(labels, dtype=np.int64), where


def _scan_lists(root):
    classes_file = os.path.join(root, 'classes.txt')
    classes = None
    if os.path.isfile(classes_file):
        classes = [l.strip() for l in read_text(classes_file) if l.strip()]
    read = {split: _read_list(root, split, classes) for split in SPLITS
            if os.path.isfile(os.path.join(root, split + '.txt'))}
    splits = {split: (paths, labels) for split, (paths, labels, _) in read.items()}
    if classes is None:  # labels 0..max, named by their numbers
        top = int(max(l.max() if len(l) else -1 for _, l in splits.values()))
        _check_label_range(top, read, classes_file)
        classes = [str(c) for c in range(top + 1)]
    for split, (paths, _) in splits.items():
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise DatasetError('%d of the %d images listed in %s are missing, e.g. %s: restore them, or remove '
                               'their lines from the list' % (len(missing), len(paths), os.path.join(
                                   root, split + '.txt'), ', '.join(missing[:5])))
    return classes, splits


def _check_label_range(top, read, classes_file):
    """Without classes.txt the classes are 0..max label, and each must have a training image: a label far
    above the others (a typo, e.g. '100000' for '1') would otherwise make a class of every number up to it.
    The rule's way out: classes.txt declares the classes, a class without training images too."""
    used = set(np.unique(read['train'][1]).tolist()) if 'train' in read else set()
    n_missing = top + 1 - len(used)  # the labels are 0..top
    if n_missing:
        where = next(w[top] for _, _, w in read.values() if top in w)
        missing = [] if n_missing > 10 ** 6 else [c for c in range(top + 1) if c not in used][:5]
        shown = ' (%s%s)' % (', '.join(map(str, missing)), ', ...' if n_missing > len(missing) else '') if missing \
            else ''
        raise DatasetError('%s line %d: label %d, but %d of the labels 0..%d have no training image%s. Without %s '
                           'the classes are 0..the largest label, and each needs a training image: is this label a '
                           'typo? Fix the line, or list the class names in classes.txt (line k names label k), which '
                           'also allows classes without training images' % (where[0], where[1], top, n_missing, top,
                                                                            shown, classes_file))


def scan(root, ignore=()):
    """Find the layout of `root` and read its splits (see the module docstring). DatasetError when the
    layout is neither, a class folder is empty, splits disagree on the classes, a list is malformed,
    is not UTF-8 or names a missing file, there are fewer than two classes, or no training image.
    ignore: folders that are no class even when they lie in a split folder (a run's output folder)."""
    if not os.path.isdir(root):
        raise DatasetError('data folder %s does not exist: pass the folder that holds train/ (one folder per '
                           'class) or train.txt as --data_path' % root)
    if os.path.isdir(os.path.join(root, 'train')):
        layout, (classes, splits) = 'folders', _scan_folders(root, ignore)
    elif os.path.isfile(os.path.join(root, 'train.txt')):
        layout, (classes, splits) = 'lists', _scan_lists(root)
    else:
        raise DatasetError('%s holds neither train/ (one folder per class, named after it) nor train.txt '
                           '(lines "<relative path> <label>"): see docs/own_data.md' % root)
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

def bomb_message(path, error):
    """What to say of an image over Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS)."""
    return ('image %s is too large to decode safely (%s): if it is a real image, raise the limit with '
            '--max_image_pixels N (0 for none), or replace or remove the file' % (path, str(error).split(',')[0]))


def to_8bit(img):
    """Grey images of more than 8 bits (16-bit PNG and TIFF: modes I;16*, 32-bit I, float F) as 8-bit 'L',
    scaled to 0..255: Pillow's own convert('L') clips them (a 16-bit image turns black and white). I;16
    and I (taken as 0..65535) scale by 255/65535, so that a 16-bit image made from an 8-bit one (v * 257)
    gives v back exactly; F is taken as 0..1 when its values stay in [0, 1], else as 0..255. Other modes
    as they are."""
    if img.mode.startswith('I;16') or img.mode == 'I':
        arr = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
        return Image.fromarray(((arr * 255 + 32767) // 65535).astype(np.uint8), 'L')
    if img.mode == 'F':
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        scale = 255.0 if arr.size and 0 <= arr.min() and arr.max() <= 1 else 1.0
        return Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), 'L')
    return img


def open_image(path, mode='RGB'):
    try:
        with Image.open(path) as img:
            return to_8bit(img).convert(mode)
    except Image.DecompressionBombError as e:
        raise DatasetError(bomb_message(path, e)) from None
    except (OSError, ValueError) as e:
        raise DatasetError('cannot read image %s (%s): replace the file or remove it from the data'
                           % (path, e)) from None


GREY_MODES = ('L', '1', 'I', 'F', 'I;16', 'I;16L', 'I;16B', 'I;16N')


class Survey(object):
    """What survey() saw: side (the largest side of the surveyed images, outliers left out), grey (all of
    them one channel), outliers ([(path, width, height)]: images whose largest side is over OUTLIER times
    the median's, which a size chosen from the largest side would blow up), count (images surveyed)."""

    OUTLIER = 4

    def __init__(self, side, grey, outliers, count, median):
        self.side, self.grey, self.outliers, self.count, self.median = side, grey, outliers, count, median

    def __iter__(self):  # (side, grey), as survey() returned before
        return iter((self.side, self.grey))


def survey(paths, sample=256, seed=0):
    """A Survey of a fixed random sample of the images: enough to choose the pipeline and the size
    without opening a million files. Reads headers only."""
    rng = np.random.RandomState(seed)
    chosen = [paths[i] for i in (rng.choice(len(paths), sample, replace=False) if len(paths) > sample
                                 else range(len(paths)))]
    sizes, grey = [], True
    for p in chosen:
        try:
            with Image.open(p) as img:
                sizes.append((p,) + tuple(img.size))
                grey = grey and img.mode in GREY_MODES
        except Image.DecompressionBombError as e:
            raise DatasetError(bomb_message(p, e)) from None
        except (OSError, ValueError) as e:
            raise DatasetError('cannot read image %s (%s): replace the file or remove it from the data'
                               % (p, e)) from None
    sides = np.array([max(w, h) for _, w, h in sizes])
    median = float(np.median(sides)) if len(sides) else 0.0
    outliers = [s for s, side in zip(sizes, sides) if side > Survey.OUTLIER * median]
    kept = [side for side in sides if side <= Survey.OUTLIER * median]
    return Survey(int(max(kept)) if kept else 0, grey, outliers, len(sizes), median)


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
