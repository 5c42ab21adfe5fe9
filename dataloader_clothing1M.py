"""Clothing1M (Xiao et al., CVPR 2015) loaders for DivideMix.

Stand-alone: imports only the standard library, numpy, torch, torchvision and PIL,
so this file can be copied into other code as is.

Data root layout (the official release):
    noisy_label_kv.txt       lines 'images/<path> <label>'   (1M noisy training labels)
    clean_label_kv.txt       lines 'images/<path> <label>'   (clean labels of val/test/...)
    noisy_train_key_list.txt lines 'images/<path>'
    clean_val_key_list.txt   lines 'images/<path>'
    clean_test_key_list.txt  lines 'images/<path>'
    <path>                   the image files, i.e. '<root>/<key without its leading "images/">'

Public API, as in the DivideMix reference:
    loader = clothing_dataloader(root, batch_size, num_batches, num_workers)
    loader.run('warmup')                     -> (img, noisy_label, path), class-balanced sample of
                                                num_batches*batch_size*2 images, batch 2*batch_size
    loader.run('eval_train')                 -> (img, noisy_label, path), class-balanced sample of
                                                num_batches*batch_size images, not shuffled
    loader.run('train', pred, prob, paths)   -> (labeled_loader, unlabeled_loader) over `paths`
    loader.run('val') / loader.run('test')   -> (img, clean_label), batch 1000
The label lists are parsed once per process and shared by every dataset built from them
(the reference re-read the million-line files for each loader).
"""
import os
import random

import torchvision.transforms as transforms
from PIL import Image
from torch.utils.data import DataLoader, Dataset

NUM_CLASS = 14
MEAN, STD = (0.6959, 0.6537, 0.6371), (0.3113, 0.3192, 0.3214)
NOISY_KV, CLEAN_KV = 'noisy_label_kv.txt', 'clean_label_kv.txt'
TRAIN_KEYS, VAL_KEYS, TEST_KEYS = 'noisy_train_key_list.txt', 'clean_val_key_list.txt', 'clean_test_key_list.txt'
PREFIX = 'images/'


class DatasetError(Exception):
    """A list or image is missing, malformed or unreadable; the message names it."""


_PARSED = {}  # (absolute list path, size, mtime) -> parsed content


def _read_list(root, name, with_label):
    """Parse one annotation list once per process. Keys 'images/<path>' become the image file
    '<root>/<path>' (the reference's '%s/' % root + key[7:]). Returns a dict path -> label
    (kv lists) or a list of paths (key lists)."""
    path = os.path.join(root, name)
    if not os.path.isfile(path):
        raise DatasetError('missing %s in %s: the Clothing1M root must hold noisy_label_kv.txt, clean_label_kv.txt '
                           'and the noisy_train/clean_val/clean_test key lists of the official release '
                           '(see docs/large_scale.md, "Clothing1M"); check --data_path' % (name, root))
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime)
    if key in _PARSED:
        return _PARSED[key]
    out = {} if with_label else []
    with open(path, 'r') as f:
        for lineno, line in enumerate(f, start=1):
            entry = line.split()
            if not entry:
                continue
            if not entry[0].startswith(PREFIX) or len(entry) != (2 if with_label else 1):
                raise DatasetError('%s line %d is %r; expected "%s<path>%s"' % (
                    path, lineno, line.strip(), PREFIX, ' <label>' if with_label else ''))
            img_path = '%s/' % root + entry[0][len(PREFIX):]
            if with_label:
                try:
                    out[img_path] = int(entry[1])
                except ValueError:
                    raise DatasetError('%s line %d: label %r is not an integer' % (path, lineno, entry[1])) from None
            else:
                out.append(img_path)
    _PARSED[key] = out
    return out


def _open_image(img_path, list_name):
    try:
        return Image.open(img_path).convert('RGB')
    except Image.DecompressionBombError as e:
        raise DatasetError('image %s, listed in %s, is too large to decode safely (%s): if it is a real image, raise '
                           'the limit with --max_image_pixels N (0 for none), or replace it or remove it from the list'
                           % (img_path, list_name, str(e).split(',')[0])) from None
    except (OSError, ValueError) as e:
        raise DatasetError('cannot read image %s, listed in %s (%s): restore the file or remove it from the list'
                           % (img_path, list_name, e)) from None


