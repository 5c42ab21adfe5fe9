"""--dry_run: every script checks what a real start checks, prints the plan, exits 0 and leaves every
file as it was; bad input gives the exit status 2 of a real run."""
import hashlib
import os

import pytest
import torch

import dataloader_clothing1M
import dataloader_folder
import dataloader_webvision
import Train_cifar
import Train_clothing1M
import Train_folder
import Train_webvision
from conftest import run_script
from dividemix_run import cli
from dividemix_run.lock import RunLock
from tiny_data import make_clothing1m, make_image_folder, make_webvision, make_cifar10

ERRORS = {Train_cifar: (), Train_clothing1M: (dataloader_clothing1M.DatasetError,),
          Train_webvision: (dataloader_webvision.DatasetError,), Train_folder: (dataloader_folder.DatasetError,)}


def run(script, argv, capsys):
    return run_script(script.main, argv, capsys, ERRORS[script])


def tree(root):
    """Every file and folder under root: path -> (size, mtime, sha256) or 'dir'."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(folder, d), root)] = 'dir'
        for name in files:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, root)] = (os.path.getsize(path), os.stat(path).st_mtime_ns,
                                                    hashlib.sha256(f.read()).hexdigest())
    return out


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp('dry')
    out = {'cifar10': str(base / 'cifar-10-batches-py'), 'clothing': str(base / 'Clothing1M'),
           'webvision': str(base / 'webvision') + os.sep, 'folder': str(base / 'animals')}
    make_cifar10(out['cifar10'])
    make_clothing1m(out['clothing'])
    make_webvision(out['webvision'], num_class=2, per_class=2, n_val=1, n_imagenet=1)
    make_image_folder(out['folder'], per_class=6, n_test=2)
    return out


def argv_of(script, roots):
    """Each script's tiny run (the real networks, except SmallCNN for CIFAR and the folder)."""
    return {
        Train_cifar: ['--data_path', roots['cifar10'], '--r', '0.4', '--arch', 'cnn', '--warm_up', '1',
                      '--num_epochs', '2', '--batch_size', '16', '--num_workers', '0', '--device', 'cpu'],
        Train_clothing1M: ['--data_path', roots['clothing'], '--random_init', '--batch_size', '2', '--num_batches', '2',
                           '--num_workers', '0', '--eval_batch_size', '4', '--num_epochs', '1', '--device', 'cpu'],
        Train_webvision: ['--data_path', roots['webvision'], '--num_class', '2', '--batch_size', '2', '--num_workers',
                          '0', '--id', 'web', '--num_epochs', '1', '--device', 'cpu'],
        Train_folder: ['--data_path', roots['folder'], '--arch', 'cnn', '--width', '8', '--warm_up', '1',
                       '--num_epochs', '2', '--batch_size', '8', '--num_workers', '0', '--device', 'cpu'],
    }[script]


SCRIPTS = [Train_cifar, Train_clothing1M, Train_webvision, Train_folder]
IDS = ['cifar', 'clothing1m', 'webvision', 'folder']


