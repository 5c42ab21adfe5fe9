"""Clothing1M and WebVision: real-format roots with JPEG files, loaders, both scripts end to end."""
import json
import os
import re
import urllib.error

import numpy as np
import pytest
import torch
import torchvision

import dataloader_clothing1M as cl
import dataloader_webvision as wv
import Train_clothing1M
import Train_webvision
from dividemix_run import cli
from conftest import make_clothing1m, make_webvision, run_script


def run(main, argv, capsys, errors=()):
    return run_script(main, argv, capsys, errors)


# ---------------------------------------------------------------- Clothing1M loaders

@pytest.fixture
def clothing_root(tmp_path):
    root = str(tmp_path / 'Clothing1M')
    make_clothing1m(root)
    return root


def test_clothing_paths_labels_and_prefix(clothing_root):
    labels = cl._read_list(clothing_root, cl.NOISY_KV, True)
    # 'images/3/03/3_1.jpg' -> '<root>/3/03/3_1.jpg' (the leading 'images/' removed)
    path = '%s/3/03/3_1.jpg' % clothing_root
    assert labels[path] == 3 and os.path.isfile(path)
    assert labels['%s/3/03/3_0.jpg' % clothing_root] == 4  # the planted noisy label
    # parsed once per process: every dataset shares the same dict
    assert cl._read_list(clothing_root, cl.NOISY_KV, True) is labels
    a = cl.clothing_dataset(clothing_root, None, 'val')
    b = cl.clothing_dataset(clothing_root, None, 'test')
    assert a.train_labels is b.train_labels is labels


def test_clothing_loader_modes(clothing_root):
    loader = cl.clothing_dataloader(clothing_root, batch_size=2, num_batches=3, num_workers=0, eval_batch_size=4)
    warm = loader.run('warmup')
    assert warm.batch_size == 4 and len(warm.dataset) == 12
    x, y, paths = next(iter(warm))
    assert x.shape == (4, 3, 224, 224) and isinstance(paths[0], str)
    labels = cl._read_list(clothing_root, cl.NOISY_KV, True)
    assert [labels[p] for p in paths] == y.tolist()
    ev = loader.run('eval_train')
    assert len(ev.dataset) == 6 and ev.batch_size == 2
    val = loader.run('val')
    x, y = next(iter(val))
    clean = cl._read_list(clothing_root, cl.CLEAN_KV, True)
    assert y.tolist() == [clean['%s/val/%d.jpg' % (clothing_root, i)] for i in range(4)]
    eval_paths = ev.dataset.train_imgs
    pred = np.array([True, False, True, True, False, False])
    prob = np.linspace(0.9, 0.1, 6)
    labeled, unlabeled = loader.run('train', pred, prob, paths=eval_paths)
    assert labeled.dataset.train_imgs == [eval_paths[i] for i in (0, 2, 3)]
    assert labeled.dataset.probability == pytest.approx(prob[[0, 2, 3]].tolist())
    assert unlabeled.dataset.train_imgs == [eval_paths[i] for i in (1, 4, 5)]
    x1, x2, y, w = next(iter(labeled))
    assert x1.shape == (2, 3, 224, 224)


@pytest.mark.parametrize('num_samples', [14, 20, 28, 40])
def test_class_balanced_sampling_cap(clothing_root, num_samples):
    import random
    labels = cl._read_list(clothing_root, cl.NOISY_KV, True)
    keys = cl._read_list(clothing_root, cl.TRAIN_KEYS, False)
    taken = cl.class_balanced_sample(keys, labels, num_samples, 14, random.Random(0))
    counts = np.bincount([labels[p] for p in taken], minlength=14)
    assert counts.max() <= int(np.ceil(num_samples / 14)) and len(taken) <= num_samples
    assert len(set(taken)) == len(taken)
    # 42 images, 3 per noisy class: the cap binds exactly as min(3, ceil(n/14)) per class
    assert len(taken) == min(num_samples, 14 * min(3, int(np.ceil(num_samples / 14))))