def class_balanced_sample(train_imgs, train_labels, num_samples, num_class=NUM_CLASS, rng=random):
    """The reference's sampling: shuffle the noisy list, take images in that order while their
    class has fewer than num_samples/num_class taken and the total is below num_samples,
    then shuffle the selection. rng: the `random` module (the reference) or a random.Random."""
    imgs = list(train_imgs)
    rng.shuffle(imgs)
    class_num = [0] * num_class
    taken = []
    for impath in imgs:
        label = train_labels[impath]
        if class_num[label] < (num_samples / num_class) and len(taken) < num_samples:
            taken.append(impath)
            class_num[label] += 1
    rng.shuffle(taken)
    return taken


class clothing_dataset(Dataset):
    def __init__(self, root, transform, mode, num_samples=0, pred=[], probability=[], paths=[], num_class=14,
                 rng=random):
        self.root = root
        self.transform = transform
        self.mode = mode
        self.train_labels = _read_list(root, NOISY_KV, True)
        self.test_labels = _read_list(root, CLEAN_KV, True)
        self.list_name = {'test': TEST_KEYS, 'val': VAL_KEYS}.get(mode, TRAIN_KEYS)
        if mode == 'all':
            train_imgs = _read_list(root, TRAIN_KEYS, False)
            missing = [p for p in train_imgs if p not in self.train_labels]
            if missing:
                raise DatasetError('%d keys of %s have no label in %s (first: %s)' % (
                    len(missing), TRAIN_KEYS, NOISY_KV, missing[0]))
            self.train_imgs = class_balanced_sample(train_imgs, self.train_labels, num_samples, num_class, rng)
        elif mode in ('labeled', 'unlabeled'):
            pred = [bool(p) for p in pred]
            if len(pred) != len(paths):
                raise ValueError('pred has %d entries for %d paths' % (len(pred), len(paths)))
            keep = [i for i, p in enumerate(pred) if p == (mode == 'labeled')]
            self.train_imgs = [paths[i] for i in keep]
            if mode == 'labeled':
                self.probability = [float(probability[i]) for i in keep]
        elif mode in ('test', 'val'):
            imgs = _read_list(root, self.list_name, False)
            missing = [p for p in imgs if p not in self.test_labels]
            if missing:
                raise DatasetError('%d keys of %s have no label in %s (first: %s)' % (
                    len(missing), self.list_name, CLEAN_KV, missing[0]))
            if mode == 'test':
                self.test_imgs = imgs
            else:
                self.val_imgs = imgs
        else:
            raise ValueError("mode must be all, labeled, unlabeled, val or test, not %r" % mode)

    def __getitem__(self, index):
        if self.mode == 'labeled':
            img_path = self.train_imgs[index]
            image = _open_image(img_path, self.list_name)
            return self.transform(image), self.transform(image), self.train_labels[img_path], self.probability[index]
        if self.mode == 'unlabeled':
            image = _open_image(self.train_imgs[index], self.list_name)
            return self.transform(image), self.transform(image)
        if self.mode == 'all':
            img_path = self.train_imgs[index]
            return self.transform(_open_image(img_path, self.list_name)), self.train_labels[img_path], img_path
        img_path = (self.test_imgs if self.mode == 'test' else self.val_imgs)[index]
        return self.transform(_open_image(img_path, self.list_name)), self.test_labels[img_path]

    def __len__(self):
        if self.mode == 'test':
            return len(self.test_imgs)
        if self.mode == 'val':
            return len(self.val_imgs)
        return len(self.train_imgs)


