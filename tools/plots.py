"""Plots of DivideMix runs (matplotlib, an optional dependency: pip install matplotlib).

    python plots.py acc checkpoint/cifar10_0.5_sym checkpoint/cifar10_0.5_sym_ce --out acc.png
    python plots.py division checkpoint/cifar10_0.5_sym --out division.png
    python plots.py losses checkpoint/cifar10_0.5_sym_losses_ep010.npz ..._ep100.npz --out losses.png

acc:      test accuracy per epoch, one line per run (a run is its log stem: the path
          without '_acc.txt'; the reference's text logs work too).
division: labeled-set size and AUC of each net's division per epoch (from _log.jsonl).
losses:   the paper's picture: histogram of the normalised per-sample loss, truly clean
          vs noisy samples, with the fitted two-component GMM drawn over it, one panel
          per saved epoch (Train_cifar.py --dump_losses EPOCHS writes the .npz files).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's root

import numpy as np

from dividemix_run.logs import number  # null (NaN in earlier logs) -> NaN
from results import by_epoch, read_jsonl, read_lines, warn

COLORS = {'clean': '#2a7ab9', 'noisy': '#e4572e', 'net1': '#2a7ab9', 'net2': '#e4572e'}


def pyplot():
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        fail('plots need matplotlib: pip install matplotlib')
    plt.rcParams.update({'font.size': 10, 'axes.spines.top': False, 'axes.spines.right': False,
                         'axes.grid': True, 'grid.alpha': 0.3})
    return plt


def epoch_axis(ax, n_points):
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return {'marker': 'o', 'ms': 3} if n_points <= 40 else {}


def fail(message):
    """An error the user can fix: the message, exit status 2."""
    print('error: %s' % message, file=sys.stderr)
    raise SystemExit(2)


def read_acc(stem):
    """[(epoch, accuracy)] from '<stem>_acc.txt' (CIFAR format) or '<stem>_log.jsonl' (an epoch logged twice:
    its last line); [] for a run that has none (no test split)."""
    path = stem if stem.endswith('.txt') else stem + '_acc.txt'
    if os.path.exists(path):
        out = []
        for line in read_lines(path) or []:
            parts = line.split()
            if len(parts) == 2 and parts[0].startswith('Epoch:') and parts[1].startswith('Accuracy:'):
                out.append((int(parts[0][6:]), float(parts[1][9:])))
        if out:
            return list(zip(sorted({e for e, _ in out}), by_epoch(path, out)))
    jsonl = stem + '_log.jsonl'
    if os.path.exists(jsonl):
        out = [(r['epoch'], number(r['test_acc'])) for r in read_jsonl(jsonl) if 'test_acc' in r and 'epoch' in r]
        return list(zip(sorted({e for e, _ in out}), by_epoch(jsonl, out)))
    fail('no accuracy log for run %s (looked for %s and %s)' % (stem, path, jsonl))


def plot_acc(stems, out, labels=None):
    runs = []
    for i, stem in enumerate(stems):
        points = read_acc(stem)
        if points:
            runs.append((points, labels[i] if labels else os.path.basename(stem.rstrip('/'))))
        else:
            warn('run %s has no test accuracy (a run without a test or val split?): left out of the plot' % stem)
    if not runs:
        fail('none of the runs has a test accuracy to plot')
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for points, label in runs:
        ep, acc = zip(*points)
        ax.plot(ep, acc, lw=1.6, label=label, **epoch_axis(ax, len(ep)))
    ax.set_xlabel('epoch')
    ax.set_ylabel('test accuracy (%)')
    ax.set_title('Test accuracy (ensemble of both nets)')
    ax.legend(frameon=False)
    fig.tight_layout()
    save(fig, out)
    return out


def save(fig, out):
    try:
        fig.savefig(out, dpi=150)
    except OSError as e:
        fail('cannot write --out %s (%s): pass a writable path' % (out, e.strerror or e))


def plot_division(stem, out):
    """Labeled-set size per epoch, and the AUC of the clean probability against the truly clean samples
    where the run knew them (CIFAR's injected noise; a run on your own data does not: sizes only)."""
    path = stem + '_log.jsonl'
    if not os.path.exists(path):
        fail('%s not found (division plots need the JSON log of a training run)' % path)
    recs = [r for r in read_jsonl(path) if 'labeled1' in r and 'epoch' in r]
    if not recs:
        fail('%s has no epoch with a division (all warm-up? use --track_division)' % path)
    with_auc = all('auc1' in r for r in recs)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if with_auc else 1, figsize=(10 if with_auc else 5.4, 3.8), squeeze=False)
    a1 = axes[0][0]
    ep = [r['epoch'] for r in recs]
    style = epoch_axis(a1, len(ep))
    for k in (1, 2):
        a1.plot(ep, [r['labeled%d' % k] for r in recs], lw=1.6, color=COLORS['net%d' % k],
                label='division by net%d' % k, **style)
    a1.set_title('Labeled-set size' + ('' if with_auc else ' (no AUC: the truly clean labels are not known)'))
    a1.set_xlabel('epoch')
    a1.set_ylabel('samples')
    if with_auc:
        a2 = axes[0][1]
        epoch_axis(a2, len(ep))
        for k in (1, 2):
            a2.plot(ep, [number(r['auc%d' % k]) for r in recs], lw=1.6, color=COLORS['net%d' % k],
                    label='division by net%d' % k, **style)
        a2.set_title('AUC of the clean probability (vs truly clean)')
        a2.set_xlabel('epoch')
        a2.set_ylabel('ROC AUC')
    for a in axes[0]:
        a.legend(frameon=False)
    fig.suptitle(os.path.basename(stem))
    fig.tight_layout()
    save(fig, out)
    return out


