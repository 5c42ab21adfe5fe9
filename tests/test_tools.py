"""results.py tables, plots.py PNGs, the framework figure, the demo's data path, the benchmark."""
import json
import os
import subprocess
import sys

import pytest

import benchmark
import demo
import draw_framework
import paper_runs
import plots
import results
from dividemix_run import cli
import Train_cifar
from conftest import FASHION_DIR, ROOT, make_fashion

SAMPLE_LOGS = {
    # a run of ours: text log + JSON lines
    'cifar10_0.5_sym_acc.txt': ''.join('Epoch:%d   Accuracy:%.2f\n' % (e, a) for e, a in
                                       enumerate([50.0, 70.0, 90.5, 94.0, 93.0, 95.25, 94.5, 94.0, 94.4, 94.1, 94.2,
                                                  94.3])),
    'cifar10_0.5_sym_log.jsonl': '{"epoch": 10, "auc1": 0.9, "auc2": 0.92}\n{"epoch": 11, "auc1": 0.95, "auc2": 0.97}\n',
    # a reference run (text only), a mode with '_' in its name and an id
    'cifar100_0.9_sym_acc.txt': 'Epoch:0   Accuracy:10.00\nEpoch:1   Accuracy:30.00\nEpoch:2   Accuracy:25.00\n',
    'cifar100_0.4_asym_blocks_seed1_acc.txt': 'Epoch:0   Accuracy:40.00\n',
    'cifar10_0.5_sym_stats.txt': 'Numer of labeled samples:100   AUC:0.900\n',
    'clothing1m.txt': 'Validation Epoch:0      Acc1:60.00  Acc2:62.50\nValidation Epoch:1      Acc1:70.25  Acc2:69.00\n'
                      'Test Accuracy:74.10\n',
    'web_acc.txt': 'Epoch:0 \t WebVision Acc: 50.00% (70.00%) \t ImageNet Acc: 45.00% (66.00%)\n'
                   'Epoch:1 \t WebVision Acc: 60.00% (80.00%) \t ImageNet Acc: 55.00% (75.00%)\n',
}


@pytest.fixture
def logs(tmp_path):
    folder = tmp_path / 'checkpoint'
    folder.mkdir()
    for name, text in SAMPLE_LOGS.items():
        (folder / name).write_text(text)
    return str(folder)


def test_summary_table_from_sample_logs(logs, tmp_path, capsys):
    out = str(tmp_path / 'results.md')
    assert results.main([logs, '--out', out]) == 0
    md = open(out).read()
    assert md.strip() == capsys.readouterr().out.strip()
    run = os.path.join(logs, 'cifar10_0.5_sym')
    # best 95.25, last 94.3, mean of the last 10 = mean(epochs 2..11), AUC = mean of the last epoch's two nets
    last10 = [90.5, 94.0, 93.0, 95.25, 94.5, 94.0, 94.4, 94.1, 94.2, 94.3]
    assert '### cifar10, sym 50%' in md
    assert '| %s | 12 | 95.25 | 94.30 | %.2f | 0.960 | 94.6 / 94.4 |' % (run, sum(last10) / 10) in md
    assert '| %s | 3 | 30.00 | 25.00 | 21.67 | - | 31.5 / 31.0 |' % os.path.join(logs, 'cifar100_0.9_sym') in md
    assert '### cifar100, asym_blocks 40%' in md and '| - |\n' in md  # no paper cell
    assert '| %s | 2 | 70.25 | 74.10 | 74.76 |' % os.path.join(logs, 'clothing1m') in md
    assert '| %s | 2 | 60.00 / 60.00 | 80.00 / 80.00 | 55.00 / 55.00 | 75.00 / 75.00 | 77.32 / 91.64, 75.20 |' \
        % os.path.join(logs, 'web') in md


def test_summary_errors(tmp_path, capsys):
    assert results.main([str(tmp_path / 'none')]) == 2
    assert 'no such folder' in capsys.readouterr().err
    assert results.main([str(tmp_path)]) == 2
    assert 'no run logs' in capsys.readouterr().err


