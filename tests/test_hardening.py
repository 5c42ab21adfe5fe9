"""What a run guarantees when things go wrong: one run per name, nothing non-finite saved, bad input and
damaged files refused before anything changes, full disks and signals end cleanly, with the exit
statuses docs/resume.md, "What is guaranteed", lists. One test per defect found by breaking the scripts."""
import errno
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dividemix_run import checkpoints
from dividemix_run import cli
import dataloader_clothing1M as cl
import dataloader_webvision as wv
import dividemix
import Train_cifar
import Train_clothing1M
import Train_webvision
from conftest import ROOT, make_clothing1m, make_webvision, run_script
from test_large_scale import CLOTHING_FAST
from test_train_cifar import FAST, copy_data, lines, snapshot

STEM = 'cifar10_0.5_sym'


def run(argv, capsys, main=Train_cifar.main, errors=None):
    errors = errors if errors is not None else (dataloader_errors(main),)
    code, out = run_script(main, argv, capsys, errors)
    return code, out.err


def dataloader_errors(main):
    import dataloader_cifar
    return {Train_cifar.main: dataloader_cifar.DatasetError, Train_clothing1M.main: cl.DatasetError,
            Train_webvision.main: wv.DatasetError}[main]


@pytest.fixture(scope='module')
def data(cifar10_module_dir):
    return cifar10_module_dir


@pytest.fixture(scope='module')
def finished_once(data, tmp_path_factory):
    """A finished run (epochs 0 and 1) whose files a refused start must leave as they are."""
    ck = str(tmp_path_factory.mktemp('finished') / 'ck')
    cli.run_main(Train_cifar.main, ['--data_path', data, '--num_epochs', '1', '--warm_up', '1', '--checkpoint_dir',
                                    ck] + FAST)
    return ck


@pytest.fixture
def finished(finished_once, tmp_path):
    """A copy of finished_once, for a test that changes it."""
    import shutil
    return shutil.copytree(finished_once, str(tmp_path / 'ck'))


# ---------------------------------------------------------------- 1. one run per name

LOCKER = '''
import sys, time
sys.path.insert(0, %r)
from dividemix_run.lock import RunLock
lock = RunLock(%r).acquire()
print('locked', flush=True)
time.sleep(60)
'''