def gaussian(x, mean, var):
    return np.exp(-(x - mean) ** 2 / (2 * var)) / np.sqrt(2 * np.pi * var)


def plot_losses(files, out, net=1):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(files), figsize=(4.2 * len(files), 3.6), squeeze=False)
    for ax, path in zip(axes[0], files):
        try:
            d = np.load(path)
            loss, clean = d['input_loss%d' % net], d['clean'].astype(bool)
        except (OSError, ValueError, KeyError) as e:
            fail('%s is no loss file of Train_cifar.py --dump_losses (%s)' % (path, str(e).splitlines()[0][:120]))
        bins = np.linspace(0, 1, 51)
        ax.hist(loss[clean], bins=bins, density=False, alpha=0.65, color=COLORS['clean'],
                label='clean (%d)' % clean.sum())
        ax.hist(loss[~clean], bins=bins, density=False, alpha=0.65, color=COLORS['noisy'],
                label='noisy (%d)' % (~clean).sum())
        x = np.linspace(0, 1, 400)
        scale = len(loss) * (bins[1] - bins[0])  # densities -> expected counts per bin
        means, variances, weights = d['means%d' % net], d['variances%d' % net], d['weights%d' % net]
        order = np.argsort(means)
        total = np.zeros_like(x)
        for rank, c in enumerate(order):
            comp = weights[c] * gaussian(x, means[c], variances[c]) * scale
            total += comp
            ax.plot(x, comp, lw=1.4, ls='--', color='k' if rank == 0 else '0.45',
                    label='GMM %s component' % ('clean (low-loss)' if rank == 0 else 'noisy'))
        ax.plot(x, total, lw=1.2, color='k', alpha=0.5, label='GMM mixture')
        ax.set_ylim(0, max(np.histogram(loss, bins)[0].max(), 1) * 1.15)
        ax.set_xlabel('normalised loss')
        ax.set_ylabel('samples')
        ax.set_title('epoch %d, net%d' % (int(d['epoch']), net))
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    save(fig, out)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    a = sub.add_parser('acc', help='test accuracy per epoch of one or several runs')
    a.add_argument('runs', nargs='+', help='run stems, e.g. checkpoint/cifar10_0.5_sym')
    a.add_argument('--labels', nargs='*', default=None)
    a.add_argument('--out', default='acc.png')
    d = sub.add_parser('division', help='labeled-set size and AUC per epoch')
    d.add_argument('run')
    d.add_argument('--out', default='division.png')
    l = sub.add_parser('losses', help='loss histogram, clean vs noisy, with the fitted GMM')
    l.add_argument('files', nargs='+', help='_losses_epNNN.npz files from --dump_losses')
    l.add_argument('--net', type=int, default=1, choices=[1, 2])
    l.add_argument('--out', default='losses.png')
    args = p.parse_args(argv)
    if args.cmd == 'acc':
        if args.labels and len(args.labels) != len(args.runs):
            p.error('give one label per run')
        path = plot_acc(args.runs, args.out, args.labels)
    elif args.cmd == 'division':
        path = plot_division(args.run, args.out)
    else:
        missing = [f for f in args.files if not os.path.exists(f)]
        if missing:
            p.error('no such file: %s' % ', '.join(missing))
        path = plot_losses(args.files, args.out, args.net)
    print('wrote %s' % path)


if __name__ == '__main__':
    from dividemix_run.logs import quiet_streams
    with quiet_streams():
        main()
