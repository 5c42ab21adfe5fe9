"""--r auto (Train_folder.py): the noise rate estimated at the first co-divide from the two nets' loss
mixtures, the paper's settings read at it, recorded (stdout, JSON line, settings file, checkpoint) and
kept by a resume; explicit --lambda_u / --p_threshold win."""
import json
import os

import numpy as np
import pytest
import torch

import dataloader_folder
import Train_folder
from conftest import run_script
from dividemix_run import noise_rate, paper
from tiny_data import make_image_folder

FAST = ['--arch', 'cnn', '--width', '8', '--warm_up', '1', '--batch_size', '8', '--num_workers', '0', '--log_every',
        '100', '--device', 'cpu']


def run(argv, capsys):
    return run_script(Train_folder.main, argv, capsys, (dataloader_folder.DatasetError,))


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('auto') / 'animals')
    make_image_folder(root, per_class=8, n_test=2, noisy=(0, 9, 17))
    return root


def records(stem):
    with open(stem + '_log.jsonl') as f:
        return [{k: v for k, v in json.loads(line).items() if k != 'seconds'} for line in f]


def test_estimate_is_the_mean_noisy_posterior_of_both_nets():
    class D:
        def __init__(self, prob):
            self.prob = np.asarray(prob)
    mean, per_net = noise_rate.estimate([D([1.0, 0.9, 0.1, 0.0]), D([1.0, 1.0, 0.5, 0.5])])
    assert per_net == pytest.approx([0.5, 0.25]) and mean == pytest.approx(0.375)


def test_r_auto_reads_the_papers_table_at_the_estimate_and_a_resume_keeps_it(folder, tmp_path, capsys, monkeypatch):
    # a table cell unlike the placeholders (0, 0.5) the run starts with: the first division must be cut again
    monkeypatch.setattr(paper, 'paper_setting', lambda table, mode, rate: (3.0, 0.99, 'cell for %.3f' % rate))
    base = ['--data_path', folder] + FAST
    full = str(tmp_path / 'full')
    code, out = run(base + ['--r', 'auto', '--num_epochs', '3', '--checkpoint_dir', full], capsys)
    assert code == 0, out.err
    stem = os.path.join(full, 'animals')
    recs = records(stem)
    est = recs[1]['r_estimate']
    assert 0 < est < 1 and est == pytest.approx((recs[1]['r_estimate_net1'] + recs[1]['r_estimate_net2']) / 2)
    assert (recs[1]['lambda_u_setting'], recs[1]['p_threshold']) == (3.0, 0.99)
    assert 'r_estimate' not in recs[0] and 'r_estimate' not in recs[2]  # recorded once, when made
    assert ('| --r auto: at the first co-divide (epoch 1) the loss mixtures put %.1f%% of the training labels in the '
            'high-loss (noisy) component' % (100 * est)) in out.out
    assert '--lambda_u 3, --p_threshold 0.99 (cell for %.3f)' % est in out.out
    with open(stem + '_settings.json') as f:
        settings = json.load(f)
    assert settings['r'] == 'auto' and settings['r_estimate'] == est and settings['r_estimate_epoch'] == 1
    assert (settings['lambda_u'], settings['p_threshold']) == (3.0, 0.99)
    assert torch.load(stem + '_checkpoint.pth.tar', weights_only=True)['r_auto']['estimate'] == est
    with open(stem + '_summary.json') as f:
        assert json.load(f)['r_estimate'] == est

    # the same run as one given those settings: the estimate changes nothing else
    given = str(tmp_path / 'given')
    assert run(base + ['--r', '0.3', '--lambda_u', '3', '--p_threshold', '0.99', '--num_epochs', '3',
                       '--checkpoint_dir', given], capsys)[0] == 0
    auto_keys = ('r_estimate', 'r_estimate_net1', 'r_estimate_net2', 'lambda_u_setting', 'p_threshold')
    assert [{k: v for k, v in r.items() if k not in auto_keys} for r in recs] == records(
        os.path.join(given, 'animals'))
    assert open(stem + '_acc.txt').read() == open(os.path.join(given, 'animals_acc.txt')).read()
    # (at the placeholder threshold the run starts with, the first division labels other samples)
    placeholder = str(tmp_path / 'placeholder')
    assert run(base + ['--lambda_u', '3', '--p_threshold', '0.5', '--num_epochs', '1', '--checkpoint_dir',
                       placeholder], capsys)[0] == 0
    first = records(os.path.join(placeholder, 'animals'))[1]
    assert (first['labeled1'], first['labeled2']) != (recs[1]['labeled1'], recs[1]['labeled2'])

    # stopped before the estimate (after warm-up) and after it: both resumes end as the uninterrupted run
    for stop in ('0', '1'):
        part = str(tmp_path / ('part' + stop))
        assert run(base + ['--r', 'auto', '--num_epochs', stop, '--checkpoint_dir', part], capsys)[0] == 0
        code, out = run(base + ['--r', 'auto', '--num_epochs', '3', '--checkpoint_dir', part, '--resume'], capsys)
        assert code == 0, out.err
        assert records(os.path.join(part, 'animals')) == recs
        if stop == '1':
            assert '(net1 %.1f%%, net2 %.1f%%) (estimated before this resume): --lambda_u 3, --p_threshold 0.99' % (
                100 * recs[1]['r_estimate_net1'], 100 * recs[1]['r_estimate_net2']) in out.out


def test_explicit_settings_win_and_bad_values_are_refused(folder, tmp_path, capsys):
    ck = str(tmp_path / 'ck')
    code, out = run(['--data_path', folder, '--r', 'auto', '--lambda_u', '7', '--num_epochs', '1',
                     '--checkpoint_dir', ck] + FAST, capsys)
    assert code == 0, out.err
    rec = records(os.path.join(ck, 'animals'))[1]
    lam, pth, src = paper.paper_setting('cifar10', 'sym', rec['r_estimate'])
    assert (rec['lambda_u_setting'], rec['p_threshold']) == (7, pth)
    assert '--lambda_u 7 (given on the command line), --p_threshold %g (%s)' % (pth, src) in out.out
    code, out = run(['--data_path', folder, '--r', 'half', '--checkpoint_dir', ck] + FAST, capsys)
    assert code == 2 and "--r: 'half': give the fraction of wrong labels you expect (e.g. 0.3), or auto" in out.err
    code, out = run(['--data_path', folder, '--r', 'auto', '--warm_up', '0', '--checkpoint_dir', ck], capsys)
    assert code == 2 and '--r auto estimates the noise rate from nets warmed up on the labels' in out.err