def test_clothing_missing_and_broken_images(clothing_root):
    missing = '%s/5/05/5_2.jpg' % clothing_root
    os.remove(missing)
    ds = cl.clothing_dataset(clothing_root, lambda im: im, 'labeled', pred=[True], probability=[0.9],
                             paths=[missing])
    with pytest.raises(cl.DatasetError, match=re.escape(missing) + '.*listed in noisy_train_key_list.txt'):
        ds[0]
    broken = '%s/val/2.jpg' % clothing_root
    with open(broken, 'wb') as f:
        f.write(b'not a jpeg')
    ds = cl.clothing_dataset(clothing_root, lambda im: im, 'val')
    with pytest.raises(cl.DatasetError, match=re.escape(broken) + '.*listed in clean_val_key_list.txt'):
        ds[2]


def test_clothing_bad_lists(clothing_root):
    os.remove(os.path.join(clothing_root, 'clean_test_key_list.txt'))
    with pytest.raises(cl.DatasetError, match='missing clean_test_key_list.txt'):
        cl.clothing_dataloader(clothing_root, 2, 2, 0).check()
    with open(os.path.join(clothing_root, 'clean_test_key_list.txt'), 'w') as f:
        f.write('test/0.jpg\n')
    with pytest.raises(cl.DatasetError, match='line 1 is .test/0.jpg.; expected "images/<path>"'):
        cl.clothing_dataloader(clothing_root, 2, 2, 0).check()


# ---------------------------------------------------------------- WebVision loaders

@pytest.fixture
def webvision_root(tmp_path):
    root = str(tmp_path / 'webvision') + '/'
    make_webvision(root, num_class=2, per_class=2, n_val=1, n_imagenet=1)
    return root


def test_webvision_loader_modes(webvision_root):
    loader = wv.webvision_dataloader(batch_size=2, num_class=2, num_workers=0, root_dir=webvision_root, log=None)
    ev = loader.run('eval_train')
    assert ev.batch_size == 40
    assert ev.dataset.train_imgs == ['google/q0000/000000.jpg', 'google/q0000/000001.jpg',
                                     'google/q0001/000000.jpg', 'google/q0001/000001.jpg']  # class 2 skipped
    x, y, idx = next(iter(ev))
    assert x.shape == (4, 3, 299, 299) and y.tolist() == [0, 0, 1, 1] and idx.tolist() == [0, 1, 2, 3]
    x, y = next(iter(loader.run('test')))
    assert y.tolist() == [0, 1]
    img = loader.run('imagenet')
    assert [t for t, _ in img.dataset.val_data] == [0, 1]
    assert img.dataset.val_data[1][1].endswith(os.path.join('imagenet', 'val', '1', 'ILSVRC2012_val_00000010.JPEG'))
    import io
    log = io.StringIO()
    loader.log = log
    labeled, unlabeled = loader.run('train', np.array([1, 0, 1, 1]), np.array([0.8, 0.1, 0.9, 0.7]))
    assert len(labeled.dataset) == 3 and len(unlabeled.dataset) == 1
    assert log.getvalue() == 'Numer of labeled samples:3 \n'


def test_webvision_missing_things(webvision_root):
    os.remove(os.path.join(webvision_root, 'google', 'q0001', '000001.jpg'))
    ds = wv.webvision_dataset(webvision_root, lambda im: im, 'all', 2)
    with pytest.raises(wv.DatasetError, match='000001.jpg, listed in info.train_filelist_google.txt'):
        ds[3]
    import shutil
    shutil.rmtree(os.path.join(webvision_root, 'imagenet', 'val', '1'))
    with pytest.raises(wv.DatasetError, match='missing ImageNet validation folder .*1'):
        wv.webvision_dataloader(2, 2, 0, webvision_root, None).check()
    with pytest.raises(wv.DatasetError, match='missing info.train_filelist_google.txt'):
        wv.read_filelist(webvision_root + 'nowhere/', wv.TRAIN_LIST, 2)


# ---------------------------------------------------------------- the scripts

CLOTHING_FAST = ['--num_epochs', '1', '--batch_size', '2', '--num_batches', '2', '--num_workers', '0',
                 '--eval_batch_size', '4', '--log_every', '1']


