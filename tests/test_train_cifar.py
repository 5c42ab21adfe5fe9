"""Train_cifar.py end to end: logs, JSON lines, checkpoints, exact resume, bad input."""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import Train_cifar
import dividemix
from dividemix_run import checkpoints
from dividemix_run import cli
from conftest import ROOT, make_cifar10

ACC_LINE = re.compile(r'^Epoch:\d+   Accuracy:\d+\.\d\d$')
STATS_LINE = re.compile(r'^Numer of labeled samples:\d+   AUC:(\d\.\d{3}|nan)$')
# SmallCNN (two convolutions) where the test is not about the network: a tiny PreResNet-18 costs ~8x the
# time on the CPU. PreResNet-18 itself: the SIGKILL resume test (RESNET_FAST), test_paper_network_end_to_end.
FAST = ['--arch', 'cnn', '--width', '4', '--batch_size', '16', '--num_workers', '0', '--log_every', '1']
RESNET_FAST = ['--width', '4', '--batch_size', '16', '--num_workers', '0', '--log_every', '1']


def run(argv, capsys=None):
    """Train_cifar in-process through run_main; returns (exit status, stderr)."""
    try:
        cli.run_main(Train_cifar.main, argv)
        code = 0
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err if capsys is not None else ''
    return code, err


def lines(path):
    with open(path) as f:
        return f.read().splitlines()


def test_end_to_end_logs_and_outputs(tmp_path, cifar10_dir, capsys):
    ck = str(tmp_path / 'checkpoint')
    code, err = run(['--data_path', cifar10_dir, '--num_epochs', '3', '--warm_up', '2', '--checkpoint_dir', ck,
                     '--dump_losses', '3'] + FAST, capsys)
    assert code == 0, err
    stem = os.path.join(ck, 'cifar10_0.5_sym')
    acc = lines(stem + '_acc.txt')
    assert len(acc) == 4 and all(ACC_LINE.match(l) for l in acc)
    assert [int(l.split()[0][6:]) for l in acc] == [0, 1, 2, 3]
    stats = lines(stem + '_stats.txt')
    assert len(stats) == 4 and all(STATS_LINE.match(l) for l in stats)  # 2 DivideMix epochs x 2 nets
    records = [json.loads(l) for l in lines(stem + '_log.jsonl')]
    epochs = [r for r in records if 'epoch' in r]
    assert [r['phase'] for r in epochs] == ['warmup', 'warmup', 'train', 'train']
    for r in epochs:
        assert {'epoch', 'lr', 'test_acc', 'seconds'} <= set(r)
    for r in epochs[2:]:
        assert {'labeled1', 'labeled2', 'auc1', 'auc2', 'precision1', 'precision2', 'recall1', 'recall2'} <= set(r)
    # the stats lines are the divisions the nets trained on: net2's first (for net1), then net1's
    assert stats[0].startswith('Numer of labeled samples:%d ' % epochs[2]['labeled2'])
    assert stats[1].startswith('Numer of labeled samples:%d ' % epochs[2]['labeled1'])
    for r, line in zip(epochs, acc):
        assert line == 'Epoch:%d   Accuracy:%.2f' % (r['epoch'], r['test_acc'])
    summary = records[-1]['summary']
    accs = [r['test_acc'] for r in epochs]
    assert summary == {'best': max(accs), 'last': accs[-1], 'mean_last10': pytest.approx(sum(accs) / 4),
                       'epochs': 4}
    with open(stem + '_summary.json') as f:
        assert json.load(f)['best'] == max(accs)
    with open(stem + '_settings.json') as f:
        settings = json.load(f)
    assert settings['lambda_u'] == 25 and settings['p_threshold'] == 0.5 and settings['num_class'] == 10
    assert settings['augment'] == 'crop_flip'  # the reference's views unless asked
    assert 0.4 < settings['noise_rate'] < 0.5
    for k in (1, 2):
        sd = torch.load(stem + '_net%d.pth.tar' % k, weights_only=True)
        assert sd['classifier.3.weight'].shape[0] == 10  # SmallCNN's last layer: 10 classes
    dump = stem + '_losses_ep003.npz'
    assert os.path.exists(dump)