def test_seed_arms_pooled_and_compared(tmp_path, capsys):
    """--seeds pools '<arm>_s<N>' runs (across folders) into mean ± s.d.; --baseline adds Welch's test."""
    one, two = tmp_path / 'a', tmp_path / 'b'
    one.mkdir(), two.mkdir()
    single = lambda acc: 'Epoch:0   Accuracy:%.2f\n' % acc
    for folder, name, acc in ((one, 'dev_s1', 1.0), (one, 'dev_s2', 2.0), (two, 'dev_seed3', 3.0),
                              (one, 'ref_s1', 4.0), (one, 'ref_s2', 5.0), (two, 'ref_s3', 6.0), (one, 'solo', 9.0)):
        (folder / ('fashionmnist_0.5_sym_%s_acc.txt' % name)).write_text(single(acc))
    for seed, epochs in ((1, 1), (2, 2)):  # an unfinished run pooled with a finished one is flagged by its epochs
        (one / ('fashionmnist_0.5_sym_part_s%d_acc.txt' % seed)).write_text(
            ''.join('Epoch:%d   Accuracy:7.00\n' % e for e in range(epochs)))
    assert results.main([str(one), str(two), '--baseline', 'ref']) == 0
    md = capsys.readouterr().out
    assert '### fashionmnist, sym 50%: arms over seeds' in md
    assert '| dev | 3 | 1,2,3 | 1 | 2.00 ± 1.00 | 2.00 ± 1.00 | 2.00 ± 1.00 | - |' in md
    assert '| ref | 3 | 1,2,3 | 1 | 5.00 ± 1.00 |' in md
    assert '| part | 2 | 1,2 | 1-2 | 7.00 ± 0.00 |' in md
    assert '| solo | 1 | - | 1 | 9.00 | 9.00 | 9.00 | - |' in md
    # Welch by hand: difference -3, s.e. sqrt(1/3 + 1/3), 4 degrees of freedom: t = -3.674, p = 0.0213,
    # 95% CI -3 -+ 2.776 * 0.8165
    assert '| dev | 3 | -3.00 | -5.27 to -0.73 | 0.021 |' in md
    assert '| solo | 1 | +4.00 | - | - |' in md and '| part | 2 | +2.00 |' in md
    assert results.arm_of('x_s12') == ('x', 12) and results.arm_of('seed2') == ('(no id)', 2)
    assert results.arm_of('bf16cl') == ('bf16cl', None)
    assert results.main([str(one), '--baseline', 'nope']) == 2
    err = capsys.readouterr().err
    assert '--baseline nope: no such arm' in err and 'dev, part, ref, solo' in err


def test_parse_run_names():
    assert results.parse_cifar_name('cifar10_0.5_sym_acc.txt') == ('cifar10', 0.5, 'sym', '')
    assert results.parse_cifar_name('cifar100_0.4_asym_blocks_x_acc.txt') == ('cifar100', 0.4, 'asym_blocks', 'x')
    assert results.parse_cifar_name('cifar10_0.4_asym_seed2_acc.txt') == ('cifar10', 0.4, 'asym', 'seed2')
    assert results.parse_cifar_name('clothing1m.txt') is None


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """A tiny real run with a loss dump, for the plots."""
    base = tmp_path_factory.mktemp('plots')
    data = str(base / 'fm')
    make_fashion(data, n_train=120, n_test=40)
    ck = str(base / 'ck')
    cli.run_main(Train_cifar.main, ['--dataset', 'fashionmnist', '--data_path', data, '--num_epochs', '2',
                                            '--warm_up', '1', '--width', '4', '--batch_size', '16',
                                            '--checkpoint_dir', ck, '--dump_losses', '1,2'])
    return os.path.join(ck, 'fashionmnist_0.5_sym')


def png_size(path):
    """(width, height) of a PNG file, from its header."""
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n', path
    return int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')


def drawn_figure(draw):
    """Run a plotting call and return the figure it drew (plots.py leaves it open)."""
    import matplotlib.pyplot as plt
    plt.close('all')
    draw()
    return plt.gcf()