class clothing_dataloader():
    def __init__(self, root, batch_size, num_batches, num_workers, num_class=NUM_CLASS, eval_batch_size=1000,
                 pin_memory=False):
        """pin_memory: page-locked batches for fast copies to a GPU (Train_clothing1M.py passes whether its
        run is on a GPU; the reference did not pin)."""
        self.pin_memory = pin_memory
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.num_batches = num_batches
        self.root = root
        self.num_class = num_class
        self.eval_batch_size = eval_batch_size
        normalize = transforms.Normalize(MEAN, STD)
        self.transform_train = transforms.Compose([
            transforms.Resize(256), transforms.RandomCrop(224), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), normalize])
        self.transform_test = transforms.Compose([
            transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), normalize])

    def _loader(self, dataset, batch_size, shuffle):
        # an empty set (a division with nothing on one side) cannot be shuffled: RandomSampler refuses 0 items
        return DataLoader(dataset=dataset, batch_size=batch_size, shuffle=shuffle and len(dataset) > 0,
                          num_workers=self.num_workers, pin_memory=self.pin_memory)

    def run(self, mode, pred=[], prob=[], paths=[]):
        if mode == 'warmup':
            ds = clothing_dataset(self.root, self.transform_train, 'all',
                                  num_samples=self.num_batches * self.batch_size * 2, num_class=self.num_class)
            return self._loader(ds, self.batch_size * 2, True)
        if mode == 'train':
            labeled = clothing_dataset(self.root, self.transform_train, 'labeled', pred=pred, probability=prob,
                                       paths=paths, num_class=self.num_class)
            unlabeled = clothing_dataset(self.root, self.transform_train, 'unlabeled', pred=pred, probability=prob,
                                         paths=paths, num_class=self.num_class)
            return self._loader(labeled, self.batch_size, True), self._loader(unlabeled, self.batch_size, True)
        if mode == 'eval_train':
            ds = clothing_dataset(self.root, self.transform_test, 'all',
                                  num_samples=self.num_batches * self.batch_size, num_class=self.num_class)
            return self._loader(ds, self.batch_size, False)
        if mode in ('test', 'val'):
            ds = clothing_dataset(self.root, self.transform_test, mode, num_class=self.num_class)
            return self._loader(ds, self.eval_batch_size, False)
        raise ValueError("mode must be warmup, train, eval_train, val or test, not %r" % mode)

    def check(self):
        """Before training: read every list, refuse empty ones and labels outside 0..num_class-1, and
        check that every listed image exists, so that none of it stops a run halfway."""
        for name in (NOISY_KV, CLEAN_KV):
            for img_path, label in _read_list(self.root, name, True).items():
                if not 0 <= label < self.num_class:
                    raise DatasetError('%s gives %s the label %d, outside 0..%d (Clothing1M has %d classes): fix '
                                       'the line' % (os.path.join(self.root, name), PREFIX + img_path[len(self.root) + 1:],
                                                     label, self.num_class - 1, self.num_class))
        for name in (TRAIN_KEYS, VAL_KEYS, TEST_KEYS):
            if not _read_list(self.root, name, False):
                raise DatasetError('%s lists no image: DivideMix needs training, validation and test images; use '
                                   'the lists of the official release' % os.path.join(self.root, name))
        train, noisy = _read_list(self.root, TRAIN_KEYS, False), _read_list(self.root, NOISY_KV, True)
        unlabeled = [p for p in train if p not in noisy]
        if unlabeled:
            raise DatasetError('%d keys of %s have no label in %s (first: %s)' % (
                len(unlabeled), TRAIN_KEYS, NOISY_KV, unlabeled[0]))
        for name, paths in ((TRAIN_KEYS, train), (VAL_KEYS, clothing_dataset(self.root, None, 'val').val_imgs),
                            (TEST_KEYS, clothing_dataset(self.root, None, 'test').test_imgs)):
            check_files_exist(paths, os.path.join(self.root, name))


def missing_files(paths):
    """The files among `paths` that do not exist: one directory listing per folder instead of one stat per
    file, which matters for a million-line list. (Also in dataloader_webvision.py: each loader works copied alone.)"""
    folders = {}
    for p in paths:
        folder, name = os.path.split(p)
        folders.setdefault(folder, []).append(name)
    missing = []
    for folder, names in folders.items():
        try:
            present = set(os.listdir(folder))
        except OSError:
            present = set()
        missing.extend(os.path.join(folder, n) for n in names if n not in present)
    return missing


def check_files_exist(paths, list_path, show=5):
    """Raise DatasetError naming the missing files among `paths` (listed in list_path)."""
    missing = missing_files(paths)
    if missing:
        raise DatasetError('%d of the %d images listed in %s are missing, e.g. %s: restore them, or remove their lines '
                           'from the list' % (len(missing), len(paths), list_path, ', '.join(missing[:show])))