def test_paper_network_end_to_end(ram_tmp, cifar10_dir, capsys):
    """The real model, once: the paper's PreResNet-18 (width 64), a warm-up and a DivideMix epoch."""
    ck = str(ram_tmp / 'ck')
    code, err = run(['--data_path', cifar10_dir, '--num_epochs', '1', '--warm_up', '1', '--batch_size', '16',
                     '--train_subset', '32', '--test_subset', '10', '--num_workers', '0', '--checkpoint_dir', ck],
                    capsys)
    assert code == 0, err
    stem = os.path.join(ck, 'cifar10_0.5_sym')
    assert all(ACC_LINE.match(l) for l in lines(stem + '_acc.txt')) and len(lines(stem + '_acc.txt')) == 2
    assert len(lines(stem + '_stats.txt')) == 2
    sd = torch.load(stem + '_net1.pth.tar', weights_only=True)
    assert sd['conv1.weight'].shape == (64, 3, 3, 3) and sd['linear.weight'].shape == (10, 512)
    epoch1 = [json.loads(l) for l in lines(stem + '_log.jsonl') if '"epoch": 1' in l][0]
    assert {'Lx1', 'Lx2'} <= set(epoch1) and not {'skipped1', 'skipped2'} & set(epoch1)  # both nets trained


def test_settings_printed_with_their_source(tmp_path, cifar10_dir, capsys):
    ck = str(tmp_path / 'ck')
    code, _ = run(['--data_path', cifar10_dir, '--num_epochs', '0', '--r', '0.2', '--checkpoint_dir', ck] + FAST)
    out = capsys.readouterr().out
    assert code == 0
    assert '--lambda_u 0: paper setting for cifar10 sym 20%' in out
    assert '--p_threshold 0.5: paper setting for cifar10 sym 20%' in out
    assert re.search(r'noise: sym, r=0\.20 -> \d+\.\d\d% of 200 training labels', out)


def test_reference_pipeline_end_to_end(tmp_path, cifar10_dir, capsys):
    ck = str(tmp_path / 'ck')
    code, err = run(['--data_path', cifar10_dir, '--num_epochs', '1', '--warm_up', '1', '--pipeline', 'reference',
                     '--checkpoint_dir', ck, '--noise_mode', 'asym', '--r', '0.4'] + FAST, capsys)
    assert code == 0, err
    assert len(lines(os.path.join(ck, 'cifar10_0.4_asym_acc.txt'))) == 2
    assert len(lines(os.path.join(ck, 'cifar10_0.4_asym_stats.txt'))) == 2


def test_cifar100_fashion_and_ce_baseline(tmp_path, cifar100_dir, fashion_dir, capsys):
    ck = str(tmp_path / 'ck')
    assert run(['--data_path', cifar100_dir, '--dataset', 'cifar100', '--num_epochs', '1', '--warm_up', '1',
                '--checkpoint_dir', ck] + FAST, capsys)[0] == 0
    assert run(['--data_path', fashion_dir, '--dataset', 'fashionmnist', '--num_epochs', '1', '--warm_up', '1',
                '--checkpoint_dir', ck] + FAST, capsys)[0] == 0
    assert run(['--data_path', fashion_dir, '--dataset', 'fashionmnist', '--num_epochs', '1', '--warm_up', '1',
                '--arch', 'cnn', '--augment', 'none', '--id', 'cnn', '--checkpoint_dir', ck] + FAST, capsys)[0] == 0
    sd = torch.load(os.path.join(ck, 'fashionmnist_0.5_sym_cnn_net1.pth.tar'), weights_only=True)
    assert sd['classifier.1.weight'].shape == (8 * 4, 2 * 4 * 7 * 7)  # --width 4 from FAST
    with open(os.path.join(ck, 'fashionmnist_0.5_sym_cnn_settings.json')) as f:
        assert json.load(f)['augment'] == 'none'
    code, err = run(['--data_path', fashion_dir, '--dataset', 'fashionmnist', '--num_epochs', '1', '--method', 'ce',
                     '--track_division', '--id', 'ce', '--checkpoint_dir', ck] + FAST, capsys)
    assert code == 0, err
    recs = [json.loads(l) for l in lines(os.path.join(ck, 'fashionmnist_0.5_sym_ce_log.jsonl'))][:-1]
    assert [r['phase'] for r in recs] == ['warmup', 'warmup']
    assert all('auc1' in r for r in recs)  # tracked without training on the division