def test_acc_plot_draws_each_runs_accuracies(tiny_run, tmp_path):
    pytest.importorskip('matplotlib')
    out = str(tmp_path / 'acc.png')
    fig = drawn_figure(lambda: plots.main(['acc', tiny_run, tiny_run + '_acc.txt', '--labels', 'a', 'b',
                                           '--out', out]))
    accs = [(int(l.split()[0][6:]), float(l.split()[1][9:])) for l in open(tiny_run + '_acc.txt')]
    lines = fig.axes[0].get_lines()
    assert [l.get_label() for l in lines] == ['a', 'b']
    for line in lines:  # the run stem and its _acc.txt give the same curve
        assert [tuple(p) for p in line.get_xydata()] == accs
    assert png_size(out) == (960, 600)  # 6.4 x 4 in at 150 dpi


def test_division_plot_draws_sizes_and_aucs(tiny_run, tmp_path):
    pytest.importorskip('matplotlib')
    out = str(tmp_path / 'division.png')
    fig = drawn_figure(lambda: plots.main(['division', tiny_run, '--out', out]))
    recs = [json.loads(l) for l in open(tiny_run + '_log.jsonl') if 'labeled1' in l]
    size_ax, auc_ax = fig.axes
    for k, line in enumerate(size_ax.get_lines(), start=1):
        assert list(line.get_ydata()) == [r['labeled%d' % k] for r in recs]
    for k, line in enumerate(auc_ax.get_lines(), start=1):
        assert list(line.get_ydata()) == [r['auc%d' % k] for r in recs]
    assert [r['epoch'] for r in recs] == [1, 2] and png_size(out) == (1500, 570)


def test_losses_plot_draws_histograms_and_the_fitted_gmm(tiny_run, tmp_path):
    pytest.importorskip('matplotlib')
    import numpy as np
    out = str(tmp_path / 'losses.png')
    files = [tiny_run + '_losses_ep001.npz', tiny_run + '_losses_ep002.npz']
    fig = drawn_figure(lambda: plots.main(['losses'] + files + ['--out', out]))
    assert len(fig.axes) == 2
    for ax, path in zip(fig.axes, files):
        d = np.load(path)
        clean = d['clean'].astype(bool)
        heights = [sum(p.get_height() for p in c) for c in ax.containers]  # the two histograms' bar heights
        assert heights == [clean.sum(), (~clean).sum()]  # every sample in one of them, split by its truth
        gmm = [l for l in ax.get_lines() if l.get_label() == 'GMM mixture'][0]
        x, y = gmm.get_xdata(), gmm.get_ydata()
        scale = len(clean) / 50  # expected counts per bin of width 1/50
        expected = sum(w * np.exp(-(x - m) ** 2 / (2 * v)) / np.sqrt(2 * np.pi * v)
                       for m, v, w in zip(d['means1'], d['variances1'], d['weights1'])) * scale
        assert np.allclose(y, expected)
        assert ax.get_title() == 'epoch %d, net1' % int(d['epoch'])
    assert png_size(out) == (1260, 540)


def test_loss_dump_content(tiny_run):
    import numpy as np
    d = np.load(tiny_run + '_losses_ep002.npz')
    assert d['input_loss1'].shape == (120,) and d['clean'].dtype == bool
    assert d['means1'].shape == (2,) and abs(d['weights1'].sum() - 1) < 1e-6
    assert d['input_loss1'].min() == 0 and d['input_loss1'].max() == 1


def test_framework_figure(tmp_path):
    """The figure shows every step of the algorithm, at the size the README embeds."""
    pytest.importorskip('matplotlib')
    out = str(tmp_path / 'framework.png')
    fig = drawn_figure(lambda: draw_framework.draw(out))
    text = ' '.join(t.get_text() for t in fig.axes[0].texts)
    for step in ('co-divide', 'per-sample loss', 'GMM (2 comp.)', 'division by net A', 'division by net B',
                 'train net A\n(net B fixed)', 'co-refinement', 'co-guessing', 'MixMatch', 'sharpen', 'Warm-up',
                 'L_x + \\lambda_u L_u + L_{reg}'):
        assert step in text, step
    assert png_size(out) == (2025, 840)


