"""Users' real folders and habits: one test per cause of the 17 that made the scripts crash, corrupt data
or mislead (64 px images, 16-bit PNGs, a typo label, an unwritable TensorBoard folder, a signal while a
run starts, Notepad's list files, a long --id, a decompression bomb, torchvision models, --data_path .,
an outlier image, damaged logs, tiny sizes, a resume with nothing to train, a --T that cannot work, an
output folder inside the data, a closed stdout)."""
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dividemix_run import cli
import dataloader_folder as df
import plots
import results
import Train_cifar
import Train_folder
from conftest import ROOT, run_script
from test_train_cifar import FAST as CIFAR_FAST, snapshot
from tiny_data import class_images, make_image_folder

FAST = ['--num_epochs', '0', '--warm_up', '1', '--width', '4', '--batch_size', '8', '--num_workers', '0',
        '--device', 'cpu']


def run(main, argv, capsys):
    code, out = run_script(main, argv, capsys, (df.DatasetError,) if main is Train_folder.main else ())
    return code, out.out, out.err


@pytest.fixture(scope='module')
def folder_once(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('habits') / 'animals')
    make_image_folder(root, classes=('cat', 'dog'), per_class=8, n_test=2)
    return root


@pytest.fixture
def folder(folder_once, tmp_path):
    return shutil.copytree(folder_once, str(tmp_path / 'animals'))


@pytest.fixture(scope='module')
def finished_once(folder_once, tmp_path_factory):
    """A finished folder run (one warm-up epoch and one DivideMix epoch) that refused starts must leave alone."""
    ck = str(tmp_path_factory.mktemp('finished') / 'ck')
    cli.run_main(Train_folder.main, ['--data_path', folder_once, '--checkpoint_dir', ck] + FAST[:1] + ['1'] + FAST[2:])
    return ck


@pytest.fixture
def finished(finished_once, tmp_path):
    return shutil.copytree(finished_once, str(tmp_path / 'ck'))


# ---------------------------------------------------------------- 1. images of any side

def test_preresnet_trains_at_any_side_and_keeps_the_papers_pooling():
    """The fixed avg_pool2d(4) before a fixed-size Linear crashed for sides up to 24 px and from 57 px (every
    64x64 folder); now the whole last map is averaged. Where that map is 4x4 (25..32 px: CIFAR, and
    Fashion-MNIST's 28) it is the reference's avg_pool2d(4), bit for bit."""
    import torch.nn.functional as F
    from PreResNet import ResNet18
    torch.manual_seed(0)
    net = ResNet18(num_classes=3, width=4).train()
    for side in (1, 8, 16, 24, 28, 32, 48, 57, 64, 100):
        out = net(torch.randn(2, 3, side, side))
        assert out.shape == (2, 3)
        out.sum().backward()
    net.eval()
    for side in (28, 32):
        x = torch.randn(2, 3, side, side)
        features = net(x, lout=4)
        assert features.shape[-2:] == (4, 4)
        reference = net.linear(F.avg_pool2d(features, 4).view(2, -1))
        assert torch.equal(net(x), reference)


def test_a_64_pixel_folder_trains(tmp_path, capsys):
    root = str(tmp_path / 'tiny_imagenet')
    make_image_folder(root, classes=('a', 'b'), per_class=6, n_test=2, sizes=(64,))
    code, out, err = run(Train_folder.main, ['--data_path', root, '--checkpoint_dir', str(tmp_path / 'ck')] + FAST,
                         capsys)
    assert code == 0, err
    assert json.load(open(str(tmp_path / 'ck' / 'tiny_imagenet_settings.json')))['image_size'] == 64


# ---------------------------------------------------------------- 2. 16-bit images