def test_clothing1m_end_to_end(clothing_root, ram_tmp, capsys):
    """The real model (ResNet-50 at 224 px), once."""
    ck = str(ram_tmp / 'checkpoint')
    code, out = run(Train_clothing1M.main, ['--data_path', clothing_root, '--random_init', '--checkpoint_dir', ck]
                    + CLOTHING_FAST, capsys)
    assert code == 0, out.err
    with open(os.path.join(ck, 'clothing1m.txt')) as f:
        log = f.read().splitlines()
    assert len(log) == 3
    for e, line in enumerate(log[:2]):
        assert re.match(r'^Validation Epoch:%d      Acc1:\d+\.\d\d  Acc2:\d+\.\d\d$' % e, line)
    assert re.match(r'^Test Accuracy:\d+\.\d\d$', log[2])
    for k in (1, 2):
        sd = torch.load(os.path.join(ck, 'clothing1m_net%d.pth.tar' % k), weights_only=True)
        assert sd['fc.weight'].shape == (14, 2048)
    ckpt = torch.load(os.path.join(ck, 'clothing1m_checkpoint.pth.tar'), weights_only=True)
    assert ckpt['epoch'] == 1 and ckpt['format'] == 2 and ckpt['best_acc'][0] >= 0
    recs = [json.loads(l) for l in open(os.path.join(ck, 'clothing1m_log.jsonl'))]
    assert [r.get('phase') for r in recs] == ['warmup', 'train', None]
    assert recs[1]['labeled1'] + recs[1]['labeled2'] > 0 and 'test_acc' in recs[-1]['summary']
    assert 'Clothing1M | Epoch 1 train net1' in out.out  # one line per pass when not on a terminal
    from conftest import assert_strict_json
    assert set(assert_strict_json(ck)) == {'clothing1m_log.jsonl', 'clothing1m_settings.json', 'clothing1m_summary.json'}


def test_clothing1m_resume_is_exact(clothing_root, tmp_path, capsys, tiny_models):
    """Stopped after an epoch and resumed, the run ends as the uninterrupted one: the next division
    is drawn at the start of the epoch, from the restored random streams."""
    base = ['--data_path', clothing_root, '--random_init'] + CLOTHING_FAST
    base[base.index('--num_epochs') + 1] = '2'
    full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
    assert run(Train_clothing1M.main, base + ['--checkpoint_dir', full], capsys)[0] == 0
    stop = list(base)
    stop[stop.index('--num_epochs') + 1] = '1'
    assert run(Train_clothing1M.main, stop + ['--checkpoint_dir', part], capsys)[0] == 0
    code, out = run(Train_clothing1M.main, base + ['--checkpoint_dir', part, '--resume'], capsys)
    assert code == 0, out.err
    for name in ('clothing1m.txt', 'clothing1m_net1.pth.tar', 'clothing1m_net2.pth.tar'):
        assert same_file(os.path.join(full, name), os.path.join(part, name)), name
    strip = lambda path: [{k: v for k, v in json.loads(l).items() if k != 'seconds'} for l in open(path)]
    assert strip(os.path.join(full, 'clothing1m_log.jsonl')) == strip(os.path.join(part, 'clothing1m_log.jsonl'))


def test_webvision_resume_is_exact(webvision_root, tmp_path, capsys, tiny_models):
    base = ['--data_path', webvision_root, '--num_class', '2', '--batch_size', '2', '--num_workers', '0',
            '--id', 'web']
    full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
    assert run(Train_webvision.main, base + ['--num_epochs', '2', '--checkpoint_dir', full], capsys)[0] == 0
    assert run(Train_webvision.main, base + ['--num_epochs', '1', '--checkpoint_dir', part], capsys)[0] == 0
    code, out = run(Train_webvision.main, base + ['--num_epochs', '2', '--checkpoint_dir', part, '--resume'], capsys)
    assert code == 0, out.err
    for name in ('web_acc.txt', 'web_stats.txt', 'web_net1.pth.tar', 'web_net2.pth.tar'):
        assert same_file(os.path.join(full, name), os.path.join(part, name)), name


def same_file(a, b):
    if a.endswith('.pth.tar'):
        sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
        return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        return fa.read() == fb.read()


@pytest.mark.parametrize('script', ['clothing1m', 'webvision'])
def test_pre_redesign_checkpoint_is_refused(clothing_root, webvision_root, tmp_path, capsys, tiny_models, script):
    """Format 1 carried the next epoch's division (Clothing1M with its paths); this version divides at
    the start of the epoch instead, so such a run cannot continue exactly: refused, and why."""
    if script == 'clothing1m':
        main, args = Train_clothing1M.main, ['--data_path', clothing_root, '--random_init'] + CLOTHING_FAST
        path = 'clothing1m_checkpoint.pth.tar'
    else:
        main, args = Train_webvision.main, ['--data_path', webvision_root, '--num_class', '2', '--batch_size', '2',
                                            '--num_workers', '0', '--id', 'web', '--num_epochs', '1']
        path = 'web_checkpoint.pth.tar'
    ck = str(tmp_path / 'ck')
    assert run(main, args + ['--checkpoint_dir', ck], capsys)[0] == 0
    path = os.path.join(ck, path)
    ckpt = torch.load(path, weights_only=True)
    ckpt['format'] = 1
    torch.save(ckpt, path)
    code, out = run(main, args + ['--checkpoint_dir', ck, '--resume', '--num_epochs', '2'], capsys)
    assert code == 2
    assert 'was written by an earlier version of Train_%s.py, which made each division at the end of the epoch ' \
           'before it' % ('clothing1M' if script == 'clothing1m' else 'webvision') in out.err