def test_paper_runs_cover_every_cell():
    rows = paper_runs.commands('/c10', '/c100', seed=2)
    assert len(rows) == 9
    (cell, cmd), = [r for r in rows if r[0][:3] == ('cifar10', 'sym', 0.9)]
    assert cmd == ('python Train_cifar.py --dataset cifar10 --data_path /c10 --noise_mode sym --r 0.9 --lambda_u 50 '
                   '--p_threshold 0.6 --seed 2 --id seed2')
    # the script's own defaults agree with the table for every cell
    for (dataset, mode, r, lam, pth, _, _), _ in rows:
        assert paper_runs.paper.paper_setting(dataset, mode, r)[:2] == (lam, pth)


def test_demo_finds_idx_files_in_a_named_folder(tmp_path):
    folder = str(tmp_path / 'fm')
    make_fashion(folder, n_train=10, n_test=5)
    assert demo.find_fashionmnist(folder) == folder
    with pytest.raises(cli.UsageError, match='no Fashion-MNIST IDX files in .*empty'):
        os.makedirs(str(tmp_path / 'empty'))
        demo.find_fashionmnist(str(tmp_path / 'empty'))


def test_demo_clear_error_when_nothing_found(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, 'DEBIAN_DIR', str(tmp_path / 'no_debian'))
    with pytest.raises(SystemExit) as e:
        cli.run_main(demo.main, ['--out', str(tmp_path / 'out')])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert 'Fashion-MNIST not found' in err and 'apt-get install dataset-fashion-mnist' in err and '--data_path' in err


def test_demo_end_to_end_at_toy_scale(tmp_path):
    """The demo's own path (both methods, the table, the picture) at a toy scale, run as run_demo.sh runs
    it: `python demo.py` in its own interpreter (the test suite's sys.path, which holds tools/, would hide
    an import that fails for users)."""
    folder = str(tmp_path / 'fm')
    make_fashion(folder, n_train=150, n_test=40)
    out = str(tmp_path / 'out')
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'demo.py'), '--data_path', folder, '--out', out,
                           '--train_subset', '100', '--test_subset', '30', '--num_epochs', '2', '--warm_up', '1',
                           '--width', '4', '--batch_size', '16'], cwd=str(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split(' | ') for line in open(os.path.join(out, 'demo_table.md')) if line.startswith('| ')][2:]
    assert [r[0] for r in rows] == ['| DivideMix', '| cross-entropy']
    assert all(r[4] != 'nan' for r in rows)  # the baseline's AUC is tracked too
    assert '| test accuracy per epoch of both runs: %s' % os.path.join(out, 'demo_acc.png') in proc.stdout
    assert os.path.getsize(os.path.join(out, 'demo_acc.png')) > 1000  # matplotlib: a dev requirement


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason='Debian dataset-fashion-mnist not installed (%s)' % FASHION_DIR)
def test_real_fashionmnist_files_read():
    import dataloader_cifar as dl
    raw = dl.load_fashionmnist(FASHION_DIR)
    assert raw['train_data'].shape == (60000, 28, 28, 1) and raw['test_data'].shape == (10000, 28, 28, 1)
    assert sorted(set(raw['train_label'].tolist())) == list(range(10))


def test_benchmark_small_cpu_run(tmp_path):
    out = str(tmp_path / 'bench')
    res = benchmark.main(['--num_images', '96', '--num_test', '32', '--width', '4', '--batch_size', '16',
                          '--eval_batch_size', '32', '--configs', 'reference,device', '--num_workers', '0',
                          '--prime_images', '32', '--device', 'cpu', '--out', out])
    assert [r['config'] for r in res] == ['reference', 'device']
    md = open(out + '.md').read()
    assert '| reference |' in md and '| 1.00x |' in md and 'projected 301-epoch run' in md
    raw = json.load(open(out + '.json'))
    assert raw['results'][1]['train_img_s'] > 0