def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    """Pillow's convert('L') clips 16-bit grey images at 255 (most pixels of a 16-bit PNG turn white); they
    are scaled: a 16-bit PNG made from an 8-bit image (v * 257) reads back as the 8-bit image, exactly."""
    rng = np.random.RandomState(0)
    originals = class_images(np.arange(4) % 2, rng, size=28, channels=1)[..., 0]
    paths = []
    for i, img in enumerate(originals):
        path = str(tmp_path / ('%d.png' % i))
        Image.fromarray(img.astype(np.uint16) * 257).save(path)
        assert Image.open(path).mode == 'I;16'
        paths.append(path)
    assert np.array_equal(df.load_images(paths, 28, 1)[..., 0], originals)
    assert np.array_equal(df.load_images(paths[:1], 28, 3)[0, ..., 1], originals[0])  # as RGB too
    assert df.survey(paths).grey
    # 32-bit integer and float images the same way (I taken as 0..65535, F in [0, 1] as 0..255)
    Image.fromarray((originals[0].astype(np.int32) * 257)).save(str(tmp_path / 'i.tif'))
    Image.fromarray(originals[0].astype(np.float32) / 255).save(str(tmp_path / 'f.tif'))
    for name in ('i.tif', 'f.tif'):
        assert np.array_equal(df.load_images([str(tmp_path / name)], 28, 1)[0, ..., 0], originals[0]), name


# ---------------------------------------------------------------- 3. a typo label