def test_second_run_with_the_same_name_is_refused(data, finished, capsys, tmp_path):
    holder = subprocess.Popen([sys.executable, '-c', LOCKER % (ROOT, os.path.join(finished, STEM + '.lock'))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        before = snapshot(finished)
        code, err = run(['--data_path', data, '--num_epochs', '2', '--warm_up', '1', '--checkpoint_dir', finished,
                         '--resume'] + FAST, capsys)
        assert code == 2
        assert 'another run with this name is running (pid %d on host %s' % (holder.pid, socket.gethostname()) in err
        assert snapshot(finished) == before  # nothing truncated, nothing written
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is stale, and the run goes ahead
    assert os.path.exists(os.path.join(finished, STEM + '.lock'))
    code, err = run(['--data_path', data, '--num_epochs', '2', '--warm_up', '1', '--checkpoint_dir', finished,
                     '--resume'] + FAST, capsys)
    assert code == 0, err
    assert not os.path.exists(os.path.join(finished, STEM + '.lock'))  # released at the end


def test_lock_released_on_any_exit(data, tmp_path, capsys, monkeypatch):
    ck = str(tmp_path / 'ck')
    real = dividemix.uniform_prior_penalty
    monkeypatch.setattr(dividemix, 'uniform_prior_penalty', lambda logits, c: real(logits, c) * float('nan'))
    code, _ = run(['--data_path', data, '--num_epochs', '1', '--warm_up', '1', '--checkpoint_dir', ck] + FAST, capsys)
    assert code == 3 and not os.path.exists(os.path.join(ck, STEM + '.lock'))
    monkeypatch.setattr(dividemix, 'uniform_prior_penalty', real)
    code, err = run(['--data_path', data, '--num_epochs', '1', '--warm_up', '1', '--checkpoint_dir', ck,
                     '--resume'] + FAST, capsys)  # the same process, the same name: not locked out
    assert code == 0, err


# ---------------------------------------------------------------- 2. divergence, wherever it shows

def test_divergence_at_test_time_writes_no_checkpoint(data, tmp_path, capsys):
    """--lr 1e8: the losses stay finite for an epoch while the nets' outputs do not. Before, the
    epoch-0 checkpoint was written and epoch 1 crashed in the GMM (exit 1)."""
    ck = str(tmp_path / 'ck')
    code, err = run(['--data_path', data, '--num_epochs', '2', '--warm_up', '1', '--batch_size', '100', '--lr', '1e8',
                     '--width', '4', '--num_workers', '0', '--checkpoint_dir', ck], capsys)
    assert code == 3
    assert 'non-finite values (NaN or inf) in the outputs of both nets on a test split at epoch 0' in err
    assert 'No checkpoint of this run was written before it' in err and '--resume' not in err
    assert not os.path.exists(os.path.join(ck, STEM + '_checkpoint.pth.tar'))


def test_non_finite_weights_are_never_checkpointed(data, finished, capsys, monkeypatch):
    ckpt_file = os.path.join(finished, STEM + '_checkpoint.pth.tar')
    before = open(ckpt_file, 'rb').read()
    real = dividemix.co_train

    def co_train(nets, optimizers, *a, **k):  # a weight that overflows in the epoch's last step: no loss sees it
        out = real(nets, optimizers, *a, **k)
        optimizers[0].param_groups[0]['params'][0].data[0].fill_(float('inf'))
        return out
    monkeypatch.setattr(dividemix, 'co_train', co_train)
    code, err = run(['--data_path', data, '--num_epochs', '2', '--warm_up', '1', '--checkpoint_dir', finished,
                     '--resume'] + FAST, capsys)
    assert code == 3
    assert 'non-finite values (NaN or inf) in the weights of net1 at epoch 2' in err
    assert 'The checkpoint after epoch 1 is kept' in err and '--resume' in err
    assert open(ckpt_file, 'rb').read() == before


def test_non_finite_per_sample_losses_stop_before_the_gmm(data, finished, capsys, monkeypatch):
    real = dividemix.per_sample_losses
    monkeypatch.setattr(dividemix, 'per_sample_losses', lambda *a, **k: real(*a, **k) * float('nan'))
    code, err = run(['--data_path', data, '--num_epochs', '2', '--warm_up', '1', '--checkpoint_dir', finished,
                     '--resume'] + FAST, capsys)
    assert code == 3  # not scikit-learn's "Input X contains NaN" (exit 1)
    assert 'non-finite values (NaN or inf) in the per-sample losses of net1 (co-divide) at epoch 2' in err


# ---------------------------------------------------------------- 3, 8. flags

BAD_FLAGS = [
    (['--p_threshold', 'nan'], '--p_threshold nan is not a finite number'),
    (['--r', 'nan'], '--r nan is not a finite number'),
    (['--lr', 'nan'], '--lr nan is not a finite number'),
    (['--lr', 'inf'], '--lr inf is not a finite number'),
    (['--T', 'nan'], '--T nan is not a finite number'),
    (['--alpha', 'inf'], '--alpha inf is not a finite number'),
    (['--lambda_u', 'inf'], '--lambda_u inf is not a finite number'),
    (['--seed', '-1'], '--seed -1 is outside [0, 4294967295]'),
    (['--seed', '4294967296'], '--seed 4294967296 is outside [0, 4294967295]'),
    (['--eval_batch_size', '-5'], '--eval_batch_size -5 is outside [1, inf)'),
    (['--id', 'a/b'], "--id 'a/b' would name a file outside --checkpoint_dir (it contains '/')"),
]


@pytest.mark.parametrize('flags, message', BAD_FLAGS)
def test_bad_flags_refused_before_anything_is_truncated(data, finished_once, capsys, flags, message):
    before = snapshot(finished_once)
    code, err = run(['--data_path', data, '--num_epochs', '1', '--checkpoint_dir', finished_once, '--overwrite']
                    + FAST + flags, capsys)
    assert code == 2 and message in err, err
    assert snapshot(finished_once) == before  # --overwrite did not get to truncate the old run


@pytest.mark.parametrize('main, flags', [(Train_clothing1M.main, ['--lr', 'nan']),
                                         (Train_webvision.main, ['--p_threshold', 'inf'])])
def test_other_scripts_refuse_non_finite_flags(tmp_path, capsys, main, flags):
    code, err = run(['--data_path', str(tmp_path), '--checkpoint_dir', str(tmp_path / 'ck')] + flags, capsys, main)
    assert code == 2 and 'is not a finite number' in err


# ---------------------------------------------------------------- 4, 6. Clothing1M and WebVision data

@pytest.fixture
def clothing(tmp_path):
    root = str(tmp_path / 'Clothing1M')
    make_clothing1m(root)
    return root


def clothing_run(root, tmp_path, capsys, extra=()):
    return run(['--data_path', root, '--random_init', '--checkpoint_dir', str(tmp_path / 'ck')] + CLOTHING_FAST
               + list(extra), capsys, Train_clothing1M.main)


def test_missing_clothing_images_are_found_before_training(clothing, tmp_path, capsys, tiny_models):
    os.remove(os.path.join(clothing, 'test', '2.jpg'))  # found after the whole training, before
    code, err = clothing_run(clothing, tmp_path, capsys)
    assert code == 2
    assert re.search(r'1 of the 6 images listed in .*clean_test_key_list.txt are missing, e\.g\. .*test/2\.jpg', err)
    assert not os.path.exists(str(tmp_path / 'ck' / 'clothing1m.txt'))  # nothing trained, no log
    for i in range(2):
        os.remove(os.path.join(clothing, '5', '05', '5_%d.jpg' % i))
    code, err = clothing_run(clothing, tmp_path, capsys)
    assert code == 2 and '2 of the 42 images listed in' in err and 'noisy_train_key_list.txt' in err


@pytest.mark.parametrize('list_name, label', [('noisy_label_kv.txt', 14), ('noisy_label_kv.txt', 99),
                                              ('noisy_label_kv.txt', -1), ('clean_label_kv.txt', 20)])
def test_clothing_labels_out_of_range_are_refused(clothing, tmp_path, capsys, tiny_models, list_name, label):
    path = os.path.join(clothing, list_name)
    rows = open(path).read().splitlines()
    key = rows[3].split()[0]
    rows[3] = '%s %d' % (key, label)
    open(path, 'w').write('\n'.join(rows) + '\n')
    code, err = clothing_run(clothing, tmp_path, capsys)
    assert code == 2
    assert 'gives %s the label %d, outside 0..13 (Clothing1M has 14 classes)' % (key, label) in err


@pytest.mark.parametrize('list_name', ['noisy_train_key_list.txt', 'clean_val_key_list.txt'])
def test_empty_clothing_lists_are_refused(clothing, tmp_path, capsys, tiny_models, list_name):
    open(os.path.join(clothing, list_name), 'w').close()
    code, err = clothing_run(clothing, tmp_path, capsys)
    assert code == 2 and '%s lists no image' % list_name in err


def test_undecodable_image_mid_run_stops_with_its_name_after_a_checkpoint(clothing, tmp_path, capsys, tiny_models):
    assert clothing_run(clothing, tmp_path, capsys, ['--num_epochs', '0'])[0] == 0
    broken = os.path.join(clothing, 'val', '3.jpg')
    with open(broken, 'wb') as f:
        f.write(b'not a jpeg')  # listed and present: only reading it finds the damage
    code, err = clothing_run(clothing, tmp_path, capsys, ['--num_epochs', '1', '--resume'])
    assert code == 2
    assert 'cannot read image %s, listed in clean_val_key_list.txt' % broken in err
    assert 'The checkpoint after epoch 0 is kept' in err and 'continue with --resume' in err
    ckpt = torch.load(str(tmp_path / 'ck' / 'clothing1m_checkpoint.pth.tar'), weights_only=True)
    assert ckpt['epoch'] == 0


def test_webvision_missing_images_and_empty_test_sets(tmp_path, capsys, tiny_models):
    root = str(tmp_path / 'web') + '/'
    make_webvision(root, num_class=2, per_class=2, n_val=1, n_imagenet=1)
    args = ['--data_path', root, '--num_class', '2', '--batch_size', '2', '--num_workers', '0', '--checkpoint_dir',
            str(tmp_path / 'ck')]
    os.remove(os.path.join(root, 'val_images_256', 'val000000_1.jpg'))
    code, err = run(args, capsys, Train_webvision.main)
    assert code == 2 and '1 of the 2 images listed in' in err and 'val_filelist.txt are missing' in err
    open(os.path.join(root, 'info', 'val_filelist.txt'), 'w').write('val000000_0.jpg 7\n')  # no class < 2
    code, err = run(args, capsys, Train_webvision.main)
    assert code == 2 and 'holds no image of classes 0..1' in err
    open(os.path.join(root, 'info', 'train_filelist_google.txt'), 'a').write('google/x.jpg -3\n')
    code, err = run(args, capsys, Train_webvision.main)
    assert code == 2 and 'label -3 is negative' in err


# ---------------------------------------------------------------- 5. checkpoint integrity

def test_damaged_checkpoint_is_refused(data, finished, capsys):
    path = os.path.join(finished, STEM + '_checkpoint.pth.tar')
    import zipfile
    with zipfile.ZipFile(path) as z:
        record = max(z.infolist(), key=lambda i: i.file_size)  # a tensor's bytes
    raw = bytearray(open(path, 'rb').read())
    name_len, extra_len = int.from_bytes(raw[record.header_offset + 26:record.header_offset + 28], 'little'), \
        int.from_bytes(raw[record.header_offset + 28:record.header_offset + 30], 'little')  # the local header's
    start = record.header_offset + 30 + name_len + extra_len
    raw[start + record.file_size // 2:start + record.file_size // 2 + 7] = b'garbage'  # torch.load would not notice
    open(path, 'wb').write(bytes(raw))
    code, err = run(['--data_path', data, '--num_epochs', '2', '--checkpoint_dir', finished, '--resume'] + FAST,
                    capsys)
    assert code == 2 and 'is damaged (its record' in err and 'fails its CRC-32 check' in err
    open(path, 'wb').close()  # 0 bytes: the error handler itself crashed on it
    code, err = run(['--data_path', data, '--num_epochs', '2', '--checkpoint_dir', finished, '--resume'] + FAST,
                    capsys)
    assert code == 2 and 'is damaged (0 bytes, not a checkpoint archive' in err


def test_weights_file_is_not_a_checkpoint(data, finished, capsys):
    net_file = os.path.join(finished, STEM + '_net1.pth.tar')
    code, err = run(['--data_path', data, '--num_epochs', '2', '--checkpoint_dir', finished, '--resume', net_file]
                    + FAST, capsys)
    assert code == 2
    assert 'is not a run checkpoint: it holds network weights (a state dict)' in err and '_checkpoint.pth.tar' in err


# ---------------------------------------------------------------- 7, 10. saving: full disk, leftovers

# what torch 2.14 raised when a tmpfs of 400 kB filled up (and two other forms of the same failure)
DISK_FULL = [RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 314816 vs 314712'),
             RuntimeError('[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file '
                          'data/3: file write failed'), OSError(errno.ENOSPC, 'No space left on device')]


@pytest.mark.parametrize('failure', DISK_FULL, ids=['torch_pos', 'torch_write', 'os'])
def test_full_disk_keeps_the_previous_checkpoint(data, finished, capsys, monkeypatch, failure):
    ckpt_file = os.path.join(finished, STEM + '_checkpoint.pth.tar')
    before = open(ckpt_file, 'rb').read()
    real_save = torch.save

    def save(obj, f, *a, **k):  # writes part of the file, then the disk is full
        if isinstance(obj, dict) and 'settings' in obj:
            f.write(b'x' * 1000)
            raise failure
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(checkpoints.torch, 'save', save)
    code, err = run(['--data_path', data, '--num_epochs', '2', '--warm_up', '1', '--checkpoint_dir', finished,
                     '--resume'] + FAST, capsys)
    assert code == 2
    assert re.search(r'cannot write .*_checkpoint\.pth\.tar \(.*\): a save needs about [\d.]+ MB free in', err)
    assert 'The checkpoint after epoch 1 is kept' in err and 'then continue with --resume' in err
    assert open(ckpt_file, 'rb').read() == before
    assert not [n for n in os.listdir(finished) if n.endswith('.tmp')]


def test_leftovers_of_killed_saves_are_removed_at_the_next_start(data, finished, capsys):
    mine = os.path.join(finished, '.%s_checkpoint.pth.tar.k1ll3d_x.tmp' % STEM)
    other = os.path.join(finished, '.%s_other_checkpoint.pth.tar.k1ll3d_x.tmp' % STEM)  # another run's
    for path in (mine, other):
        open(path, 'wb').write(b'\0' * 4096)
    assert run(['--data_path', data, '--num_epochs', '2', '--warm_up', '1', '--checkpoint_dir', finished,
                '--resume'] + FAST, capsys)[0] == 0
    assert not os.path.exists(mine) and os.path.exists(other)


# ---------------------------------------------------------------- 9. SIGTERM, SIGINT

@pytest.mark.parametrize('signum, status', [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_keep_the_last_checkpoint_and_say_how_to_resume(data, tmp_path, signum, status):
    ck = str(tmp_path / 'ck')
    cmd = [sys.executable, os.path.join(ROOT, 'Train_cifar.py'), '--data_path', data, '--checkpoint_dir', ck,
           '--num_epochs', '30', '--warm_up', '1'] + FAST
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    acc = os.path.join(ck, STEM + '_acc.txt')
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (os.path.exists(acc) and len(lines(acc)) >= 2):
        time.sleep(0.02)
    proc.send_signal(signum)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == status, err
    assert 'error: interrupted by %s during epoch' % signal.Signals(signum).name in err
    assert 'continue with the same command and --resume' in err and 'Traceback' not in err
    saved = torch.load(os.path.join(ck, STEM + '_checkpoint.pth.tar'), weights_only=True)['epoch']
    assert len(lines(acc)) >= saved + 1 and 'The checkpoint after epoch %d is kept' % saved in err
    assert not os.path.exists(os.path.join(ck, STEM + '.lock'))


def test_signal_during_a_save_waits_for_it(data, tmp_path, capsys, monkeypatch):
    """SIGINT while the checkpoint of epoch 0 is being written: the save completes, then the run stops,
    and the message names the epoch the file holds (it once could name the epoch before)."""
    from dividemix_run import run as run_module
    real_save = run_module.atomic_save

    def save_with_a_signal(obj, path):
        os.kill(os.getpid(), signal.SIGINT)  # arrives inside the save
        return real_save(obj, path)
    monkeypatch.setattr(run_module, 'atomic_save', save_with_a_signal)
    ck = str(tmp_path / 'ck')
    code, out = run(['--data_path', data, '--checkpoint_dir', ck, '--num_epochs', '3', '--warm_up', '1'] + FAST, capsys)
    assert code == 130
    assert torch.load(os.path.join(ck, STEM + '_checkpoint.pth.tar'), weights_only=True)['epoch'] == 0
    assert 'error: interrupted by SIGINT during epoch 0. The checkpoint after epoch 0 is kept' in out


def test_interrupt_before_any_checkpoint_says_nothing_to_resume(data, tmp_path, capsys, monkeypatch):
    def interrupt(*a, **k):
        raise cli.Interrupted(signal.SIGTERM)
    monkeypatch.setattr(dividemix, 'warmup_pass', interrupt)
    code, err = run(['--data_path', data, '--num_epochs', '1', '--checkpoint_dir', str(tmp_path / 'ck')] + FAST,
                    capsys)
    assert code == 143
    assert 'interrupted by SIGTERM during epoch 0. No epoch of this run had finished: nothing to resume' in err


# ---------------------------------------------------------------- 11, 12. CIFAR data and noise files

def test_noise_file_of_another_noise_rate_is_refused(data, tmp_path, capsys):
    other = copy_data(data, str(tmp_path / 'data'))
    ck = str(tmp_path / 'ck')
    assert run(['--data_path', other, '--r', '0.2', '--num_epochs', '0', '--checkpoint_dir', ck] + FAST,
               capsys)[0] == 0
    os.replace(os.path.join(other, '0.2_sym.json'), os.path.join(other, '0.5_sym.json'))  # named 0.5, made for 0.2
    code, err = run(['--data_path', other, '--num_epochs', '0', '--checkpoint_dir', ck, '--overwrite'] + FAST, capsys)
    assert code == 2
    assert re.search(r'changes 1\d\.\d\d% of the training labels, but --noise_mode sym --r 0.5 changes 45\.00% '
                     r'\+- 1\.50%: it was made for another noise setting', err), err
    code, err = run(['--data_path', other, '--num_epochs', '0', '--checkpoint_dir', ck, '--overwrite',
                     '--accept_noise_file'] + FAST, capsys)
    assert code == 0, err


def test_noise_files_of_every_synthetic_mode_pass_their_own_check(data, tmp_path, capsys):
    """The check must never refuse the noise this code draws (all modes, a range of rates)."""
    import dataloader_cifar as dl
    raw = dl.load_dataset('cifar10', data)
    for mode in ('sym', 'asym', 'pairflip', 'asym_blocks', 'instance'):
        for r in (0.0, 0.2, 0.5, 0.8):
            noisy = np.asarray(dl.make_noise_labels('cifar10', raw, r, mode, 10, rng=__import__('random').Random(3),
                                                    seed=3))
            mean, sd = dl.expected_noise_rate(mode, r, raw['train_label'], 10)
            assert abs(np.mean(noisy != raw['train_label']) - mean) <= 5 * sd + 0.002, (mode, r)


def damage(kind, root):
    if kind == 'label -1':
        path = os.path.join(root, 'data_batch_2')
        d = pickle.load(open(path, 'rb'), encoding='latin1')
        d['labels'][0] = -1
        pickle.dump(d, open(path, 'wb'))
    elif kind == 'string labels':
        path = os.path.join(root, 'data_batch_1')
        d = pickle.load(open(path, 'rb'), encoding='latin1')
        d['labels'] = ['cat'] * len(d['labels'])
        pickle.dump(d, open(path, 'wb'))
    elif kind == 'float pixels':
        path = os.path.join(root, 'test_batch')
        d = pickle.load(open(path, 'rb'), encoding='latin1')
        d['data'] = d['data'] / 255.0
        pickle.dump(d, open(path, 'wb'))
    elif kind == 'noise file is a folder':
        os.makedirs(os.path.join(root, '0.5_sym.json'))


MESSAGES = [
    ('label -1', 'the training labels in %s span -1..9 but cifar10 has 10 classes (labels 0..9)'),
    ('string labels', 'data_batch_1: its "labels" are not integer class indices (e.g. [\'cat\'])'),
    ('float pixels', 'test_batch holds pixels of type float64; the python-version CIFAR archives store bytes 0..255'),
    ('noise file is a folder', 'noise file %s/0.5_sym.json is a folder: pass the path of a JSON file'),
]


@pytest.mark.parametrize('kind, message', MESSAGES, ids=[m[0] for m in MESSAGES])
def test_damaged_cifar_data_gets_a_clear_message(data, tmp_path, capsys, kind, message):
    root = copy_data(data, str(tmp_path / 'data'))
    for name in os.listdir(root):
        if name.endswith('.json'):
            os.remove(os.path.join(root, name))
    damage(kind, root)
    code, err = run(['--data_path', root, '--num_epochs', '0', '--checkpoint_dir', str(tmp_path / 'ck')] + FAST,
                    capsys)
    assert code == 2
    assert (message % root if '%s' in message else message) in err, err