def test_benchmark_without_cuda_exits_2(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip('a CUDA device is present')
    out = str(tmp_path / 'bench')
    with pytest.raises(SystemExit) as e:
        cli.run_main(benchmark.main, ['--num_images', '96', '--num_test', '32', '--device', 'cuda',
                                              '--out', out])
    assert e.value.code == 2
    assert '--device cuda but no CUDA device is available' in capsys.readouterr().err
    assert not os.path.exists(out + '.md')


def test_tensorboard_scalars_mirror_the_json_lines(tmp_path, cifar10_dir, capsys):
    pytest.importorskip('tensorboard')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ck, board = str(tmp_path / 'ck'), str(tmp_path / 'tb')
    assert cli.run_main(Train_cifar.main, ['--data_path', cifar10_dir, '--num_epochs', '2', '--warm_up', '1',
                                          '--arch', 'cnn', '--width', '4', '--batch_size', '16', '--checkpoint_dir', ck,
                                          '--tensorboard', board]) is not None
    events = EventAccumulator(os.path.join(board, 'cifar10_0.5_sym'))  # one folder per run
    events.Reload()
    records = [json.loads(l) for l in open(os.path.join(ck, 'cifar10_0.5_sym_log.jsonl'))]
    epochs = [r for r in records if 'epoch' in r]

    def scalars(tag):
        return [(e.step, e.value) for e in events.Scalars(tag)]
    assert scalars('test_acc') == [(r['epoch'], pytest.approx(r['test_acc'])) for r in epochs]
    assert scalars('Lx1') == [(r['epoch'], pytest.approx(r['Lx1'])) for r in epochs if 'Lx1' in r]
    assert scalars('loss2') == [(0, pytest.approx(epochs[0]['loss2']))]
    assert scalars('summary/mean_last10') == [(2, pytest.approx(records[-1]['summary']['mean_last10']))]
    assert 'seconds' not in events.Tags()['scalars'] and 'epoch' not in events.Tags()['scalars']


def test_tensorboard_missing_is_a_usage_error(tmp_path, cifar10_dir, capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith('torch.utils.tensorboard') or name.startswith('tensorboard'):
            raise ImportError('No module named %r' % name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, '__import__', no_tensorboard)
    ck = tmp_path / 'ck'
    with pytest.raises(SystemExit) as e:
        cli.run_main(Train_cifar.main, ['--data_path', cifar10_dir, '--checkpoint_dir', str(ck), '--tensorboard',
                                        str(tmp_path / 'tb')])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert '--tensorboard needs the tensorboard package' in err and 'pip install tensorboard' in err
    assert not ck.exists() and not (tmp_path / 'tb').exists()  # refused before anything was written


def test_readme_epoch_loop_runs_as_written(tmp_path, monkeypatch, capsys):
    from conftest import ROOT
    text = open(os.path.join(ROOT, 'README.md')).read()
    section = text[text.index('## Using the pieces in your own code'):]
    section = section[:section.index('\n## ', 5)]
    code = section.split('```python\n', 1)[1].split('```', 1)[0]
    # run as written, in this process (the project on sys.path, as PYTHONPATH would put it)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(tmp_path / 'loop.py'), 'exec'), {'__name__': '__main__'})
    out = capsys.readouterr().out.splitlines()
    assert [l.split()[0] for l in out] == ['0', '1', '2']
    assert "'loss1'" in out[0] and "'Lx1'" in out[1] and 'test accuracy' in out[2]


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason='Debian dataset-fashion-mnist not installed (%s)' % FASHION_DIR)
def test_label_issues_evaluation_at_toy_scale(tmp_path, capsys):
    """label_issues_eval.py's own path (PNG folders with injected noise, DivideMix's report, the CE
    baseline, cleanlab when installed) on 200 real Fashion-MNIST images."""
    import label_issues_eval
    text = label_issues_eval.main(['--out', str(tmp_path), '--n_train', '200', '--n_test', '100', '--num_epochs',
                                   '1', '--warm_up', '1', '--lr_decay_epoch', '1', '--folds', '2', '--width', '4',
                                   '--settings', 'asym:0.4'])
    assert '### asym noise, r = 0.4' in text and '| DivideMix (label report) | ' in text
    assert '| cross-entropy disagrees with the label | ' in text and '| cleanlab find_label_issues' in text
    pngs = [f for _, _, fs in os.walk(str(tmp_path / 'asym_0.4' / 'fashion_png' / 'train')) for f in fs]
    assert len(pngs) == 200


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason='Debian dataset-fashion-mnist not installed (%s)' % FASHION_DIR)
def test_r_auto_evaluation_at_toy_scale(tmp_path, capsys):
    """r_auto_eval.py's own path (a PNG folder with injected noise, Train_folder.py with --r auto and with
    the true rate) on 100 real Fashion-MNIST images: the table's row matches the pair's record, and a
    pair with the same settings is the same run."""
    import json
    import r_auto_eval
    text = r_auto_eval.main(['--out', str(tmp_path), '--n_train', '100', '--n_test', '50', '--num_epochs', '2',
                             '--warm_up', '1', '--lr_decay_epoch', '2', '--width', '4', '--seeds', '1',
                             '--settings', 'sym:0.5'])
    with open(str(tmp_path / 'r_auto_eval.jsonl')) as f:
        rec = json.loads(f.read())
    auto, given = rec['auto'], rec['given']
    assert 0 < rec['true_rate'] < 1 and 0 < auto['r_estimate'] < 1 and given['r_estimate'] is None
    assert rec['same_run'] == rec['same_settings'] == ((auto['lambda_u'], auto['p_threshold'])
                                                       == (given['lambda_u'], given['p_threshold']))
    if rec['same_settings']:  # the estimate draws nothing: the same settings make the same run
        assert auto['mean_last10'] == given['mean_last10']
    assert '| sym 50%% | 1 | %.3f | %.3f | %+.3f |' % (rec['true_rate'], auto['r_estimate'],
                                                     auto['r_estimate'] - rec['true_rate']) in text


