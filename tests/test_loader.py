"""dataloader_cifar: real-format pickles, the reference's run() modes, and clear errors."""
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

import dataloader_cifar as dl
from conftest import make_cifar10, make_cifar100, make_fashion


@pytest.mark.parametrize('n_per_batch', [1, 13, 40])
def test_reads_cifar10_pickles_any_size(tmp_path, n_per_batch):
    root = str(tmp_path / 'c10')
    images, labels, test_labels = make_cifar10(root, n_per_batch=n_per_batch, n_test=9)
    raw = dl.load_cifar('cifar10', root)
    assert raw['train_data'].shape == (5 * n_per_batch, 32, 32, 3) and raw['train_data'].dtype == np.uint8
    assert (raw['train_data'] == images).all()  # channel-major rows -> HWC, batches in order
    assert raw['train_label'].tolist() == labels.tolist()
    assert raw['test_label'].tolist() == test_labels.tolist() and raw['test_data'].shape == (9, 32, 32, 3)


def test_reads_cifar100_pickles(tmp_path):
    root = str(tmp_path / 'c100')
    images, fine, test_fine = make_cifar100(root, n_train=77, n_test=11)
    raw = dl.load_cifar('cifar100', root)
    assert (raw['train_data'] == images).all()
    assert raw['train_label'].tolist() == fine.tolist() and raw['test_label'].tolist() == test_fine.tolist()
    assert raw['train_coarse'] is not None and len(raw['train_coarse']) == 77


def test_reads_fashionmnist_idx(tmp_path):
    root = str(tmp_path / 'fm')
    make_fashion(root, n_train=30, n_test=12)
    raw = dl.load_fashionmnist(root)
    assert raw['train_data'].shape == (30, 28, 28, 1) and raw['test_data'].shape == (12, 28, 28, 1)
    # also found where torchvision's download puts the files
    os.makedirs(str(tmp_path / 'tv' / 'FashionMNIST'))
    os.rename(root, str(tmp_path / 'tv' / 'FashionMNIST' / 'raw'))
    assert dl.load_fashionmnist(str(tmp_path / 'tv'))['train_label'].tolist() == raw['train_label'].tolist()


def test_missing_fashion_files_say_where_to_get_them(tmp_path):
    with pytest.raises(dl.DatasetError, match='dataset-fashion-mnist'):
        dl.load_fashionmnist(str(tmp_path))


def test_truncated_idx_file(tmp_path):
    root = str(tmp_path / 'fm')
    make_fashion(root, n_train=30, n_test=12)
    import gzip
    p = os.path.join(root, 'train-images-idx3-ubyte.gz')
    with gzip.open(p) as f:
        raw = f.read()
    with gzip.open(p, 'wb') as f:
        f.write(raw[:-100])
    with pytest.raises(dl.DatasetError, match='truncated'):
        dl.load_fashionmnist(root)


def test_missing_folder_and_file(tmp_path, cifar10_dir):
    with pytest.raises(dl.DatasetError, match='does not exist'):
        dl.load_cifar('cifar10', str(tmp_path / 'nope'))
    os.remove(os.path.join(cifar10_dir, 'data_batch_3'))
    with pytest.raises(dl.DatasetError, match='missing file .*data_batch_3'):
        dl.load_cifar('cifar10', cifar10_dir)