@pytest.mark.parametrize('script', SCRIPTS, ids=IDS)
def test_dry_run_prints_the_plan_and_changes_nothing(script, roots, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    ck = str(tmp_path / 'out' / 'runs')  # two levels that do not exist yet
    data_root = os.path.dirname(roots['cifar10'])
    before, before_data = tree(str(tmp_path)), tree(data_root)
    code, out = run(script, argv_of(script, roots) + ['--checkpoint_dir', ck, '--dry_run'], capsys)
    assert code == 0, out.err
    assert tree(str(tmp_path)) == before and tree(data_root) == before_data  # no folder, no noise file, no lock
    text = out.out
    assert text.startswith('| Dry run: ') and '(nothing is written or changed)' in text
    assert '| output: %s (would be created): ' % ck in text
    assert text.rstrip().endswith('nothing was written or changed. The same command without --dry_run starts the run.')
    assert '|   num_epochs       %-14s (command line)' % ('1' if script in (Train_clothing1M, Train_webvision)
                                                          else '2') in text
    assert '|   seed             123            (default)' in text
    assert '| processes: 1' in text and '| per epoch: warm-up ' in text
    # the parameter count is the network's the run would build
    if script is Train_cifar:
        assert '|   lambda_u         25             (resolved: nearest paper setting by noise rate: cifar10 sym 50% ' \
               '(this run: sym 40.0%))' in text
        assert 'drawn for this dry run; the run caches them in %s' % os.path.join(roots['cifar10'], '0.4_sym.json') \
            in text
        from SmallCNN import SmallCNN
        n = sum(p.numel() for p in SmallCNN(num_classes=10, in_channels=3, width=16, image_size=32).parameters())
        assert '| data: cifar10, 200 training and 50 test images of 32x32 px, 10 classes' in text
    elif script is Train_clothing1M:
        n = sum(p.numel() for p in Train_clothing1M.create_model(cli.Settings(num_class=14)).parameters())
        assert '42 noisy training images (each epoch a class-balanced sample of 8 for warm-up, 4 for co-divide), 6 ' \
               'clean validation and 6 clean test images, 14 classes; labels in range; 32 sampled images decoded' in text
        assert '| per epoch: warm-up 2 steps per net (8 samples, batches of 4); co-divide 2 eval batches per net (4 ' \
               'samples, batches of 2); co-train up to 3 steps per net' in text
    elif script is Train_webvision:
        from InceptionResNetV2 import InceptionResNetV2
        n = sum(p.numel() for p in InceptionResNetV2(num_classes=2).parameters())
        assert '4 training images (Google), 2 WebVision and 2 ILSVRC12 validation images of classes 0..1; labels ' \
               'in range; 8 sampled images decoded' in text
    else:
        from SmallCNN import SmallCNN
        n = sum(p.numel() for p in SmallCNN(num_classes=3, in_channels=3, width=8, image_size=32).parameters())
        assert '| labels 0..2 of 3 classes; 24 sampled images decoded' in text
    assert ' %s parameters, two of them' % format(n, ',') in text
    assert 'epochs 0..%s' % ('1' if script in (Train_clothing1M, Train_webvision) else '2') in text


def test_dry_run_of_a_resume_makes_the_resume_checks(roots, tmp_path, capsys):
    """After a real run: the dry run names the checkpoint and the epochs left; with other settings, a
    shortened log, a lock held or nothing to train, it gives the real run's exit 2 and message."""
    ck = str(tmp_path / 'ck')
    argv = argv_of(Train_cifar, roots) + ['--checkpoint_dir', ck, '--noise_file', str(tmp_path / 'noise.json')]
    assert run(Train_cifar, argv, capsys)[0] == 0
    longer = [a if a != '2' or argv[i - 1] != '--num_epochs' else '4' for i, a in enumerate(argv)]
    before = tree(str(tmp_path))
    code, out = run(Train_cifar, longer + ['--resume', '--dry_run'], capsys)
    assert code == 0, out.err
    stem = os.path.join(ck, 'cifar10_0.4_sym')
    assert '| resume: from %s_checkpoint.pth.tar after epoch 2: epochs 3..4, appending to ' % stem in out.out
    assert tree(str(tmp_path)) == before

    def same_as_real(extra, message):
        dry = run(Train_cifar, longer + extra + ['--dry_run'], capsys)
        real = run(Train_cifar, longer + extra, capsys)
        assert dry[0] == real[0] == 2, (dry, real)
        assert message in dry[1].err and dry[1].err == real[1].err
        assert tree(str(tmp_path)) == before

    same_as_real(['--resume', '--lr', '0.05'], "the settings differ (--lr: 0.02 in the checkpoint, 0.05 now)")
    same_as_real([], 'already holds a checkpoint of this run: pass --resume')
    same_as_real(['--resume', '--num_epochs', '1'], 'nothing to train')
    lock = RunLock(stem + '.lock').acquire()
    try:
        dry = run(Train_cifar, longer + ['--resume', '--dry_run'], capsys)
        assert dry[0] == 2 and 'another run with this name is running (pid %d' % os.getpid() in dry[1].err
    finally:
        lock.release()
    before = tree(str(tmp_path))
    with open(stem + '_acc.txt', 'r+') as f:
        f.truncate(5)
    before = tree(str(tmp_path))
    same_as_real(['--resume'], 'is shorter than when the checkpoint was saved')


def test_dry_run_refuses_what_a_real_run_refuses(roots, tmp_path, capsys):
    """Unwritable output and TensorBoard folders (nothing made), a damaged image among the sampled ones,
    bad flags: exit 2, as the real run."""
    argv = argv_of(Train_folder, roots)
    code, out = run(Train_folder, argv + ['--checkpoint_dir', '/proc/dividemix_dry', '--dry_run'], capsys)
    assert code == 2 and 'cannot write to the output folder /proc/dividemix_dry' in out.err
    blocker = tmp_path / 'file'
    blocker.write_text('a file where a folder would go\n')
    code, out = run(Train_folder, argv + ['--checkpoint_dir', str(blocker / 'runs'), '--dry_run'], capsys)
    assert code == 2 and 'cannot write to the output folder %s (Not a directory)' % (blocker / 'runs') in out.err
    code, out = run(Train_folder, argv + ['--checkpoint_dir', str(tmp_path / 'ck'), '--tensorboard', '/proc/tb',
                                          '--dry_run'], capsys)
    assert code == 2 and 'cannot write to the --tensorboard folder /proc/tb/animals' in out.err
    assert not os.path.exists(str(tmp_path / 'ck'))
    code, out = run(Train_cifar, argv_of(Train_cifar, roots) + ['--r', '1.5', '--dry_run'], capsys)
    assert code == 2 and '--r 1.5 is outside [0, 1]' in out.err
    # a truncated image (its header reads, its pixels do not): the sample decode names it
    root = str(tmp_path / 'broken')
    paths, _, _ = make_image_folder(root, per_class=2, n_test=1)
    with open(paths[0], 'r+b') as f:  # a PNG
        f.truncate(os.path.getsize(paths[0]) // 2)
    code, out = run(Train_folder, ['--data_path', root, '--checkpoint_dir', str(tmp_path / 'ck'), '--dry_run'],
                    capsys)
    assert code == 2 and '1 of 9 sampled images of %s do not decode: %s (' % (root, paths[0]) in out.err
    assert run(Train_folder, ['--data_path', root, '--checkpoint_dir', str(tmp_path / 'ck')], capsys)[0] == 2


def test_dry_run_names_weights_it_would_download_without_fetching_them(roots, tmp_path, capsys, monkeypatch):
    home = tmp_path / 'torch_home'
    monkeypatch.setenv('TORCH_HOME', str(home))
    fetched = []
    monkeypatch.setattr(torch.hub, 'download_url_to_file', lambda *a, **k: fetched.append(a))
    argv = argv_of(Train_clothing1M, roots)
    argv.remove('--random_init')
    code, out = run(Train_clothing1M, argv + ['--checkpoint_dir', str(tmp_path / 'ck'), '--dry_run'], capsys)
    assert code == 0, out.err
    assert '| note: ResNet-50 ImageNet weights are not cached: the run downloads them from ' \
           'https://download.pytorch.org/models/resnet50-0676ba61.pth into %s' % (home / 'hub' / 'checkpoints') in out.out
    assert not fetched and not home.exists()
    code, out = run(Train_clothing1M, argv + ['--checkpoint_dir', str(tmp_path / 'ck'), '--offline', '--dry_run'],
                    capsys)
    assert code == 2 and 'ResNet-50 ImageNet weights are not cached at' in out.err
