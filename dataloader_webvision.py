"""WebVision 1.0 (first num_class classes) and ILSVRC12 validation loaders for DivideMix.

Stand-alone: imports only the standard library, torch, torchvision and PIL, so this
file can be copied into other code as is.

Data root layout:
    info/train_filelist_google.txt   lines '<relative path> <label>' (Google subset)
    info/val_filelist.txt            lines '<relative path> <label>'
    <relative path>                  training images, e.g. google/q0001/000001.jpg
    val_images_256/<relative path>   WebVision validation images
    imagenet/val/<class index>/<file> ILSVRC12 validation images, one folder per class
                                      index 0..num_class-1 (WebVision's class indices)

Public API, as in the DivideMix reference:
    loader = webvision_dataloader(batch_size, num_class, num_workers, root_dir, log)
    loader.run('warmup')            -> (img, label, index), batch 2*batch_size, shuffled
    loader.run('train', pred, prob) -> (labeled_loader, unlabeled_loader)
    loader.run('eval_train')        -> (img, label, index), batch 20*batch_size, in order
    loader.run('test')              -> WebVision val (img, label), batch 20*batch_size
    loader.run('imagenet')          -> ILSVRC12 val (img, label), batch 20*batch_size
`log` (a writable text file or None) gets the reference's line
'Numer of labeled samples:%d \\n' for every run('train', ...).
"""
import os

import torch
import torchvision.transforms as transforms
from PIL import Image
from torch.utils.data import DataLoader, Dataset

TRAIN_LIST = os.path.join('info', 'train_filelist_google.txt')
VAL_LIST = os.path.join('info', 'val_filelist.txt')
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DatasetError(Exception):
    """A list, folder or image is missing, malformed or unreadable; the message names it."""


_PARSED = {}  # (absolute path, size, mtime, num_class) -> (paths, labels)


def read_filelist(root_dir, name, num_class):
    """Parse '<relative path> <label>' lines once per process, keeping labels < num_class.
    Returns (list of relative paths, dict path -> label)."""
    path = os.path.join(root_dir, name)
    if not os.path.isfile(path):
        raise DatasetError('missing %s under %s: the WebVision root must hold info/train_filelist_google.txt and '
                           'info/val_filelist.txt from the WebVision 1.0 release; check --data_path' % (name, root_dir))
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime, num_class)
    if key not in _PARSED:
        imgs, labels = [], {}
        with open(path) as f:
            for lineno, line in enumerate(f, start=1):
                entry = line.split()
                if not entry:
                    continue
                if len(entry) != 2:
                    raise DatasetError('%s line %d is %r; expected "<relative path> <label>"'
                                       % (path, lineno, line.strip()))
                try:
                    target = int(entry[1])
                except ValueError:
                    raise DatasetError('%s line %d: label %r is not an integer' % (path, lineno, entry[1])) from None
                if target < 0:
                    raise DatasetError('%s line %d: label %d is negative; labels are WebVision class indices 0..999'
                                       % (path, lineno, target))
                if target < num_class:
                    imgs.append(entry[0])
                    labels[entry[0]] = target
        _PARSED[key] = (imgs, labels)
    return _PARSED[key]


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


class imagenet_dataset(Dataset):
    """ILSVRC12 validation images of classes 0..num_class-1 from imagenet/val/<class>/.
    Files are sorted by name (the reference used os.listdir order, which varies by filesystem)."""

    def __init__(self, root_dir, transform, num_class):
        self.root = os.path.join(root_dir, 'imagenet', 'val')
        self.transform = transform
        self.val_data = []
        for c in range(num_class):
            folder = os.path.join(self.root, str(c))
            if not os.path.isdir(folder):
                raise DatasetError('missing ImageNet validation folder %s: put the ILSVRC12 validation images of '
                                   'WebVision class %d there (see docs/large_scale.md, "WebVision")' % (folder, c))
            for img in sorted(os.listdir(folder)):
                self.val_data.append([c, os.path.join(folder, img)])

    def __getitem__(self, index):
        target, path = self.val_data[index]
        return self.transform(_open_image(path, 'imagenet/val/%d/' % target)), target

    def __len__(self):
        return len(self.val_data)