def test_truncated_pickle(cifar10_dir):
    p = os.path.join(cifar10_dir, 'data_batch_2')
    with open(p, 'rb') as f:
        raw = f.read()
    with open(p, 'wb') as f:
        f.write(raw[:len(raw) // 2])
    with pytest.raises(dl.DatasetError, match='data_batch_2.*truncated or not a CIFAR pickle'):
        dl.load_cifar('cifar10', cifar10_dir)


def test_wrong_dataset_folder(cifar10_dir):
    with pytest.raises(dl.DatasetError, match='missing file .*train'):
        dl.load_cifar('cifar100', cifar10_dir)


def test_loader_modes(cifar10_dir):
    log = io.StringIO()
    loader = dl.cifar_dataloader('cifar10', 0.5, 'sym', 8, 0, cifar10_dir, log,
                                 noise_file=dl.default_noise_file(cifar10_dir, 0.5, 'sym'), seed=123)
    N = 200
    warm = loader.run('warmup')
    assert warm.batch_size == 16
    imgs, labels, index = next(iter(warm))
    assert imgs.shape == (16, 3, 32, 32) and labels.dtype == torch.int64
    assert (labels.numpy() == loader.data.noise_label[index.numpy()]).all()

    ev = loader.run('eval_train')
    seen = torch.cat([b[2] for b in ev])
    assert seen.tolist() == list(range(N))  # not shuffled, every index once

    test = loader.run('test')
    x, y = next(iter(test))
    assert x.shape == (8, 3, 32, 32) and y.tolist() == loader.data.test_label[:8].tolist()

    prob = np.linspace(0, 1, N)
    pred = prob > 0.5
    labeled, unlabeled = loader.run('train', pred, prob)
    assert len(labeled.dataset) == pred.sum() and len(unlabeled.dataset) == N - pred.sum()
    x1, x2, y, w = next(iter(labeled))
    assert x1.shape == x2.shape == (8, 3, 32, 32) and not torch.equal(x1, x2)  # independent views
    assert w.dtype == torch.float64 and (w > 0.5).all()
    u1, u2 = next(iter(unlabeled))
    assert u1.shape == (8, 3, 32, 32)
    line = log.getvalue()
    auc = dl.labeled_auc(prob, loader.data.clean)
    assert line == 'Numer of labeled samples:%d   AUC:%.3f\n' % (pred.sum(), auc)


def test_labeled_items_carry_their_probability(cifar10_dir):
    loader = dl.cifar_dataloader('cifar10', 0.5, 'sym', 4, 0, cifar10_dir, None, seed=1)
    prob = np.random.RandomState(0).rand(200)
    pred = prob > 0.3
    ds = loader.run('train', pred, prob)[0].dataset
    assert np.allclose(ds.probability, prob[pred])
    assert ds.noise_label == loader.data.noise_label[pred].tolist()


def test_fashion_loader_grayscale(fashion_dir):
    loader = dl.cifar_dataloader('fashionmnist', 0.2, 'sym', 4, 0, fashion_dir, None, seed=1)
    x, y, idx = next(iter(loader.run('warmup')))
    assert x.shape == (8, 1, 28, 28)


def test_loader_without_augmentation_gives_the_test_transform(fashion_dir):
    loader = dl.cifar_dataloader('fashionmnist', 0.2, 'sym', 4, 0, fashion_dir, None, seed=1, crop_flip=False)
    x, y, idx = next(iter(loader.run('warmup')))
    plain = torch.stack([loader.transform_test(Image.fromarray(loader.data.train_data[i][..., 0])) for i in idx])
    assert torch.equal(x, plain)
    x, x2, _, _ = next(iter(loader.run('train', pred=np.ones(len(loader.data.train_label), bool),
                                           prob=np.ones(len(loader.data.train_label)))[0]))
    assert torch.equal(x, x2)
    # the default keeps the reference's random crop + flip
    x, _, idx = next(iter(dl.cifar_dataloader('fashionmnist', 0.2, 'sym', 4, 0, fashion_dir, None,
                                              seed=1).run('warmup')))
    assert not torch.equal(x, torch.stack([loader.transform_test(Image.fromarray(
        loader.data.train_data[i][..., 0])) for i in idx]))


def test_subset_is_fixed_and_seed_independent(cifar10_dir):
    a = dl.load_noisy_data('cifar10', 0.5, 'sym', cifar10_dir, seed=1, train_subset=50, test_subset=20)
    b = dl.load_noisy_data('cifar10', 0.5, 'sym', cifar10_dir, seed=2, train_subset=50, test_subset=20)
    assert len(a.train_label) == 50 and len(a.test_label) == 20
    assert (a.train_data == b.train_data).all() and (a.train_label == b.train_label).all()
    with pytest.raises(dl.DatasetError, match='only 200'):
        dl.load_noisy_data('cifar10', 0.5, 'sym', cifar10_dir, train_subset=500)
