"""Train_folder.py: your own image folder (PNG and JPEG, mixed sizes, folders or list files), the label
report, the two pipelines, resume and --report_only, and bad input with exit status 2."""
import csv
import hashlib
import json
import os

import numpy as np
import pytest
import torch
import torchvision

import dataloader_folder
import Train_folder
from conftest import run_script
from tiny_data import make_image_folder

FAST = ['--num_epochs', '1', '--warm_up', '1', '--batch_size', '8', '--num_workers', '0', '--log_every', '1']
NOISY = (0, 13, 30)  # planted label errors: a cat saved as a dog, a dog as a fox, a fox as a cat


def run(argv, capsys):
    return run_script(Train_folder.main, argv, capsys, (dataloader_folder.DatasetError,))


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('own') / 'animals')
    paths, given, true = make_image_folder(root, noisy=NOISY)
    return root, paths, given, true


def read_report(stem):
    with open(stem + '_label_issues.csv') as f:
        return list(csv.DictReader(f))


def check_report(rows, paths, given, classes, p_threshold):
    """Every training sample exactly once, the columns right, the most suspicious first."""
    assert list(rows[0]) == list(Train_folder.label_issues.COLUMNS)
    assert sorted(int(r['index']) for r in rows) == list(range(len(paths)))
    assert sorted(r['path'] for r in rows) == sorted(paths)
    assert [int(r['rank']) for r in rows] == list(range(1, len(paths) + 1))
    means = [float(r['clean_prob_mean']) for r in rows]
    assert means == sorted(means)
    label_of = dict(zip(paths, given))  # what was planted: the folder (or list line) each image was saved under
    for r in rows:
        g = label_of[r['path']]
        assert int(r['given_label']) == g and r['given_class'] == classes[g]
        assert float(r['clean_prob_mean']) == (float(r['clean_prob_net1']) + float(r['clean_prob_net2'])) / 2
        assert r['predicted_class'] == classes[int(r['predicted_label'])]
        assert 0 < float(r['predicted_prob']) <= 1
        assert int(r['flagged']) == int(float(r['clean_prob_mean']) < p_threshold)


def test_folder_end_to_end_with_the_paper_network(folder, ram_tmp, capsys):
    """The real model, once: PreResNet-18 (width 64) on PNG and JPEG images of 24 and 32 px."""
    root, paths, given, _ = folder
    ck = str(ram_tmp / 'ck')
    code, out = run(['--data_path', root, '--checkpoint_dir', ck] + FAST, capsys)
    assert code == 0, out.err
    assert '| classes (3, label = position): cat, dog, fox' in out.out
    stem = os.path.join(ck, 'animals')
    with open(stem + '_settings.json') as f:
        settings = json.load(f)
    assert settings['classes'] == ['cat', 'dog', 'fox'] and settings['pipeline'] == 'device'
    assert settings['image_size'] == 32 and settings['channels'] == 3 and settings['width'] == 64
    assert (settings['lambda_u'], settings['p_threshold']) == (25, 0.5)  # the paper's CIFAR-10 sym 50% cell
    assert len(open(stem + '_acc.txt').read().splitlines()) == 2
    rows = read_report(stem)
    check_report(rows, paths, given, ['cat', 'dog', 'fox'], 0.5)
    summary = open(stem + '_label_issues_summary.txt').read()
    flagged = sum(int(r['flagged']) for r in rows)
    assert summary.startswith('36 training samples, %d flagged' % flagged)
    for name in ('cat', 'dog', 'fox'):
        k = sum(int(r['flagged']) for r in rows if r['given_class'] == name)
        assert '  %s  %6d of %6d' % (name, k, 12) in summary
    assert torch.load(stem + '_net1.pth.tar', weights_only=True)['conv1.weight'].shape == (64, 3, 3, 3)


def test_list_files_and_report_only(tmp_path, capsys):
    """The list-file layout; --report_only writes the report from the checkpoint without training, and
    gives the numbers the end of the run gave."""
    root = str(tmp_path / 'lists')
    paths, given, _ = make_image_folder(root, layout='lists', noisy=(1, 20))
    ck = str(tmp_path / 'ck')
    args = ['--data_path', root, '--checkpoint_dir', ck, '--arch', 'cnn', '--width', '4'] + FAST
    code, out = run(args, capsys)
    assert code == 0, out.err
    stem = os.path.join(ck, 'lists')
    rows = read_report(stem)
    check_report(rows, paths, given, ['cat', 'dog', 'fox'], 0.5)
    logs = {n: hashlib.sha256(open(os.path.join(ck, n), 'rb').read()).hexdigest() for n in os.listdir(ck)
            if not n.endswith(('.csv', '_summary.txt'))}
    os.remove(stem + '_label_issues.csv')
    code, out = run(args + ['--report_only'], capsys)
    assert code == 0, out.err
    assert read_report(stem) == rows  # the same nets give the same report
    assert {n: hashlib.sha256(open(os.path.join(ck, n), 'rb').read()).hexdigest() for n in logs} == logs


