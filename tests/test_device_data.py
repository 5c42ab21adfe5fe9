"""device_data + data_sources.DeviceSource: the batch augmentation is the reference's transform, drawn
uniformly, and the source's modes are the reference loader's."""
import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

import dataloader_cifar as dl
import dividemix as dm
from dividemix_run.data_sources import DeviceSource
from dividemix_run.device_data import DeviceImages
from PreResNet import ResNet18

MEAN, STD = dl.DATASETS['cifar10']['mean'], dl.DATASETS['cifar10']['std']


def images(n=16, side=32, channels=3, seed=0):
    return np.random.RandomState(seed).randint(0, 256, size=(n, side, side, channels), dtype=np.uint8)


def reference_view(img, dy, dx, flip, mean=MEAN, std=STD):
    """torchvision's RandomCrop(side, padding=4) + RandomHorizontalFlip + ToTensor + Normalize,
    with the crop offset and flip given instead of drawn."""
    pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    side = img.shape[0]
    out = TF.crop(TF.pad(pil, 4, fill=0), dy, dx, side, side)
    if flip:
        out = TF.hflip(out)
    return T.Normalize(mean, std)(T.ToTensor()(out))


@pytest.mark.parametrize('channels, side', [(3, 32), (1, 28)])
def test_view_equals_torchvision_transform(channels, side):
    imgs = images(12, side, channels)
    mean, std = (MEAN, STD) if channels == 3 else ((0.286,), (0.353,))
    dev = DeviceImages(imgs, mean, std, 'cpu')
    idx = torch.arange(12)
    dy = torch.tensor([0, 8, 4, 1, 7, 3, 0, 8, 2, 5, 6, 4])
    dx = torch.tensor([0, 8, 4, 6, 0, 2, 8, 0, 7, 3, 1, 4])
    flip = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 0, 1], dtype=torch.bool)
    ours = dev.crop_flip(idx, dy, dx, flip)
    for i in range(12):
        ref = reference_view(imgs[i], int(dy[i]), int(dx[i]), bool(flip[i]), mean, std)
        assert torch.equal(ours[i], ref), 'sample %d differs' % i  # bit-identical arithmetic
    plain = dev.plain(idx)
    for i in range(12):
        assert torch.equal(plain[i], T.Normalize(mean, std)(T.ToTensor()(Image.fromarray(
            imgs[i][..., 0] if channels == 1 else imgs[i]))))


def test_grayscale_views_have_canonical_strides():
    """(HW, 1, W, 1) strides make oneDNN's CPU conv backward hang or corrupt memory; views
    of 1-channel images must come with the canonical (HW, HW, W, 1)."""
    dev = DeviceImages(images(4, 28, 1), (0.286,), (0.353,), 'cpu')
    g = torch.Generator().manual_seed(0)
    assert dev.augment(torch.arange(4), g).stride() == (784, 784, 28, 1)
    assert dev.plain(torch.arange(4)).stride() == (784, 784, 28, 1)


def test_padded_border_is_a_normalised_black_pixel():
    dev = DeviceImages(images(2), MEAN, STD, 'cpu')
    view = dev.crop_flip(torch.tensor([0, 1]), torch.tensor([0, 8]), torch.tensor([0, 8]), torch.tensor([False, True]))
    black = (-torch.tensor(MEAN) / torch.tensor(STD)).view(3, 1, 1)
    assert torch.allclose(view[0, :, :4, :], black.expand(3, 4, 32))   # top rows of a (0, 0) crop
    assert torch.allclose(view[0, :, :, :4], black.expand(3, 32, 4))   # left columns
    assert torch.allclose(view[1, :, -4:, :], black.expand(3, 4, 32))  # bottom rows of an (8, 8) crop
    assert torch.allclose(view[1, :, :, :4], black.expand(3, 32, 4))   # flipped: the right border is now left


def test_offsets_and_flips_are_uniform():
    dev = DeviceImages(images(1), MEAN, STD, 'cpu')
    g = torch.Generator().manual_seed(0)
    n = 81 * 400
    dy, dx, flip = dev.draw(n, g)
    counts = torch.bincount(dy * 9 + dx, minlength=81).double()
    assert counts.numel() == 81 and (counts > 0).all()
    chi2 = ((counts - n / 81) ** 2 / (n / 81)).sum().item()
    assert chi2 < 124.8, 'chi-square %.1f over 80 dof exceeds the 0.1%% critical value' % chi2
    assert dy.min() == 0 and dy.max() == 8
    k = flip.sum().item()
    assert abs(k - n / 2) < 3.29 * (n / 4) ** 0.5  # two-sided 0.1% binomial bound