def lists(root, rows, classes=None):
    os.makedirs(os.path.join(root, 'images'), exist_ok=True)
    lines = []
    for i, label in enumerate(rows):
        Image.fromarray(class_images(np.array([label % 2]), np.random.RandomState(i))[0]).save(
            os.path.join(root, 'images', '%d.png' % i))
        lines.append('images/%d.png %d' % (i, label))
    with open(os.path.join(root, 'train.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    if classes is not None:
        with open(os.path.join(root, 'classes.txt'), 'w') as f:
            f.write('\n'.join(classes) + '\n')


def test_a_typo_label_in_a_list_file_is_refused_naming_its_line(tmp_path, capsys):
    """Without classes.txt the classes are 0..the largest label: a line '2.png 100000' made 100,001 classes
    (a 106 MB checkpoint, accuracy at chance), '300000000' a MemoryError. Each class needs a training image
    there; the line is named, and classes.txt is the way to declare classes without images."""
    root = str(tmp_path / 'data')
    lists(root, [0, 1, 0, 1, 100000, 0])
    with pytest.raises(df.DatasetError, match=r'train.txt line 5: label 100000, but 99998 of the labels 0..100000 '
                                              r'have no training image \(2, 3, 4, 5, 6, ...\)'):
        df.scan(root)
    lists(root, [0, 1, 0, 1, 300000000, 0])
    code, _, err = run(Train_folder.main, ['--data_path', root, '--checkpoint_dir', str(tmp_path / 'ck')] + FAST,
                       capsys)
    assert code == 2 and 'label 300000000' in err and 'classes.txt' in err and not os.path.exists(str(tmp_path / 'ck'))
    lists(root, [0, 1, 0, 1, 2, 0], classes=['a', 'b', 'c', 'never seen'])  # classes.txt: the rule's way out
    assert df.scan(root).classes == ['a', 'b', 'c', 'never seen']


# ---------------------------------------------------------------- 4. an unwritable --tensorboard

@pytest.mark.parametrize('where', ['/proc/tb', 'a file'])
def test_an_unwritable_tensorboard_folder_leaves_the_run_as_it_was(folder_once, finished, tmp_path, capsys, where):
    """--overwrite --tensorboard /proc/tb on a finished run emptied its _acc.txt before failing (the next
    --resume was then refused); a file given as the folder raised NotADirectoryError. Refused first now."""
    if where == 'a file':
        where = str(tmp_path / 'board.txt')
        open(where, 'w').close()
    before = snapshot(finished)
    code, _, err = run(Train_folder.main, ['--data_path', folder_once, '--checkpoint_dir', finished, '--overwrite',
                                           '--tensorboard', where] + FAST, capsys)
    assert code == 2 and 'cannot write to the --tensorboard folder %s' % where in err
    assert snapshot(finished) == before


# ---------------------------------------------------------------- 5. a signal while a run starts

@pytest.mark.parametrize('signum, status', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_a_resume_starts_says_what_is_on_disk(folder_once, finished, capsys, monkeypatch, signum,
                                                             status):
    """Ctrl-C while --resume loaded the checkpoint said 'nothing to resume' with the checkpoint of epoch 1
    there; SIGTERM then exited without a word. Both name the checkpoint now, unchanged."""
    from dividemix_run import checkpoints
    from dividemix_run import resume
    real = checkpoints.load_checkpoint

    def load_and_signal(path):
        os.kill(os.getpid(), signum)  # arrives while the resume starts up
        return real(path)
    monkeypatch.setattr(resume, 'load_checkpoint', load_and_signal)
    before = snapshot(finished)
    code, _, err = run(Train_folder.main, ['--data_path', folder_once, '--checkpoint_dir', finished, '--resume']
                       + FAST[:1] + ['2'] + FAST[2:], capsys)
    assert code == status
    assert 'interrupted by %s' % signal.Signals(signum).name in err
    assert 'The checkpoint %s is as it was: run the same command again' % os.path.join(finished, 'animals_checkpoint'
                                                                                                 '.pth.tar') in err
    assert snapshot(finished) == before


def test_a_signal_while_the_data_loads_says_nothing_was_written(folder_once, tmp_path, capsys, monkeypatch):
    real = df.scan

    def scan_and_signal(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)
    monkeypatch.setattr(df, 'scan', scan_and_signal)
    code, _, err = run(Train_folder.main, ['--data_path', folder_once, '--checkpoint_dir', str(tmp_path / 'ck')]
                       + FAST, capsys)
    assert code == 143 and 'It had not started training: nothing of it was written or changed' in err
    assert not os.path.exists(str(tmp_path / 'ck'))


# ---------------------------------------------------------------- 6. list files that are not UTF-8

def test_list_files_in_other_encodings_are_named(tmp_path):
    """A UTF-16 train.txt (Notepad's "Unicode") or a Latin-1 classes.txt raised UnicodeDecodeError; a UTF-8
    byte-order mark became part of the first path ('images are missing, e.g. .../\\ufeff0.png')."""
    root = str(tmp_path / 'data')
    lists(root, [0, 1, 0, 1], classes=['a', 'b'])
    text = open(os.path.join(root, 'train.txt')).read()
    open(os.path.join(root, 'train.txt'), 'w', encoding='utf-8-sig').write(text)  # a byte-order mark: read
    assert df.scan(root).splits['train'][0][0] == os.path.join(root, 'images', '0.png')
    open(os.path.join(root, 'train.txt'), 'w', encoding='utf-16').write(text)
    with pytest.raises(df.DatasetError, match=r'train.txt is UTF-16 text .*not UTF-8: save it as UTF-8'):
        df.scan(root)
    open(os.path.join(root, 'train.txt'), 'w').write(text)
    open(os.path.join(root, 'classes.txt'), 'w', encoding='latin-1').write('caf\xe9\nb\n')
    with pytest.raises(df.DatasetError, match=r'classes.txt is not UTF-8 text \(byte 0xe9 on line 1\); it is '
                                              r'probably Latin-1'):
        df.scan(root)


# ---------------------------------------------------------------- 7. a long --id

@pytest.mark.parametrize('length', [236, 300])
def test_a_long_id_is_refused_before_anything_is_written(folder_once, tmp_path, capsys, length):
    """236 characters trained epoch 0 and then failed to save its checkpoint's temporary file (every retry
    lost the epoch); 300 failed at the lock file with a traceback."""
    ck = str(tmp_path / 'ck')
    code, _, err = run(Train_folder.main, ['--data_path', folder_once, '--checkpoint_dir', ck, '--id', 'x' * length]
                       + FAST, capsys)
    assert code == 2 and 'pass an --id of at most 222 characters' in err
    assert os.listdir(ck) == []


# ---------------------------------------------------------------- 8. a decompression bomb

def test_a_decompression_bomb_is_refused_naming_the_file(folder, tmp_path, capsys, monkeypatch):
    """An image over Pillow's pixel limit raised DecompressionBombError tracebacks (the folder survey, the
    Clothing1M and WebVision loaders mid-run); it is named, with the flag that raises the limit. Here the
    limit is lowered to the test's small images."""
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)  # refused above 200 pixels: every test image
    code, _, err = run(Train_folder.main, ['--data_path', folder, '--checkpoint_dir', str(tmp_path / 'ck')] + FAST,
                       capsys)
    assert code == 2 and 'is too large to decode safely' in err and '--max_image_pixels' in err
    assert folder in err
    code, _, err = run(Train_folder.main, ['--data_path', folder, '--checkpoint_dir', str(tmp_path / 'ck'),
                                           '--max_image_pixels', '0'] + FAST, capsys)
    assert code == 0, err
    from conftest import make_clothing1m, make_webvision
    import dataloader_clothing1M as cl
    import dataloader_webvision as wv
    make_clothing1m(str(tmp_path / 'c1m'), per_class=1)
    make_webvision(str(tmp_path / 'web'), num_class=2, per_class=1)
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)
    for loader in (cl.clothing_dataloader(str(tmp_path / 'c1m'), 2, 1, 0).run('val'),
                   wv.webvision_dataloader(2, 2, 0, str(tmp_path / 'web'), None).run('test')):
        with pytest.raises((cl.DatasetError, wv.DatasetError), match='too large to decode safely.*--max_image_pixels'):
            loader.dataset[0]


# ---------------------------------------------------------------- 9. torchvision models

def test_every_accepted_arch_trains_or_is_refused_up_front(folder_once, tmp_path, capsys):
    """googlenet and inception_v3 returned tuples in training mode; vit_b_16 at 64 px failed an assertion;
    --arch resnet5000 raised ValueError after the settings and empty logs were written."""
    from dividemix_run.pretrained import classifier
    for arch, side in (('googlenet', 64), ('inception_v3', 96)):
        out = classifier(arch, 3).train()(torch.randn(2, 3, side, side))
        assert isinstance(out, torch.Tensor) and out.shape == (2, 3)
    large = ['--data_path', folder_once, '--pipeline', 'reference'] + FAST
    for extra, message in ((['--arch', 'vit_b_16', '--image_size', '64'], 'cannot train on 64-px images'),
                           (['--arch', 'resnet5000', '--random_init'], 'is not a torchvision classification model. '
                                                                       'Families that train here: alexnet, convnext'),
                           (['--arch', 'squeezenet1_0', '--random_init'], 'no Linear classifier layer')):
        ck = str(tmp_path / ('ck_' + extra[1]))
        code, _, err = run(Train_folder.main, large + extra + ['--checkpoint_dir', ck], capsys)
        assert code == 2 and message in err, err
        assert not os.path.exists(ck)


# ---------------------------------------------------------------- 10. --data_path .

def test_data_path_dot_names_the_run_after_the_folder(folder_once, monkeypatch):
    monkeypatch.chdir(folder_once)
    args = Train_folder.build_parser().parse_args(['--data_path', '.'] + FAST)
    s, _ = Train_folder.resolve_settings(args, df.scan('.'))
    assert s.id == 'animals'


# ---------------------------------------------------------------- 11. an outlier image

def test_an_outlier_image_is_named_and_the_size_follows_the_others(tmp_path, capsys):
    """One 8000 px image among 28 px ones set the size to 8000 (the device pipeline then asked for 7 GiB);
    the outlier is named, the size follows the other images, and a size that cannot fit is refused with
    its figure."""
    root = str(tmp_path / 'mnist_like')
    make_image_folder(root, classes=('a', 'b'), per_class=6, n_test=2, sizes=(28,))
    big = os.path.join(root, 'train', 'a', 'huge.png')
    Image.fromarray(np.zeros((1000, 900, 3), np.uint8)).save(big)
    args = Train_folder.build_parser().parse_args(['--data_path', root] + FAST)
    s, notes = Train_folder.resolve_settings(args, df.scan(root))
    assert s.image_size == 28 and s.pipeline == 'device'
    assert any('1 of the 13 images surveyed is far larger than the rest' in n and 'huge.png (900x1000)' in n
               for n in notes), notes
    code, _, err = run(Train_folder.main, ['--data_path', root, '--checkpoint_dir', str(tmp_path / 'ck'),
                                           '--pipeline', 'device', '--image_size', '200000'] + FAST, capsys)
    assert code == 2 and 'the device pipeline holds every image as uint8 at --image_size 200000' in err


# ---------------------------------------------------------------- 12. results.py and plots.py on real logs

def test_results_and_plots_name_damaged_files_and_go_on(finished, tmp_path, capsys):
    """A half-written JSON line, a stray non-UTF-8 .txt, a log appended to twice, a folder run without a
    test split, an unwritable --out: each used to be a traceback (or a silent double count)."""
    logs = tmp_path / 'logs'
    logs.mkdir()
    (logs / 'cifar10_0.5_sym_acc.txt').write_text('Epoch:0   Accuracy:50.00\nEpoch:1   Accuracy:60.00\n'
                                                  'Epoch:0   Accuracy:50.00\nEpoch:1   Accuracy:70.00\n')
    (logs / 'cifar10_0.5_sym_log.jsonl').write_text('{"epoch": 1, "auc1": 0.9, "auc2": 0.8}\n{"epoch": 2, "au')
    (logs / 'notes.txt').write_bytes(b'caf\xe9 au lait\n')
    assert results.main([str(logs)]) == 0
    out, err = capsys.readouterr()
    assert '| 2 | 70.00 | 70.00 | 60.00 | 0.850 |' in out  # epochs 0, 1 once each (the last lines), AUC of epoch 1
    assert 'cifar10_0.5_sym_acc.txt: epochs 0, 1 appear more than once' in err
    assert 'cifar10_0.5_sym_log.jsonl line 2 is not a JSON record' in err and 'notes.txt: not UTF-8' in err
    assert results.main([str(logs), '--out', '/proc/results.md']) == 2
    assert 'cannot write --out /proc/results.md' in capsys.readouterr().err
    # a folder run without a test split: no accuracy to plot; its division has no AUC (no clean labels)
    stem = os.path.join(finished, 'animals')
    os.remove(stem + '_acc.txt')
    with open(stem + '_log.jsonl') as f:
        records = [json.loads(l) for l in f]
    with open(stem + '_log.jsonl', 'w') as f:
        f.write(''.join(json.dumps({k: v for k, v in r.items() if k != 'test_acc'}) + '\n' for r in records))
    with pytest.raises(SystemExit) as e:
        plots.main(['acc', stem, '--out', str(tmp_path / 'acc.png')])
    assert e.value.code == 2 and 'none of the runs has a test accuracy' in capsys.readouterr().err
    plots.main(['division', stem, '--out', str(tmp_path / 'division.png')])
    assert os.path.getsize(str(tmp_path / 'division.png')) > 1000
    with pytest.raises(SystemExit) as e:
        plots.main(['division', stem, '--out', '/proc/division.png'])
    assert e.value.code == 2 and 'cannot write --out /proc/division.png' in capsys.readouterr().err


# ---------------------------------------------------------------- 13. tiny sizes

def test_tiny_sizes_train_or_are_refused(tmp_path, capsys):
    """--arch cnn --image_size 3 crashed in its max-pool; resnet18 --image_size 32 (the large-image path)
    crashed when a batch of one image reached BatchNorm on a 1x1 map. The first is refused up front; the
    second skips training batches of one image (here the warm-up's last: 9 images, batches of 8)."""
    root = str(tmp_path / 'data')
    make_image_folder(root, classes=('a', 'b', 'c'), per_class=3, n_test=1, sizes=(80,))
    code, _, err = run(Train_folder.main, ['--data_path', root, '--checkpoint_dir', str(tmp_path / 'ck1'),
                                           '--pipeline', 'device', '--arch', 'cnn', '--image_size', '3'] + FAST,
                       capsys)
    assert code == 2 and '--arch cnn needs images of at least 4 px' in err
    ck = str(tmp_path / 'ck2')
    code, _, err = run(Train_folder.main, ['--data_path', root, '--checkpoint_dir', ck, '--arch', 'resnet18',
                                           '--random_init', '--image_size', '32', '--resize_size', '36', '--num_epochs',
                                           '0', '--batch_size', '4', '--num_workers', '0', '--device', 'cpu'], capsys)
    assert code == 0, err
    assert json.load(open(os.path.join(ck, 'data_settings.json')))['min_train_rows'] == 2
    record = json.loads(open(os.path.join(ck, 'data_log.jsonl')).readline())
    assert record['epoch'] == 0 and record['phase'] == 'warmup'


# ---------------------------------------------------------------- 14. a resume with nothing to train

def test_a_resume_with_nothing_to_train_is_refused(folder_once, finished, capsys):
    """--resume --num_epochs 0 on a checkpoint after epoch 1 exited 0, trained nothing and rewrote the summary,
    the nets and the label report ('nets after epoch 0')."""
    before = snapshot(finished)
    code, _, err = run(Train_folder.main, ['--data_path', folder_once, '--checkpoint_dir', finished, '--resume']
                       + FAST, capsys)
    assert code == 2 and 'holds the run after epoch 1, and --num_epochs 0 asks for epochs 0..0' in err
    assert 'Pass --num_epochs 2 or more' in err and snapshot(finished) == before


# ---------------------------------------------------------------- 15. a --T that cannot work

def test_a_temperature_that_underflows_is_refused_naming_T(cifar10_module_dir, tmp_path, capsys):
    """--T 1e-30 made every loss 0/0 and was reported as divergence, with advice to lower --lr."""
    ck = str(tmp_path / 'ck')
    code, _, err = run(Train_cifar.main, ['--data_path', cifar10_module_dir, '--T', '1e-30', '--checkpoint_dir', ck]
                       + CIFAR_FAST, capsys)
    assert code == 2 and '--T 1e-30 is too small for 10 classes' in err and 'Use --T 0.0264 or more' in err
    assert 'lr' not in err.replace("whatever the learning rate", "") and not os.path.exists(ck)
    with pytest.raises(cli.UsageError):
        cli.check_T(0.02, 10)
    cli.check_T(0.03, 10)  # above the bound: accepted


# ---------------------------------------------------------------- 16. an output folder in the data

def test_a_checkpoint_dir_inside_train_is_no_class(folder, capsys):
    """--checkpoint_dir ROOT/train/runs: the next start read runs/ as a class folder without images."""
    ck = os.path.join(folder, 'train', 'runs')
    assert run(Train_folder.main, ['--data_path', folder, '--checkpoint_dir', ck] + FAST, capsys)[0] == 0
    code, _, err = run(Train_folder.main, ['--data_path', folder, '--checkpoint_dir', ck, '--resume'] + FAST[:1]
                       + ['1'] + FAST[2:], capsys)
    assert code == 0, err
    assert json.load(open(os.path.join(ck, 'animals_settings.json')))['classes'] == ['cat', 'dog']


# ---------------------------------------------------------------- 17. closed stdout, broken pipes

class ReaderGone(object):
    """A stdout whose reader went away after the first line (`| head -1`)."""

    def __init__(self):
        self.lines = 0

    def write(self, text):
        if self.lines:
            raise BrokenPipeError(32, 'Broken pipe')
        self.lines += text.count('\n')
        return len(text)

    def flush(self):
        if self.lines:
            raise BrokenPipeError(32, 'Broken pipe')


def test_a_broken_pipe_and_a_closed_stdout_are_quiet(folder_once, tmp_path, monkeypatch):
    """`| head -1` raised BrokenPipeError during epoch 0; `>&-` an AttributeError in print_settings (a lock
    and empty logs left behind). The run goes on and finishes, its files whole."""
    monkeypatch.setattr(sys, 'stdout', ReaderGone())
    cli.run_main(Train_folder.main, ['--data_path', folder_once, '--checkpoint_dir', str(tmp_path / 'pipe')] + FAST)
    assert os.path.exists(str(tmp_path / 'pipe' / 'animals_summary.json'))
    ck = str(tmp_path / 'closed')
    done = subprocess.run('exec %s %s --data_path %s --checkpoint_dir %s %s >&-' % (
        sys.executable, os.path.join(ROOT, 'Train_folder.py'), folder_once, ck, ' '.join(FAST)), shell=True,
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'Traceback' not in done.stderr
    assert sorted(os.listdir(ck)) == sorted(os.listdir(str(tmp_path / 'pipe')))
