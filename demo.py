"""DivideMix against a cross-entropy baseline on real images (Fashion-MNIST), offline, on a CPU.

    python demo.py                      # finds Fashion-MNIST, runs both, prints the table
    python demo.py --data_path DIR      # IDX files (plain or .gz) from any folder

Both runs go through Train_cifar.py's own code path (--dataset fashionmnist) with the
same noisy labels, subset, network, epochs and seed; the baseline is --method ce (every
epoch a cross-entropy epoch). The demo scale (DEMO below; README and RESULTS.md say why)
is chosen so that both runs together take under 10 minutes on 2 CPU cores: 2,000
training images with 50% symmetric noise, SmallCNN, no crop/flip augmentation, 21 epochs.
"""
import argparse
import importlib.util
import json
import os
import sys
import time

import dataloader_cifar as dataloader
import Train_cifar
from dividemix_run.cli import UsageError, run_main
from dividemix_run.logs import number

DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'

# The demo scale: Fashion-MNIST subset, 50% symmetric noise, SmallCNN, no crop/flip augmentation
# (RESULTS.md says why: in minutes of CPU, only without augmentation does cross-entropy reach the
# memorisation of noisy labels that DivideMix exists to prevent).
DEMO = dict(train_subset=2000, test_subset=2000, r=0.5, noise_mode='sym', arch='cnn', width=16, augment='none',
            num_epochs=20, warm_up=4, lr_decay_epoch=15, batch_size=64, seed=123)


def find_fashionmnist(data_path=None, download=False):
    """A folder with the Fashion-MNIST IDX files: the one given, Debian's package folder, or
    torchvision's download (only with download=True). Raises UsageError saying how to get them."""
    if data_path:
        if dataloader.find_idx_folder(data_path) is None:
            raise UsageError('no Fashion-MNIST IDX files in %s: it must hold %s (plain or .gz)'
                             % (data_path, ', '.join(dataloader.FASHIONMNIST_FILES)))
        return data_path
    if dataloader.find_idx_folder(DEBIAN_DIR) is not None:
        return DEBIAN_DIR
    if download:
        target = os.path.join('demo_output', 'data')
        try:
            import torchvision
            torchvision.datasets.FashionMNIST(target, train=True, download=True)
            torchvision.datasets.FashionMNIST(target, train=False, download=True)
        except Exception as e:
            raise UsageError('downloading Fashion-MNIST failed (%s); install Debian\'s dataset-fashion-mnist '
                             '(apt-get install dataset-fashion-mnist) or pass --data_path' % e) from None
        return target
    raise UsageError('Fashion-MNIST not found: install Debian\'s package (apt-get install dataset-fashion-mnist, '
                     'files in %s), pass --data_path DIR with the IDX files, or --download to fetch them with '
                     'torchvision' % DEBIAN_DIR)


def train_args(method, data_path, out, scale, extra=()):
    args = ['--dataset', 'fashionmnist', '--data_path', data_path, '--checkpoint_dir', out, '--method', method,
            '--id', method, '--noise_file', os.path.join(out, 'noise_%.1f_%s_n%d.json' % (
                scale['r'], scale['noise_mode'], scale['train_subset'])), '--overwrite']
    for k in ('train_subset', 'test_subset', 'r', 'noise_mode', 'arch', 'width', 'augment', 'num_epochs', 'warm_up',
              'lr_decay_epoch', 'batch_size', 'seed'):
        args += ['--%s' % k, str(scale[k])]
    if method == 'ce':
        args.append('--track_division')  # the GMM the baseline's losses would give: AUC for the table
    return args + list(extra)


def read_run(out, scale, method):
    stem = os.path.join(out, 'fashionmnist_%.1f_%s_%s' % (scale['r'], scale['noise_mode'], method))
    records = [json.loads(l) for l in open(stem + '_log.jsonl')]
    epochs = [r for r in records if 'epoch' in r]
    summary = [r['summary'] for r in records if 'summary' in r][-1]
    aucs = [(number(r['auc1']) + number(r['auc2'])) / 2 for r in epochs if 'auc1' in r]
    return dict(summary, auc_last=aucs[-1] if aucs else float('nan'), seconds=sum(r['seconds'] for r in epochs))


def table(rows):
    out = ['| method | test acc best | test acc last | mean last 10 | labeled-set AUC (last epoch) | time |',
           '| --- | --- | --- | --- | --- | --- |']
    for name, r in rows:
        out.append('| %s | %.2f | %.2f | %.2f | %.3f | %.0f s |' % (name, r['best'], r['last'], r['mean_last10'],
                                                                    r['auc_last'], r['seconds']))
    return '\n'.join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data_path', default=None, help='folder with the Fashion-MNIST IDX files')
    p.add_argument('--download', action='store_true', help='fetch Fashion-MNIST with torchvision if not found')
    p.add_argument('--out', default='demo_output', help='where the runs\' logs go')
    for k, v in DEMO.items():
        p.add_argument('--' + k, type=type(v), default=v, help='demo scale (default %s)' % v)
    args, extra = p.parse_known_args(argv)
    scale = {k: getattr(args, k) for k in DEMO}
    data_path = find_fashionmnist(args.data_path, args.download)
    print('| Fashion-MNIST from %s; demo scale: %s' % (data_path, ', '.join('%s=%s' % kv for kv in scale.items())))
    t0 = time.time()
    rows = []
    for method, title in (('dividemix', 'DivideMix'), ('ce', 'cross-entropy')):
        print('\n===== %s =====' % title, flush=True)
        Train_cifar.main(train_args(method, data_path, args.out, scale, extra))
        rows.append((title, read_run(args.out, scale, method)))
    md = table(rows)
    net = ('PreResNet-18 width %d' if scale['arch'] == 'preresnet18' else 'SmallCNN width %d') % scale['width']
    header = ('Fashion-MNIST, %d training images with %.0f%% %s noise, %d test images, %s, augmentation %s, '
              '%d epochs (%d warm-up); %.0f s in all'
              % (scale['train_subset'], 100 * scale['r'], scale['noise_mode'], scale['test_subset'], net,
                 scale['augment'], scale['num_epochs'] + 1, scale['warm_up'], time.time() - t0))
    print('\n' + header + '\n\n' + md)
    with open(os.path.join(args.out, 'demo_table.md'), 'w') as f:
        f.write(header + '\n\n' + md + '\n')
    plot_curves(args.out, scale)
    return rows


def plot_curves(out, scale):
    """Test accuracy per epoch of both runs in <out>/demo_acc.png, when matplotlib is installed."""
    if importlib.util.find_spec('matplotlib') is None:
        print('| (pip install matplotlib for a plot of both runs\' test accuracy per epoch)')
        return
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tools'))  # plots.py lives there
    import plots
    stem = os.path.join(out, 'fashionmnist_%.1f_%s_' % (scale['r'], scale['noise_mode']))
    path = os.path.join(out, 'demo_acc.png')
    plots.plot_acc([stem + 'dividemix', stem + 'ce'], path, labels=['DivideMix', 'cross-entropy'])
    print('| test accuracy per epoch of both runs: %s' % path)


if __name__ == '__main__':
    run_main(main, data_errors=(dataloader.DatasetError,))