def test_channels_last_views():
    dev = DeviceImages(images(4), MEAN, STD, 'cpu', channels_last=True)
    v = dev.augment(torch.arange(4), torch.Generator().manual_seed(0))
    assert v.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(v.contiguous(), DeviceImages(images(4), MEAN, STD, 'cpu').augment(
        torch.arange(4), torch.Generator().manual_seed(0)))


def make_pipeline(n=50, batch_size=8, seed=0, crop_flip=True):
    imgs = images(n)
    labels = np.arange(n) % 10
    return DeviceSource(imgs, labels, imgs[:10], labels[:10], MEAN, STD, batch_size, 'cpu', seed=seed,
                        eval_batch_size=16, crop_flip=crop_flip)


def division(pred, prob):
    """A division made by net1 (the source only reads pred and prob)."""
    return dm.Division(net=0, prob=np.asarray(prob, np.float64), pred=np.asarray(pred, bool), losses=None,
                       input_loss=None, gmm=None)


def test_no_augmentation_gives_plain_views_and_draws_nothing():
    """--augment none: every training view is the plain normalised image (torchvision's
    ToTensor + Normalize), and the pipeline's random stream is only used for shuffling."""
    p = make_pipeline(crop_flip=False)
    pred = torch.zeros(50, dtype=torch.bool)
    pred[:21] = True
    labeled, unlabeled, _ = p.train_batches(division(pred, torch.linspace(0, 1, 50)))
    before = p.generator.get_state()
    idx = torch.tensor([3, 0, 7])
    assert torch.equal(p.train.augment(idx, p.generator), p.train.plain(idx))
    assert torch.equal(p.generator.get_state(), before)
    ref = T.Normalize(MEAN, STD)(T.ToTensor()(Image.fromarray(images(50)[7])))
    assert torch.equal(p.train.augment(torch.tensor([7]), p.generator)[0], ref)
    x, x2, _, _ = next(labeled)
    u, u2 = next(unlabeled)
    assert torch.equal(x, x2) and torch.equal(u, u2)  # two views of a sample are the same image
    assert not torch.equal(next(make_pipeline().train_batches(division(pred, torch.ones(50)))[0])[0],
                           next(make_pipeline().train_batches(division(pred, torch.ones(50)))[0])[1])


def test_pipeline_modes():
    p = make_pipeline()
    warm = list(p.warmup_batches())
    assert [b[0].shape[0] for b in warm] == [16, 16, 16, 2] and len(p.warmup_batches()) == 4
    assert sorted(torch.cat([b[2] for b in warm]).tolist()) == list(range(50))
    assert all(torch.equal(b[1], p.noise_label[b[2]]) for b in warm)
    ev = list(p.eval_batches())
    assert torch.cat([b[2] for b in ev]).tolist() == list(range(50))
    assert sum(b[0].shape[0] for b in p.test_batches()) == 10

    pred = torch.zeros(50, dtype=torch.bool)
    pred[:21] = True
    prob = torch.linspace(0, 1, 50)
    labeled, unlabeled, n = p.train_batches(division(pred, prob))
    assert n == 21
    lab = list(labeled)
    assert [b[0].shape[0] for b in lab] == [8, 8, 5]  # ragged last batch kept
    x, x2, y, w = lab[0]
    assert not torch.equal(x, x2) and (w <= prob[20]).all()
    assert sorted(torch.cat([b[3] for b in lab]).tolist()) == pytest.approx(prob[:21].tolist())
    # the unlabeled stream: batches of 8 over the 29 samples (8, 8, 8, 5), then a fresh permutation
    first = [next(unlabeled) for _ in range(5)]
    assert [u.shape[0] for u, _ in first] == [8, 8, 8, 5, 8]