def test_report_every_leaves_training_unchanged_and_resume_is_exact(folder, tmp_path, capsys):
    root, _, _, _ = folder
    base = ['--data_path', root, '--arch', 'cnn', '--width', '4', '--num_epochs', '2', '--warm_up', '1',
            '--batch_size', '8', '--num_workers', '0']
    a, b, c = (str(tmp_path / n) for n in 'abc')
    assert run(base + ['--checkpoint_dir', a], capsys)[0] == 0
    assert run(base + ['--checkpoint_dir', b, '--report_every', '1'], capsys)[0] == 0
    stop = list(base)
    stop[stop.index('--num_epochs') + 1] = '1'
    assert run(stop + ['--checkpoint_dir', c], capsys)[0] == 0
    assert run(base + ['--checkpoint_dir', c, '--resume'], capsys)[0] == 0
    for name in ('animals_acc.txt', 'animals_stats.txt', 'animals_label_issues.csv'):
        ref = open(os.path.join(a, name)).read()
        assert open(os.path.join(b, name)).read() == ref and open(os.path.join(c, name)).read() == ref, name


def test_large_images_through_dataloaders_with_a_torchvision_model(tmp_path, capsys, monkeypatch):
    """Images over 64 px: the DataLoader path and a torchvision model; its weights from a local file,
    offline, never a silent random init."""
    root = str(tmp_path / 'big')
    paths, given, _ = make_image_folder(root, sizes=(80, 96), per_class=4, n_test=2)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    ck = str(tmp_path / 'ck')
    args = ['--data_path', root, '--checkpoint_dir', ck, '--arch', 'resnet18', '--weights', 'IMAGENET1K_V1',
            '--image_size', '64', '--resize_size', '72'] + FAST
    code, out = run(args + ['--offline'], capsys)
    assert code == 2 and 'are not cached at' in out.err and '--pretrained_path /path/to/resnet18-f37072fd.pth' in \
        out.err and '--random_init' in out.err
    weights = torchvision.models.resnet18(weights=None).state_dict()
    local = str(tmp_path / 'resnet18-f37072fd.pth')
    torch.save(weights, local)
    code, out = run(args + ['--pretrained_path', local], capsys)
    assert code == 0, out.err
    stem = os.path.join(ck, 'big')
    with open(stem + '_settings.json') as f:
        settings = json.load(f)
    assert settings['pipeline'] == 'reference' and settings['weights'] == 'IMAGENET1K_V1'
    assert settings['mean'] == list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms().mean)
    assert (settings['lr'], settings['alpha'], settings['lambda_u']) == (0.002, 0.5, 0)  # Clothing1M's regime
    check_report(read_report(stem), paths, given, ['cat', 'dog', 'fox'], 0.5)
    assert torch.load(stem + '_net1.pth.tar', weights_only=True)['fc.weight'].shape == (3, 512)


def damage(kind, root):
    if kind == 'empty class folder':
        os.makedirs(os.path.join(root, 'train', 'emu'))
        os.makedirs(os.path.join(root, 'test', 'emu'))
    elif kind == 'unreadable image':
        with open(os.path.join(root, 'train', 'dog', 'dog_1_2.png'), 'wb') as f:
            f.write(b'\x89PNG not really')
    elif kind == 'single class':
        import shutil
        for c in ('dog', 'fox'):
            shutil.rmtree(os.path.join(root, 'train', c))
            shutil.rmtree(os.path.join(root, 'test', c))
    elif kind == 'other classes in test':
        os.rename(os.path.join(root, 'test', 'fox'), os.path.join(root, 'test', 'wolf'))
    elif kind == 'label outside the class list':
        rows = open(os.path.join(root, 'train.txt')).read().splitlines()
        rows[5] = rows[5].split()[0] + ' 3'
        open(os.path.join(root, 'train.txt'), 'w').write('\n'.join(rows) + '\n')


BAD = [('empty class folder', 'class folder %s/train/emu holds no image'),
       ('unreadable image', 'cannot read image %s/train/dog/dog_1_2.png'),
       ('single class', 'the training split of %s has a single class (cat): DivideMix needs at least two classes'),
       ('other classes in test', '%s/test has other class folders than %s/train (not in train: wolf; missing: fox)'),
       ('label outside the class list', '%s/train.txt line 6: label 3 is outside the class list (0..2')]


@pytest.mark.parametrize('kind, message', BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2(tmp_path, capsys, kind, message):
    root = str(tmp_path / 'data')
    make_image_folder(root, per_class=4, n_test=2, layout='lists' if 'list' in kind else 'folders')
    damage(kind, root)
    ck = tmp_path / 'ck'
    code, out = run(['--data_path', root, '--checkpoint_dir', str(ck), '--arch', 'cnn', '--width', '4'] + FAST,
                    capsys)
    assert code == 2
    assert message.replace('%s', root) in out.err, out.err
    assert not ck.exists() or not os.listdir(str(ck))  # refused before anything was written


def test_survey_and_images_helpers(tmp_path):
    root = str(tmp_path / 'g')
    make_image_folder(root, per_class=2, n_test=1, sizes=(20, 28))
    data = dataloader_folder.scan(root)
    side, grey = dataloader_folder.survey(data.splits['train'][0])
    assert side == 28 and not grey and data.eval_split == 'test'
    images = dataloader_folder.load_images(data.splits['train'][0], 28, 1)
    assert images.shape == (6, 28, 28, 1) and images.dtype == np.uint8
