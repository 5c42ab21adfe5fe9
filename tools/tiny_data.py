"""Tiny datasets in the exact on-disk formats of the real ones, for the tests and the smoke runs of
gpu_check.py: CIFAR-10/100 python pickles, Fashion-MNIST IDX files, a Clothing1M root (lists with
the 'images/' prefix and JPEG files), a WebVision root (file lists, Google images, val, ImageNet val).
Images carry a class-dependent pattern, so a small net can learn them."""
import gzip
import os
import pickle
import struct

import numpy as np


def class_images(labels, rng, size=32, channels=3):
    """uint8 (N, size, size, channels) images whose brightness pattern depends on the class,
    so a small net can learn them; noise makes every image distinct."""
    labels = np.asarray(labels)
    n = len(labels)
    base = rng.randint(0, 60, size=(n, size, size, channels))
    yy, xx = np.mgrid[0:size, 0:size]
    pattern = ((xx + yy * 3) % 10)[None, :, :, None] == (labels % 10)[:, None, None, None]
    img = base + pattern * 150 + (labels // 10)[:, None, None, None] * 4
    return np.clip(img, 0, 255).astype(np.uint8)


def cifar_rows(images):
    """(N,32,32,3) HWC -> rows of 3072 in channel-major order, as the python CIFAR pickles store them."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def write_pickle(path, obj):
    with open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=2)


def make_cifar10(root, n_per_batch=40, n_test=50, seed=0):
    """data_batch_1..5 + test_batch. Returns (train_images HWC, train_labels, test_labels)."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.RandomState(seed)
    all_imgs, all_labels = [], []
    for b in range(1, 6):
        labels = rng.randint(0, 10, n_per_batch)
        imgs = class_images(labels, rng)
        write_pickle(os.path.join(root, 'data_batch_%d' % b),
                     {'batch_label': 'training batch %d of 5' % b, 'labels': labels.tolist(),
                      'data': cifar_rows(imgs), 'filenames': ['img_%d.png' % i for i in range(n_per_batch)]})
        all_imgs.append(imgs)
        all_labels.append(labels)
    test_labels = rng.randint(0, 10, n_test)
    write_pickle(os.path.join(root, 'test_batch'),
                 {'batch_label': 'testing batch 1 of 1', 'labels': test_labels.tolist(),
                  'data': cifar_rows(class_images(test_labels, rng)), 'filenames': ['t'] * n_test})
    return np.concatenate(all_imgs), np.concatenate(all_labels), test_labels


def make_cifar100(root, n_train=300, n_test=60, seed=0, fine=None):
    """train + test pickles with fine and coarse labels (the real fine->coarse structure:
    each superclass holds 5 fine classes; here superclass = a fixed shuffle of fine // 5)."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.RandomState(seed)
    coarse_of = fine_to_coarse()
    train_fine = rng.randint(0, 100, n_train) if fine is None else np.asarray(fine)
    imgs = class_images(train_fine, rng)
    write_pickle(os.path.join(root, 'train'),
                 {'filenames': ['x'] * len(train_fine), 'batch_label': 'training batch 1 of 1',
                  'fine_labels': train_fine.tolist(), 'coarse_labels': coarse_of[train_fine].tolist(),
                  'data': cifar_rows(imgs)})
    test_fine = rng.randint(0, 100, n_test)
    write_pickle(os.path.join(root, 'test'),
                 {'filenames': ['x'] * n_test, 'batch_label': 'testing batch 1 of 1',
                  'fine_labels': test_fine.tolist(), 'coarse_labels': coarse_of[test_fine].tolist(),
                  'data': cifar_rows(class_images(test_fine, rng))})
    return imgs, train_fine, test_fine


def fine_to_coarse():
    """A fixed fine->coarse map with 5 fine classes per superclass, not in index blocks
    (as in real CIFAR-100, where e.g. superclass 'aquatic mammals' = {4, 30, 55, 72, 95})."""
    perm = np.random.RandomState(42).permutation(100)
    coarse = np.empty(100, dtype=np.int64)
    coarse[perm] = np.arange(100) // 5
    return coarse


def write_idx(path, array):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b''.join(struct.pack('>I', d) for d in array.shape)
    with gzip.open(path, 'wb') as f:
        f.write(header + array.tobytes())


def make_fashion(root, n_train=200, n_test=60, seed=0):
    """Fashion-MNIST IDX files (gzipped, as Debian and the upstream release ship them)."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.RandomState(seed)
    for prefix, n in (('train', n_train), ('t10k', n_test)):
        labels = rng.randint(0, 10, n)
        write_idx(os.path.join(root, prefix + '-images-idx3-ubyte.gz'), class_images(labels, rng, 28, 1)[..., 0])
        write_idx(os.path.join(root, prefix + '-labels-idx1-ubyte.gz'), labels)


def write_jpeg(path, label, rng, size=(48, 40)):
    """A real JPEG file whose colour depends on the label."""
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arr = rng.randint(0, 50, size=(size[1], size[0], 3)) + np.array([label * 17 % 256, label * 53 % 256, 90])
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, format='JPEG', quality=90)