@pytest.mark.parametrize('seed', [0, 123])
def test_pipeline_draws_do_not_replay_the_weight_init(seed):
    """The scripts call torch.manual_seed(seed), build the nets, then DeviceSource(seed=seed).
    A CPU generator seeded with the same number would replay the init's numbers: every flip
    would equal (init weight draw < 0.5) and the crops would be functions of the weights.
    The pipeline's flips must agree with the init draws only by chance (about half)."""
    n = 3000
    torch.manual_seed(seed)
    init = torch.empty(3 * n).uniform_()  # the numbers kaiming_uniform_ & co. draw first
    p = make_pipeline(seed=seed)
    dy, dx, flip = p.train.draw(n, p.generator)  # n offsets dy, n offsets dx, then n flips
    agree = ((init[2 * n:] < 0.5) == flip).float().mean().item()
    assert 0.45 < agree < 0.55, agree  # 1.0 when the pipeline's stream is the global one
    # still a function of the seed alone: the same seed gives the same views
    a = next(iter(make_pipeline(seed=seed).warmup_batches()))[0]
    assert torch.equal(a, next(iter(make_pipeline(seed=seed).warmup_batches()))[0])
    assert not torch.equal(a, next(iter(make_pipeline(seed=seed + 1).warmup_batches()))[0])


def test_unlabeled_stream_visits_each_sample_once_per_cycle():
    p = make_pipeline(n=30)
    pred = torch.zeros(30, dtype=torch.bool)
    pred[:7] = True
    seen = []
    orig = p.train.crop_flip

    def spy(idx, *draws):
        seen.append(idx.clone())
        return orig(idx, *draws)
    p.train.crop_flip = spy
    _, unlabeled, _ = p.train_batches(division(pred, torch.ones(30)))
    for _ in range(3):  # 23 unlabeled: batches 8, 8, 7
        next(unlabeled)
    cycle = torch.cat(seen[::2])  # each batch is augmented twice (u, u2)
    assert sorted(cycle.tolist()) == list(range(7, 30))


def test_empty_sets():
    p = make_pipeline(n=20)
    labeled, unlabeled, n = p.train_batches(division(np.ones(20, bool), np.ones(20)))
    assert unlabeled is None and n == 20
    labeled, unlabeled, n = p.train_batches(division(np.zeros(20, bool), np.zeros(20)))
    assert n == 0 and list(labeled) == []


def test_source_state_restores_the_stream():
    """What a checkpoint keeps of the source: its generator. Restored, the next views repeat."""
    p = make_pipeline()
    next(iter(p.warmup_batches()))
    state = p.state_dict()
    a = next(iter(p.warmup_batches()))[0]
    q = make_pipeline(seed=99)
    q.load_state_dict(state)
    assert torch.equal(next(iter(q.warmup_batches()))[0], a)


def test_one_training_pass_same_losses_both_paths():
    """Fixed inputs, offsets, permutation and l: the device path's views and the reference's
    PIL transforms feed the same training pass and give the same losses and weights."""
    imgs = images(24)
    labels = torch.arange(24) % 10
    prob = torch.rand(24, generator=torch.Generator().manual_seed(1))
    dev = DeviceImages(imgs, MEAN, STD, 'cpu')
    g = torch.Generator().manual_seed(3)
    plan = []  # per batch: labeled idx and two draws, unlabeled idx and two draws
    for start in (0, 8):
        li = torch.arange(start, start + 4)
        ui = torch.arange(start + 12, start + 16)
        plan.append((li, dev.draw(4, g), dev.draw(4, g), ui, dev.draw(4, g), dev.draw(4, g)))

    def views(idx, draw, device_path):
        if device_path:
            return dev.crop_flip(idx, *draw)
        dy, dx, flip = draw
        return torch.stack([reference_view(imgs[i], int(a), int(b), bool(f)) for i, a, b, f in zip(idx, dy, dx, flip)])

    results = []
    for device_path in (True, False):
        torch.manual_seed(0)
        net, peer = ResNet18(10, width=4), ResNet18(10, width=4)
        opt = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
        labeled = [(views(li, d1, device_path), views(li, d2, device_path), labels[li], prob[li])
                   for li, d1, d2, _, _, _ in plan]
        unlabeled = iter([(views(ui, d3, device_path), views(ui, d4, device_path)) for _, _, _, ui, d3, d4 in plan])
        perms = iter([torch.tensor([3, 7, 1, 0, 15, 2, 9, 4, 12, 5, 6, 8, 10, 11, 13, 14])] * 2)
        out = dm.train_pass(net, peer, opt, labeled, unlabeled, dm.Config(num_class=10, warm_up=10), epoch=15,
                            num_iter=3, rng=np.random.RandomState(7), randperm=lambda n, device=None: next(perms))
        results.append((out, [p.detach().clone() for p in net.parameters()]))
    (a, wa), (b, wb) = results
    assert a == b
    assert all(torch.equal(x, y) for x, y in zip(wa, wb))