class webvision_dataset(Dataset):
    def __init__(self, root_dir, transform, mode, num_class, pred=[], probability=[], log=''):
        self.root = root_dir
        self.transform = transform
        self.mode = mode
        if mode == 'test':
            self.val_imgs, self.val_labels = read_filelist(root_dir, VAL_LIST, num_class)
            return
        train_imgs, self.train_labels = read_filelist(root_dir, TRAIN_LIST, num_class)
        if mode == 'all':
            self.train_imgs = train_imgs
            return
        pred = [bool(p) for p in pred]
        if len(pred) != len(train_imgs):
            raise ValueError('pred has %d entries for %d training images' % (len(pred), len(train_imgs)))
        keep = [i for i, p in enumerate(pred) if p == (mode == 'labeled')]
        self.train_imgs = [train_imgs[i] for i in keep]
        if mode == 'labeled':
            self.probability = [float(probability[i]) for i in keep]
            if log:
                log.write('Numer of labeled samples:%d \n' % sum(pred))
                log.flush()
        elif mode != 'unlabeled':
            raise ValueError("mode must be all, labeled, unlabeled or test, not %r" % mode)

    def _train_image(self, index):
        return _open_image(os.path.join(self.root, self.train_imgs[index]), TRAIN_LIST)

    def __getitem__(self, index):
        if self.mode == 'labeled':
            image = self._train_image(index)
            return (self.transform(image), self.transform(image), self.train_labels[self.train_imgs[index]],
                    self.probability[index])
        if self.mode == 'unlabeled':
            image = self._train_image(index)
            return self.transform(image), self.transform(image)
        if self.mode == 'all':
            return self.transform(self._train_image(index)), self.train_labels[self.train_imgs[index]], index
        img_path = self.val_imgs[index]
        image = _open_image(os.path.join(self.root, 'val_images_256', img_path), VAL_LIST)
        return self.transform(image), self.val_labels[img_path]

    def __len__(self):
        return len(self.val_imgs) if self.mode == 'test' else len(self.train_imgs)


class webvision_dataloader():
    def __init__(self, batch_size, num_class, num_workers, root_dir, log, pin_memory=None):
        """pin_memory: page-locked batches for fast copies to a GPU (default: when CUDA is available, as
        the reference; the training script passes whether its run is on a GPU)."""
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.batch_size = batch_size
        self.num_class = num_class
        self.num_workers = num_workers
        self.root_dir = root_dir
        self.log = log
        normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.transform_train = transforms.Compose([
            transforms.Resize(320), transforms.RandomResizedCrop(299), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), normalize])
        self.transform_test = transforms.Compose([
            transforms.Resize(320), transforms.CenterCrop(299), transforms.ToTensor(), normalize])
        self.transform_imagenet = self.transform_test

    def _loader(self, dataset, batch_size, shuffle):
        # an empty set (a division with nothing on one side) cannot be shuffled: RandomSampler refuses 0 items
        return DataLoader(dataset=dataset, batch_size=batch_size, shuffle=shuffle and len(dataset) > 0,
                          num_workers=self.num_workers, pin_memory=self.pin_memory)

    def run(self, mode, pred=[], prob=[]):
        if mode == 'warmup':
            ds = webvision_dataset(self.root_dir, self.transform_train, 'all', self.num_class)
            return self._loader(ds, self.batch_size * 2, True)
        if mode == 'train':
            labeled = webvision_dataset(self.root_dir, self.transform_train, 'labeled', self.num_class, pred, prob,
                                        self.log)
            unlabeled = webvision_dataset(self.root_dir, self.transform_train, 'unlabeled', self.num_class, pred)
            return self._loader(labeled, self.batch_size, True), self._loader(unlabeled, self.batch_size, True)
        if mode == 'eval_train':
            ds = webvision_dataset(self.root_dir, self.transform_test, 'all', self.num_class)
            return self._loader(ds, self.batch_size * 20, False)
        if mode == 'test':
            ds = webvision_dataset(self.root_dir, self.transform_test, 'test', self.num_class)
            return self._loader(ds, self.batch_size * 20, False)
        if mode == 'imagenet':
            ds = imagenet_dataset(self.root_dir, self.transform_imagenet, self.num_class)
            return self._loader(ds, self.batch_size * 20, False)
        raise ValueError("mode must be warmup, train, eval_train, test or imagenet, not %r" % mode)

    def check(self):
        """Before training: read the lists and the ImageNet folders, refuse empty test sets, and check
        that every listed image exists, so that none of it stops a run halfway."""
        train = webvision_dataset(self.root_dir, None, 'all', self.num_class)
        val = webvision_dataset(self.root_dir, None, 'test', self.num_class)
        imagenet = imagenet_dataset(self.root_dir, None, self.num_class)
        for name, n in ((os.path.join(self.root_dir, VAL_LIST), len(val)),
                        (os.path.join(self.root_dir, 'imagenet', 'val'), len(imagenet))):
            if n == 0:
                raise DatasetError('%s holds no image of classes 0..%d: the test would be on nothing; check '
                                   '--data_path and --num_class' % (name, self.num_class - 1))
        check_files_exist([os.path.join(self.root_dir, p) for p in train.train_imgs],
                          os.path.join(self.root_dir, TRAIN_LIST))
        check_files_exist([os.path.join(self.root_dir, 'val_images_256', p) for p in val.val_imgs],
                          os.path.join(self.root_dir, VAL_LIST))


def missing_files(paths):
    """The files among `paths` that do not exist: one directory listing per folder instead of one stat per
    file, which matters for a list of millions. (Also in dataloader_clothing1M.py: each loader works copied alone.)"""
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