def test_track_division_leaves_training_unchanged(tmp_path, cifar10_dir, capsys):
    accs = []
    for extra in ([], ['--track_division']):
        ck = str(tmp_path / ('ck%d' % len(accs)))
        assert run(['--data_path', cifar10_dir, '--num_epochs', '2', '--warm_up', '2', '--checkpoint_dir', ck]
                   + extra + FAST, capsys)[0] == 0
        accs.append(lines(os.path.join(ck, 'cifar10_0.5_sym_acc.txt')))
    assert accs[0] == accs[1]


@pytest.mark.parametrize('pipeline', ['device', 'reference'])
def test_empty_labeled_and_unlabeled_sets(tmp_path, cifar10_dir, capsys, pipeline, monkeypatch):
    ck = str(tmp_path / 'ck')
    # On a tiny run a GMM posterior can round to exactly 1 or 0 for well-separated samples, so
    # the extreme thresholds alone do not force an empty side: keep the posteriors inside
    # [0.01, 0.99] (a division the GMM can give) and let the thresholds do the rest.
    real_fit_gmm = dividemix.fit_gmm

    def fit_gmm(*a, **k):
        prob, gmm = real_fit_gmm(*a, **k)
        return prob.clip(0.01, 0.99), gmm
    monkeypatch.setattr(dividemix, 'fit_gmm', fit_gmm)
    # p_threshold just under 1: no sample is 'clean' -> both nets skip training, with a warning
    code, err = run(['--data_path', cifar10_dir, '--num_epochs', '1', '--warm_up', '1', '--p_threshold', '0.999999',
                     '--checkpoint_dir', ck, '--pipeline', pipeline] + FAST, capsys)
    assert code == 0
    assert 'labels no sample as clean; net1 is not trained this epoch' in err
    rec = [json.loads(l) for l in lines(os.path.join(ck, 'cifar10_0.5_sym_log.jsonl'))][1]
    assert rec.get('skipped1') and rec.get('skipped2')
    # p_threshold just over 0: every sample is 'clean' -> Lu = 0, training on labeled samples only
    code, err = run(['--data_path', cifar10_dir, '--num_epochs', '1', '--warm_up', '1', '--p_threshold', '1e-300',
                     '--checkpoint_dir', ck, '--overwrite', '--pipeline', pipeline] + FAST, capsys)
    assert code == 0
    assert 'labels every sample as clean; net1 trains on labeled samples only' in err
    rec = [json.loads(l) for l in lines(os.path.join(ck, 'cifar10_0.5_sym_log.jsonl'))][1]
    assert rec['Lu1'] == 0 and rec['labeled1'] == 200


# ---------------------------------------------------------------- resume

def final_state(ck, stem='cifar10_0.5_sym'):
    return (lines(os.path.join(ck, stem + '_acc.txt')), lines(os.path.join(ck, stem + '_stats.txt')),
            [torch.load(os.path.join(ck, '%s_net%d.pth.tar' % (stem, k)), weights_only=True) for k in (1, 2)])


def same_state(a, b):
    assert a[0] == b[0]
    assert a[1] == b[1]
    for sa, sb in zip(a[2], b[2]):
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


RESUME_ARGS = ['--num_epochs', '4', '--warm_up', '2', '--r', '0.9']  # r=0.9 exercises the loss history


@pytest.fixture(scope='module')
def resume_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('resume') / 'c10')
    make_cifar10(root, n_per_batch=40)
    return root


def uninterrupted_run(resume_data, folder, net_args):
    ck = str(folder)
    cli.run_main(Train_cifar.main, ['--data_path', resume_data, '--checkpoint_dir', ck] + RESUME_ARGS + net_args)
    return final_state(ck, 'cifar10_0.9_sym')


@pytest.fixture(scope='module')
def uninterrupted(resume_data, tmp_path_factory):
    return uninterrupted_run(resume_data, tmp_path_factory.mktemp('full'), FAST)


@pytest.fixture(scope='module')
def uninterrupted_resnet(resume_data, tmp_path_factory):
    """PreResNet-18 for the SIGKILL test: its epochs last long enough to be killed in the middle of one."""
    return uninterrupted_run(resume_data, tmp_path_factory.mktemp('full_resnet'), RESNET_FAST)