# ---------------------------------------------------------------- strict JSON outputs

def test_json_outputs_are_strict_json_where_a_value_is_undefined(tmp_path, cifar10_dir, capsys):
    """A run without a noisy sample (--r 0: the division's AUC and precision have no noisy class to
    rank) and a folder run without a test split (no accuracy to summarise) used to write NaN, which
    RFC 8259 does not have and JavaScript's JSON.parse refuses: every JSON file and line is strict now,
    the undefined values null."""
    from conftest import assert_strict_json
    from tiny_data import make_image_folder
    import Train_folder
    ck = str(tmp_path / 'cifar')
    cli.run_main(Train_cifar.main, ['--data_path', cifar10_dir, '--r', '0', '--num_epochs', '1', '--warm_up', '1',
                                    '--noise_file', str(tmp_path / 'n.json'), '--checkpoint_dir', ck, '--width', '4',
                                    '--batch_size', '16', '--num_workers', '0'])
    parsed = assert_strict_json(ck)
    epoch1 = [r for r in parsed['cifar10_0.0_sym_log.jsonl'] if r.get('epoch') == 1][0]
    assert epoch1['auc1'] is None and epoch1['auc2'] is None and epoch1['labeled1'] > 0
    root = str(tmp_path / 'data')
    make_image_folder(root, per_class=4, n_test=1)
    import shutil
    shutil.rmtree(os.path.join(root, 'test'))
    ck = str(tmp_path / 'folder')
    cli.run_main(Train_folder.main, ['--data_path', root, '--num_epochs', '0', '--width', '4', '--batch_size', '4',
                                     '--checkpoint_dir', ck])
    summary = assert_strict_json(ck)['data_summary.json']
    assert summary['best'] is None and summary['last'] is None and summary['epochs'] == 0
    # and what reads them takes null where earlier versions wrote NaN
    import math
    assert math.isnan(results.last_auc(os.path.join(str(tmp_path / 'cifar'), 'cifar10_0.0_sym_log.jsonl')))
    old = tmp_path / 'old_log.jsonl'
    old.write_text('{"epoch": 0, "test_acc": NaN, "auc1": NaN, "auc2": 0.5}\n'
                   '{"epoch": 1, "test_acc": null, "auc1": null, "auc2": 0.5}\n')
    assert math.isnan(results.last_auc(str(old)))
    assert [math.isnan(a) for _, a in plots.read_acc(str(tmp_path / 'old'))] == [True, True]