def test_offline_weights_error(clothing_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    ck = str(tmp_path / 'ck')
    code, out = run(Train_clothing1M.main, ['--data_path', clothing_root, '--offline', '--checkpoint_dir', ck]
                    + CLOTHING_FAST, capsys)
    assert code == 2
    assert 'ResNet-50 ImageNet weights are not cached at %s' % str(tmp_path / 'torch_home') in out.err
    assert '--pretrained_path /path/to/resnet50-0676ba61.pth' in out.err and '--random_init' in out.err
    assert not os.path.exists(os.path.join(ck, 'clothing1m.txt'))  # stopped before training

    def no_network(url, dst, **kw):
        raise urllib.error.URLError('[Errno -2] Name or service not known')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_network)
    code, out = run(Train_clothing1M.main, ['--data_path', clothing_root, '--checkpoint_dir', ck] + CLOTHING_FAST,
                    capsys)
    assert code == 2 and 'downloading https://download.pytorch.org/models/resnet50-0676ba61.pth failed' in out.err
    code, out = run(Train_clothing1M.main, ['--data_path', clothing_root, '--pretrained_path',
                                            str(tmp_path / 'nope.pth'), '--checkpoint_dir', ck] + CLOTHING_FAST, capsys)
    assert code == 2 and 'nope.pth does not exist' in out.err


def test_pretrained_path_is_used(tmp_path):
    weights = torchvision.models.resnet50(weights=None).state_dict()
    path = str(tmp_path / 'resnet50-0676ba61.pth')
    torch.save(weights, path)
    args = Train_clothing1M.build_parser().parse_args(['--pretrained_path', path])
    model = Train_clothing1M.create_model(args, Train_clothing1M.imagenet_weights(args))
    assert torch.equal(model.conv1.weight, weights['conv1.weight'])
    assert model.fc.out_features == 14
    torch.save({'unrelated': torch.zeros(3)}, path)
    with pytest.raises(cli.UsageError, match='does not fit torchvision'):
        Train_clothing1M.create_model(args, Train_clothing1M.imagenet_weights(args))


def test_webvision_end_to_end(webvision_root, ram_tmp, capsys):
    ck = str(ram_tmp / 'checkpoint')
    code, out = run(Train_webvision.main, ['--data_path', webvision_root, '--num_class', '2', '--num_epochs', '1',
                                           '--batch_size', '2', '--num_workers', '0', '--checkpoint_dir', ck,
                                           '--id', 'web'], capsys)
    assert code == 0, out.err
    with open(os.path.join(ck, 'web_acc.txt')) as f:
        acc = f.read().splitlines()
    assert len(acc) == 2
    for e, line in enumerate(acc):
        assert re.match(r'^Epoch:%d \t WebVision Acc: \d+\.\d\d%% \(\d+\.\d\d%%\) \t ImageNet Acc: \d+\.\d\d%% '
                        r'\(\d+\.\d\d%%\)$' % e, line)
    with open(os.path.join(ck, 'web_stats.txt')) as f:
        stats = f.read().splitlines(keepends=True)
    assert len(stats) == 2 and all(re.match(r'^Numer of labeled samples:\d \n$', l) for l in stats)
    for k in (1, 2):
        assert torch.load(os.path.join(ck, 'web_net%d.pth.tar' % k), weights_only=True)['last_linear.weight'].shape \
            == (2, 1536)
    from conftest import assert_strict_json
    summary = assert_strict_json(ck)['web_summary.json']
    assert set(summary) == {'webvision_top1', 'webvision_top5', 'imagenet_top1', 'imagenet_top5'}
    assert summary['webvision_top5']['last'] == 100.0  # 2 classes: top-5 always hits