def make_clothing1m(root, per_class=3, n_val=6, n_test=6, num_class=14, seed=0):
    """A Clothing1M root in the official layout: kv lists, key lists with the 'images/' prefix,
    and the JPEG files at <root>/<key without 'images/'>. Returns the train keys."""
    rng = np.random.RandomState(seed)
    os.makedirs(root, exist_ok=True)
    noisy, clean, train_keys, val_keys, test_keys = [], [], [], [], []
    for c in range(num_class):
        for i in range(per_class):
            key = 'images/%d/%02d/%d_%d.jpg' % (c % 10, c, c, i)
            noisy.append((key, c if i else (c + 1) % num_class))  # one mislabeled image per class
            train_keys.append(key)
    for split, n, keys in (('val', n_val, val_keys), ('test', n_test, test_keys)):
        for i in range(n):
            key = 'images/%s/%d.jpg' % (split, i)
            clean.append((key, i % num_class))
            keys.append(key)
    for key, label in noisy + clean:
        write_jpeg(os.path.join(root, key[len('images/'):]), label, rng)

    def write(name, rows):
        with open(os.path.join(root, name), 'w') as f:
            f.write(''.join(r + '\n' for r in rows))
    write('noisy_label_kv.txt', ['%s %d' % kv for kv in noisy])
    write('clean_label_kv.txt', ['%s %d' % kv for kv in clean])
    write('noisy_train_key_list.txt', train_keys)
    write('clean_val_key_list.txt', val_keys)
    write('clean_test_key_list.txt', test_keys)
    return train_keys


def make_webvision(root, num_class=3, per_class=3, extra_class=1, n_val=4, n_imagenet=2, seed=0):
    """A WebVision root: info/ file lists (with images of classes >= num_class that must be
    skipped), google/ training JPEGs, val_images_256/, imagenet/val/<class>/."""
    rng = np.random.RandomState(seed)
    train, val = [], []
    for c in range(num_class + extra_class):
        for i in range(per_class):
            rel = 'google/q%04d/%06d.jpg' % (c, i)
            write_jpeg(os.path.join(root, rel), c, rng)
            train.append('%s %d' % (rel, c))
        for i in range(n_val):
            rel = 'val%06d_%d.jpg' % (i, c)
            write_jpeg(os.path.join(root, 'val_images_256', rel), c, rng)
            val.append('%s %d' % (rel, c))
    for c in range(num_class):
        for i in range(n_imagenet):
            write_jpeg(os.path.join(root, 'imagenet', 'val', str(c), 'ILSVRC2012_val_%08d.JPEG' % (c * 10 + i)), c, rng)
    os.makedirs(os.path.join(root, 'info'), exist_ok=True)
    with open(os.path.join(root, 'info', 'train_filelist_google.txt'), 'w') as f:
        f.write('\n'.join(train) + '\n')
    with open(os.path.join(root, 'info', 'val_filelist.txt'), 'w') as f:
        f.write('\n'.join(val) + '\n')
    return train, val


def make_roots(folder):
    """The tiny roots the smoke runs use: {'cifar10', 'clothing', 'webvision', 'folder'} -> path (built once)."""
    roots = {'cifar10': os.path.join(folder, 'cifar-10-batches-py'), 'clothing': os.path.join(folder, 'Clothing1M'),
             'webvision': os.path.join(folder, 'webvision') + os.sep, 'folder': os.path.join(folder, 'animals')}
    if not os.path.exists(os.path.join(roots['cifar10'], 'test_batch')):
        make_cifar10(roots['cifar10'])
    if not os.path.exists(os.path.join(roots['clothing'], 'clean_test_key_list.txt')):
        make_clothing1m(roots['clothing'])
    if not os.path.exists(os.path.join(roots['webvision'], 'info', 'val_filelist.txt')):
        make_webvision(roots['webvision'], num_class=2, per_class=2, n_val=1, n_imagenet=1)
    if not os.path.isdir(os.path.join(roots['folder'], 'test')):
        make_image_folder(roots['folder'], per_class=8, n_test=2)
    return roots


def make_image_folder(root, classes=('cat', 'dog', 'fox'), per_class=12, n_test=4, seed=0, sizes=(24, 32),
                      noisy=(), layout='folders'):
    """Your-own-data roots (Train_folder.py): PNG and JPEG files of mixed sizes whose pattern depends on
    the class, in root/train/<class>/ and root/test/<class>/ ('folders'), or listed in root/train.txt,
    root/test.txt with root/classes.txt ('lists'). noisy: indices of training images (in class order)
    saved under the next class, a planted label error. Returns (train paths, given labels, true labels)."""
    from PIL import Image
    rng = np.random.RandomState(seed)
    paths, given, true = [], [], []
    lists = {'train': [], 'test': []}
    i = 0
    for split, n in (('train', per_class), ('test', n_test)):
        for c in range(len(classes)):
            for k in range(n):
                side = sizes[(c + k) % len(sizes)]
                img = class_images(np.array([c]), rng, size=side)[0]
                label = c
                if split == 'train':
                    label = (c + 1) % len(classes) if i in noisy else c
                    i += 1
                ext = '.png' if k % 2 == 0 else '.jpg'
                rel = os.path.join(split, classes[label], '%s_%d_%d%s' % (classes[c], c, k, ext))
                if layout == 'lists':
                    rel = os.path.join('images', '%s_%s_%d_%d%s' % (split, classes[c], c, k, ext))
                    lists[split].append('%s %d' % (rel, label))
                path = os.path.join(root, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                Image.fromarray(img).save(path, quality=95)
                if split == 'train':
                    paths.append(path)
                    given.append(label)
                    true.append(c)
    if layout == 'lists':
        for split, rows in lists.items():
            with open(os.path.join(root, split + '.txt'), 'w') as f:
                f.write('\n'.join(rows) + '\n')
        with open(os.path.join(root, 'classes.txt'), 'w') as f:
            f.write('\n'.join(classes) + '\n')
    return paths, given, true