@pytest.mark.parametrize('stop_after', [1, 2])
def test_resume_after_epoch_is_exact(tmp_path, resume_data, uninterrupted, stop_after, capsys):
    ck = str(tmp_path / 'ck')
    args = ['--data_path', resume_data, '--checkpoint_dir', ck] + RESUME_ARGS + FAST
    stopped = list(args)
    stopped[stopped.index('--num_epochs') + 1] = str(stop_after)
    assert run(stopped, capsys)[0] == 0
    assert len(lines(os.path.join(ck, 'cifar10_0.9_sym_acc.txt'))) == stop_after + 1
    code, err = run(args + ['--resume'], capsys)
    assert code == 0, err
    same_state(final_state(ck, 'cifar10_0.9_sym'), uninterrupted)
    recs = [json.loads(l) for l in lines(os.path.join(ck, 'cifar10_0.9_sym_log.jsonl'))]
    assert [r['epoch'] for r in recs if 'epoch' in r] == [0, 1, 2, 3, 4]  # not duplicated, not truncated
    assert sum('summary' in r for r in recs) == 1


def test_resume_after_sigkill_mid_epoch_is_exact(tmp_path, resume_data, uninterrupted_resnet):
    ck = str(tmp_path / 'ck')
    cmd = [sys.executable, os.path.join(ROOT, 'Train_cifar.py'), '--data_path', resume_data, '--checkpoint_dir',
           ck] + RESUME_ARGS + RESNET_FAST
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    acc = os.path.join(ck, 'cifar10_0.9_sym_acc.txt')
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(acc) and len(lines(acc)) >= 3:  # epoch 2 done: now inside epoch 3
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(lines(acc)) < 5, 'the run finished before it could be killed'
    done = subprocess.run(cmd + ['--resume'], cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert 'resumed from' in done.stdout
    same_state(final_state(ck, 'cifar10_0.9_sym'), uninterrupted_resnet)


def test_pre_redesign_checkpoint_resumes_exactly(tmp_path, resume_data, uninterrupted, capsys):
    """A checkpoint in the layout of format 1 (before the redesign: the device pipeline's generator kept
    with the global random streams, no 'source') continues like the uninterrupted run."""
    ck = str(tmp_path / 'ck')
    args = ['--data_path', resume_data, '--checkpoint_dir', ck] + RESUME_ARGS + FAST
    stopped = list(args)
    stopped[stopped.index('--num_epochs') + 1] = '2'
    assert run(stopped, capsys)[0] == 0
    path = os.path.join(ck, 'cifar10_0.9_sym_checkpoint.pth.tar')
    ckpt = torch.load(path, weights_only=True)
    ckpt['format'] = 1
    ckpt['rng']['generators'] = {'pipeline': ckpt.pop('source')['generator']}
    torch.save(ckpt, path)
    code, err = run(args + ['--resume'], capsys)
    assert code == 0, err
    same_state(final_state(ck, 'cifar10_0.9_sym'), uninterrupted)


def test_reference_pipeline_resume_is_exact(tmp_path, cifar10_dir, capsys):
    base = ['--data_path', cifar10_dir, '--pipeline', 'reference', '--warm_up', '1', '--r', '0.9'] + FAST
    full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
    assert run(base + ['--num_epochs', '2', '--checkpoint_dir', full], capsys)[0] == 0
    assert run(base + ['--num_epochs', '1', '--checkpoint_dir', part], capsys)[0] == 0
    assert run(base + ['--num_epochs', '2', '--checkpoint_dir', part, '--resume'], capsys)[0] == 0
    same_state(final_state(part, 'cifar10_0.9_sym'), final_state(full, 'cifar10_0.9_sym'))


def test_ce_run_resumes_with_more_epochs(tmp_path, cifar10_dir, capsys):
    """--num_epochs may grow on resume, for the cross-entropy baseline too (its warm-up length
    once followed --num_epochs, and the resume was refused)."""
    base = ['--data_path', cifar10_dir, '--method', 'ce', '--id', 'ce'] + FAST
    full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
    assert run(base + ['--num_epochs', '2', '--checkpoint_dir', full], capsys)[0] == 0
    assert run(base + ['--num_epochs', '1', '--checkpoint_dir', part], capsys)[0] == 0
    code, err = run(base + ['--num_epochs', '2', '--checkpoint_dir', part, '--resume'], capsys)
    assert code == 0, err
    same_state(final_state(part, 'cifar10_0.5_sym_ce'), final_state(full, 'cifar10_0.5_sym_ce'))
    phases = [json.loads(l).get('phase') for l in lines(os.path.join(part, 'cifar10_0.5_sym_ce_log.jsonl'))]
    assert phases == ['warmup', 'warmup', 'warmup', None]  # every epoch a warm-up epoch; then the summary


def test_checkpoint_of_another_script_is_refused(tmp_path, cifar10_dir, capsys):
    ck = str(tmp_path / 'ck')
    args = ['--data_path', cifar10_dir, '--num_epochs', '0', '--checkpoint_dir', ck] + FAST
    assert run(args, capsys)[0] == 0
    path = os.path.join(ck, 'cifar10_0.5_sym_checkpoint.pth.tar')
    ckpt = torch.load(path, weights_only=True)
    ckpt['script'] = 'Train_webvision'
    torch.save(ckpt, path)
    code, err = run(args + ['--num_epochs', '1', '--resume'], capsys)
    assert code == 2 and 'it is a checkpoint of Train_webvision.py, not of Train_cifar.py' in err


def test_lr_decay_reaches_the_optimizers(tmp_path, cifar10_dir, capsys):
    ck = str(tmp_path / 'ck')
    assert run(['--data_path', cifar10_dir, '--num_epochs', '2', '--warm_up', '1', '--lr_decay_epoch', '1',
                '--checkpoint_dir', ck] + FAST, capsys)[0] == 0
    recs = [json.loads(l) for l in lines(os.path.join(ck, 'cifar10_0.5_sym_log.jsonl'))[:-1]]
    assert [r['lr'] for r in recs] == [0.02, 0.002, 0.002]
    ckpt = torch.load(os.path.join(ck, 'cifar10_0.5_sym_checkpoint.pth.tar'), weights_only=True)
    for k in (1, 2):  # what the last epoch's SGD steps used
        assert [g['lr'] for g in ckpt['optimizer%d' % k]['param_groups']] == [pytest.approx(0.002)]


@pytest.mark.parametrize('flag', [[], ['--unseeded_gmm']])
def test_gmm_seed_follows_the_flag(tmp_path, cifar10_dir, capsys, monkeypatch, flag):
    seen = []
    real = dividemix.fit_gmm

    def fit_gmm(input_loss, reg_covar=5e-4, random_state=None):
        seen.append(random_state)
        return real(input_loss, reg_covar, random_state)
    monkeypatch.setattr(dividemix, 'fit_gmm', fit_gmm)
    assert run(['--data_path', cifar10_dir, '--num_epochs', '1', '--warm_up', '1', '--seed', '7',
                '--checkpoint_dir', str(tmp_path / 'ck')] + FAST + flag, capsys)[0] == 0
    assert seen == ([None, None] if flag else [7, 7])  # one GMM per net, in the one training epoch


@pytest.mark.parametrize('r, window', [(0.9, 5), (0.8, 1)])
def test_loss_history_averaged_only_at_r_09(tmp_path, cifar10_dir, capsys, r, window):
    """Kept quirk: the GMM sees the mean of the last 5 normalised loss vectors when r == 0.9 exactly,
    else the current vector."""
    ck = str(tmp_path / 'ck')
    assert run(['--data_path', cifar10_dir, '--num_epochs', '3', '--warm_up', '1', '--r', str(r),
                '--dump_losses', '3', '--checkpoint_dir', ck] + FAST, capsys)[0] == 0
    stem = os.path.join(ck, 'cifar10_%.1f_sym' % r)
    history = torch.load(stem + '_checkpoint.pth.tar', weights_only=True)['history']
    dump = np.load(stem + '_losses_ep003.npz')
    for k in (1, 2):
        assert len(history[k - 1]) == 3  # three training epochs, three loss vectors
        expected = torch.stack(history[k - 1][-window:]).mean(0)
        assert np.array_equal(dump['input_loss%d' % k], expected.numpy().astype(np.float64))


@pytest.mark.parametrize('mode, calls', [('sym', False), ('asym', True)])
def test_confidence_penalty_auto_is_off_for_sym(tmp_path, cifar10_dir, capsys, monkeypatch, mode, calls):
    count = []
    real = dividemix.neg_entropy
    monkeypatch.setattr(dividemix, 'neg_entropy', lambda logits: count.append(1) or real(logits))
    ck = str(tmp_path / 'ck')
    assert run(['--data_path', cifar10_dir, '--num_epochs', '0', '--noise_mode', mode, '--r', '0.4',
                '--checkpoint_dir', ck] + FAST, capsys)[0] == 0
    assert bool(count) == calls
    with open(os.path.join(ck, 'cifar10_0.4_%s_settings.json' % mode)) as f:
        assert json.load(f)['conf_penalty'] == ('on' if calls else 'off')


def test_atomic_save_survives_kill(tmp_path):
    path = str(tmp_path / 'ck.pth.tar')
    checkpoints.atomic_save({'version': 0, 'w': torch.zeros(10)}, path)
    script = ('import sys, torch; sys.path.insert(0, %r)\n'
              'from checkpoints import atomic_save\n'
              'big = torch.randn(8_000_000)\n'
              'i = 1\n'
              'while True:\n'
              '    atomic_save({"version": i, "w": big}, %r); i += 1\n') % (ROOT, path)
    for delay in (0.5, 0.9, 1.3):
        proc = subprocess.Popen([sys.executable, '-c', script])
        time.sleep(delay)
        proc.kill()
        proc.wait()
        state = torch.load(path, weights_only=True)  # always a whole checkpoint, old or new
        assert isinstance(state['version'], int)


def test_divergence_stops_with_status_3_and_keeps_checkpoint(tmp_path, cifar10_dir, capsys, monkeypatch):
    ck = str(tmp_path / 'ck')
    args = ['--data_path', cifar10_dir, '--warm_up', '1', '--checkpoint_dir', ck] + FAST
    assert run(args + ['--num_epochs', '1'], capsys)[0] == 0
    ckpt_file = os.path.join(ck, 'cifar10_0.5_sym_checkpoint.pth.tar')
    with open(ckpt_file, 'rb') as f:
        before = hashlib.sha256(f.read()).hexdigest()
    real = dividemix.uniform_prior_penalty
    monkeypatch.setattr(dividemix, 'uniform_prior_penalty', lambda logits, c: real(logits, c) * float('nan'))
    code, err = run(args + ['--num_epochs', '3', '--resume'], capsys)
    assert code == 3
    assert 'non-finite loss (NaN or inf) in training at epoch 2, iteration 1' in err
    with open(ckpt_file, 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest() == before
    assert torch.load(ckpt_file, weights_only=True)['epoch'] == 1
    assert len(lines(os.path.join(ck, 'cifar10_0.5_sym_acc.txt'))) == 2


# ---------------------------------------------------------------- bad input

@pytest.fixture(scope='module')
def earlier_run(tmp_path_factory):
    """A finished run whose outputs a rejected start must leave untouched."""
    base = tmp_path_factory.mktemp('earlier')
    data = str(base / 'c10')
    make_cifar10(data)
    ck = str(base / 'checkpoint')
    cli.run_main(Train_cifar.main, ['--data_path', data, '--num_epochs', '1', '--warm_up', '1',
                                            '--checkpoint_dir', ck] + FAST)
    return data, ck


def snapshot(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), 'rb') as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def copy_data(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


BAD_FLAGS = [
    (['--r', '1.5'], '--r 1.5 is outside [0, 1]'),
    (['--r', '-0.1'], '--r -0.1 is outside [0, 1]'),
    (['--noise_mode', 'banana'], "invalid choice: 'banana'"),
    (['--num_class', '100'], '--num_class 100 does not match --dataset cifar10, which has 10 classes'),
    (['--p_threshold', '1.0'], '--p_threshold 1 is outside (0, 1)'),
    (['--p_threshold', '0'], '--p_threshold 0 is outside (0, 1)'),
    (['--batch_size', '0'], '--batch_size 0 is outside [1, inf)'),
    (['--noise_mode', 'noisy100'], '--noise_mode noisy100 is a cifar100 label set: pass --dataset cifar100'),
    # torch's CPU convolution hangs or gets gradients wrong there (runtime.Runtime.check_conv_width)
    (['--device', 'cpu', '--channels_last', '--arch', 'preresnet18'], '--width 4 with --channels_last on the CPU: torch\'s CPU convolution '
     'hangs or computes wrong gradients'),
    (['--device', 'cpu', '--compile', '--arch', 'preresnet18'], 'use --width 8 or more, or leave out --compile'),
]


@pytest.mark.parametrize('flags, message', BAD_FLAGS)
def test_bad_flags_exit_2(earlier_run, capsys, flags, message):
    data, ck = earlier_run
    before = snapshot(ck)
    code, err = run(['--data_path', data, '--num_epochs', '1', '--warm_up', '1', '--checkpoint_dir', ck,
                     '--overwrite'] + FAST + flags, capsys)
    assert code == 2
    assert message in err
    assert snapshot(ck) == before


def damage(kind, data):
    if kind == 'missing folder':
        return data + '_nowhere'
    if kind == 'missing file':
        os.remove(os.path.join(data, 'test_batch'))
    elif kind == 'truncated pickle':
        p = os.path.join(data, 'data_batch_4')
        with open(p, 'rb') as f:
            raw = f.read()
        with open(p, 'wb') as f:
            f.write(raw[:1000])
    elif kind.startswith('noise file'):
        content = {'noise file length': json.dumps([1] * 150), 'noise file range': json.dumps([3] * 199 + [-1]),
                   'noise file json': 'not json at all'}[kind]
        with open(os.path.join(data, '0.5_sym.json'), 'w') as f:
            f.write(content)
    return data


BAD_DATA = [
    ('missing folder', 'does not exist: pass the folder holding the extracted python-version CIFAR10'),
    ('missing file', 'missing file'),
    ('truncated pickle', 'data_batch_4 (UnpicklingError'),
    ('noise file length', 'has 150 labels but the training set has 200 images'),
    ('noise file range', 'holds labels outside [0, 10) (e.g. -1)'),
    ('noise file json', 'is not valid JSON'),
]


@pytest.mark.parametrize('kind, message', BAD_DATA)
def test_bad_data_exit_2(earlier_run, tmp_path, capsys, kind, message):
    data, ck = earlier_run
    before = snapshot(ck)
    bad = damage(kind, copy_data(data, str(tmp_path / 'data')))
    code, err = run(['--data_path', bad, '--num_epochs', '1', '--warm_up', '1', '--checkpoint_dir', ck,
                     '--overwrite'] + FAST, capsys)
    assert code == 2
    assert message.replace('truncated', '') in err or message in err, err
    assert snapshot(ck) == before


def test_unwritable_output_folder(earlier_run, tmp_path, capsys):
    data, _ = earlier_run
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    code, err = run(['--data_path', data, '--checkpoint_dir', str(blocker / 'checkpoint')] + FAST, capsys)
    assert code == 2 and 'cannot write to the output folder' in err and '--checkpoint_dir' in err


def test_existing_run_is_not_replaced_silently(earlier_run, capsys):
    data, ck = earlier_run
    before = snapshot(ck)
    code, err = run(['--data_path', data, '--num_epochs', '1', '--warm_up', '1', '--checkpoint_dir', ck] + FAST,
                    capsys)
    assert code == 2 and 'already holds a checkpoint of this run: pass --resume' in err
    assert snapshot(ck) == before


def test_resume_refuses_other_settings_or_labels(earlier_run, tmp_path, capsys):
    data, ck = earlier_run
    before = snapshot(ck)
    code, err = run(['--data_path', data, '--num_epochs', '2', '--warm_up', '1', '--checkpoint_dir', ck,
                     '--lambda_u', '3', '--resume'] + FAST, capsys)
    assert code == 2 and "--lambda_u: 25 in the checkpoint, 3.0 now" in err
    other = copy_data(data, str(tmp_path / 'data'))
    with open(os.path.join(other, '0.5_sym.json'), 'w') as f:
        json.dump([0] * 200, f)
    code, err = run(['--data_path', other, '--num_epochs', '2', '--warm_up', '1', '--checkpoint_dir', ck,
                     '--resume', '--accept_noise_file'] + FAST, capsys)
    assert code == 2 and 'the noisy labels differ' in err
    assert snapshot(ck) == before
    code, err = run(['--data_path', data, '--checkpoint_dir', ck, '--resume', str(tmp_path / 'none.pth.tar')] + FAST,
                    capsys)
    assert code == 2 and 'no checkpoint at' in err


def test_cli_exit_status_from_a_shell(tmp_path):
    """The real command line: status 2 and the message on stderr."""
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'Train_cifar.py'), '--data_path',
                           str(tmp_path / 'missing')], capture_output=True, text=True, cwd=str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith('error: data folder') and 'does not exist' in done.stderr
    assert not os.listdir(str(tmp_path / 'checkpoint'))  # created, nothing written
