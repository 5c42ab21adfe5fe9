"""How well does the label report find wrong labels? Fashion-MNIST written out as PNG folders with
injected noise, then three ways to flag the corrupted samples, on the same images:

    DivideMix         Train_folder.py: flagged = the two nets' mean clean probability < p_threshold
    cleanlab          cleanlab.filter.find_label_issues on out-of-fold predicted probabilities of a
                      cross-entropy model of the same architecture, data and epochs (K folds)
    CE disagrees      Train_folder.py --method ce: flagged = the cross-entropy model's prediction
                      differs from the given label (the trivial baseline)

    python label_issues_eval.py                          # 50% sym and 40% asym, the scale of RESULTS.md
    python label_issues_eval.py --n_train 1000 --num_epochs 4 --warm_up 2 --settings sym:0.5

Precision, recall and F1 of the flagged set against the truly corrupted samples, and the test
accuracy of each model. cleanlab is optional (pip install cleanlab): without it, its rows are left
out with a note. The noise, subset and seed are shared by every method.
"""
import argparse
import os
import random
import time

import sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's root

import numpy as np
import torch

import dataloader_cifar
import dataloader_folder
import dividemix as dm
from dividemix_run import logs
import Train_folder
from dividemix_run.checkpoints import seed_everything
from dividemix_run.cli import UsageError, run_main
from dividemix_run.data_sources import DeviceSource
from SmallCNN import SmallCNN

CLASSES = ('t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle-boot')


def write_folder(root, fashion, n_train, n_test, mode, r, seed):
    """root/train/<class>/<i>.png with noisy labels, root/test/<class>/<i>.png clean. Returns
    {relative path: (given label, true label)} for the training images."""
    raw = dataloader_cifar.take_subset(dataloader_cifar.load_fashionmnist(fashion), n_train, n_test)
    noisy = dataloader_cifar.inject_noise(raw['train_label'], r, mode, 10, rng=random.Random(seed),
                                          dataset='fashionmnist')
    from PIL import Image
    truth = {}
    for split, images, labels in (('train', raw['train_data'], noisy), ('test', raw['test_data'], raw['test_label'])):
        for c in CLASSES:
            os.makedirs(os.path.join(root, split, c), exist_ok=True)
        for i, (img, label) in enumerate(zip(images, labels)):
            rel = os.path.join(split, CLASSES[int(label)], '%05d.png' % i)
            Image.fromarray(img[..., 0]).save(os.path.join(root, rel))
            if split == 'train':
                truth[rel] = (int(label), int(raw['train_label'][i]))
    return truth


def scores(flagged, corrupted):
    flagged, corrupted = np.asarray(flagged, bool), np.asarray(corrupted, bool)
    tp = int((flagged & corrupted).sum())
    precision = tp / flagged.sum() if flagged.any() else float('nan')
    recall = tp / corrupted.sum() if corrupted.any() else float('nan')
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else float('nan')
    return {'flagged': int(flagged.sum()), 'precision': precision, 'recall': recall, 'f1': f1}


def train_folder(args, root, out, method, r):
    argv = ['--data_path', root, '--checkpoint_dir', out, '--id', method, '--method', method, '--r', str(r),
            '--arch', 'cnn', '--width', str(args.width), '--augment', args.augment, '--num_epochs',
            str(args.num_epochs), '--warm_up', str(args.warm_up), '--lr_decay_epoch', str(args.lr_decay_epoch),
            '--batch_size', '64', '--seed', str(args.seed), '--device', 'cpu', '--overwrite', '--log_every', '50']
    t0 = time.time()
    summary = Train_folder.main(argv)
    stem = os.path.join(out, method)
    import csv
    with open(stem + '_label_issues.csv') as f:
        rows = list(csv.DictReader(f))
    return rows, summary, time.time() - t0


def out_of_fold_probs(args, root, folds):
    """Predicted probabilities of every training sample from cross-entropy models that did not see it:
    for each of `folds` folds, two SmallCNNs trained with cross-entropy on the other folds (what
    Train_folder.py --method ce trains: same net, data, epochs, schedule), their mean softmax."""
    data = dataloader_folder.scan(root)
    paths, labels = data.splits['train']
    images = dataloader_folder.load_images(paths, 28, 1)
    mean, std = dataloader_folder.channel_stats(images)
    fold_of = np.random.RandomState(args.seed).permutation(len(paths)) % folds
    probs = np.zeros((len(paths), 10))
    for k in range(folds):
        train, held = np.nonzero(fold_of != k)[0], np.nonzero(fold_of == k)[0]
        seed_everything(args.seed + k)
        nets = [SmallCNN(num_classes=10, in_channels=1, width=args.width, image_size=28) for _ in range(2)]
        optimizers = [torch.optim.SGD(n.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4) for n in nets]
        source = DeviceSource(images[train], labels[train], images[held], labels[held], mean, std, 64, 'cpu',
                              seed=args.seed + k, crop_flip=args.augment == 'crop_flip')
        cfg = dm.Config(num_class=10, warm_up=args.num_epochs + 1, batch_size=64)
        for epoch in range(args.num_epochs + 1):
            dm.set_lr(optimizers, dm.learning_rate(epoch, 0.02, args.lr_decay_epoch))
            dm.warmup(nets, optimizers, source, cfg, epoch=epoch)
        held_source = DeviceSource(images[held], labels[held], images[:1], labels[:1], mean, std, 64, 'cpu')
        with torch.no_grad():
            for net in nets:
                net.eval()
            for x, _, idx in held_source.eval_batches():
                p = sum(torch.softmax(net(x), dim=1) for net in nets) / 2
                probs[held[idx.numpy()]] = p.numpy()
        print('| cleanlab: fold %d of %d done' % (k + 1, folds), flush=True)
    return paths, labels, probs


def evaluate(args, mode, r):
    out = os.path.join(args.out, '%s_%.1f' % (mode, r))
    root = os.path.join(out, 'fashion_png')
    truth = write_folder(root, args.data_path, args.n_train, args.n_test, mode, r, args.seed)
    realised = np.mean([g != t for g, t in truth.values()])
    print('| %s %.0f%%: %d training PNGs, %.1f%% of their labels wrong; %d test PNGs'
          % (mode, 100 * r, len(truth), 100 * realised, args.n_test), flush=True)
    rows = []
    dmx, dmx_summary, dmx_s = train_folder(args, root, out, 'dividemix', r)
    corrupted = lambda rs: [truth[os.path.relpath(x['path'], root)][0] != truth[os.path.relpath(x['path'], root)][1]
                            for x in rs]
    rows.append(('DivideMix (label report)', scores([int(x['flagged']) for x in dmx], corrupted(dmx)), dmx_summary,
                 dmx_s))
    ce, ce_summary, ce_s = train_folder(args, root, out, 'ce', r)
    rows.append(('cross-entropy disagrees with the label', scores(
        [x['predicted_label'] != x['given_label'] for x in ce], corrupted(ce)), ce_summary, ce_s))
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        rows.append(('cleanlab find_label_issues (not installed: pip install cleanlab)', None, None, 0))
    else:
        t0 = time.time()
        paths, labels, probs = out_of_fold_probs(args, root, args.folds)
        issues = find_label_issues(labels=labels, pred_probs=probs)
        flags = [truth[os.path.relpath(p, root)][0] != truth[os.path.relpath(p, root)][1] for p in paths]
        rows.append(('cleanlab find_label_issues, %d-fold out-of-fold CE' % args.folds, scores(issues, flags),
                     ce_summary, time.time() - t0))
    return realised, rows


def table(mode, r, realised, rows):
    out = ['### %s noise, r = %.1f (%.1f%% of the training labels wrong)' % (mode, r, 100 * realised), '',
           '| method | flagged | precision | recall | F1 | test accuracy of its model (last / mean of last 10) | '
           'seconds |', '| --- | --- | --- | --- | --- | --- | --- |']
    for name, sc, summary, seconds in rows:
        if sc is None:
            out.append('| %s | - | - | - | - | - | - |' % name)
            continue
        acc = '%.2f / %.2f' % (summary['last'], summary['mean_last10']) if summary else '-'
        if name.startswith('cleanlab'):
            acc += ' (the CE model above)'
        out.append('| %s | %d | %.3f | %.3f | %.3f | %s | %.0f |' % (name, sc['flagged'], sc['precision'],
                                                                      sc['recall'], sc['f1'], acc, seconds))
    return '\n'.join(out)


def add_scale_args(p, *, out, n_train, n_test, settings):
    """The flags of the Fashion-MNIST PNG-folder experiments (this one and r_auto_eval.py): data, scale,
    noise settings, and Train_folder.py's SmallCNN schedule."""
    p.add_argument('--data_path', default='/usr/share/datasets/fashion-mnist', help='Fashion-MNIST IDX files')
    p.add_argument('--out', default=out, help='where the PNG folders and runs go')
    p.add_argument('--n_train', type=int, default=n_train)
    p.add_argument('--n_test', type=int, default=n_test)
    p.add_argument('--settings', default=settings, help='noise mode:r pairs')
    p.add_argument('--num_epochs', type=int, default=20)
    p.add_argument('--warm_up', type=int, default=4)
    p.add_argument('--lr_decay_epoch', type=int, default=15)
    p.add_argument('--width', type=int, default=16, help='SmallCNN width')
    p.add_argument('--augment', default='none', choices=['none', 'crop_flip'])
    return p


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_scale_args(p, out='label_issues_eval', n_train=4000, n_test=2000, settings='sym:0.5,asym:0.4')
    p.add_argument('--folds', type=int, default=4, help='folds of the out-of-fold probabilities for cleanlab')
    p.add_argument('--seed', type=int, default=123)
    args = p.parse_args(argv)
    if dataloader_cifar.find_idx_folder(args.data_path) is None:
        raise UsageError('no Fashion-MNIST IDX files in %s: apt-get install dataset-fashion-mnist, or pass '
                         '--data_path' % args.data_path)
    tables = []
    for item in args.settings.split(','):
        mode, r = item.split(':')
        realised, rows = evaluate(args, mode, float(r))
        tables.append(table(mode, float(r), realised, rows))
        print('\n' + tables[-1] + '\n', flush=True)
    header = ('Fashion-MNIST as PNG folders: %d training images, %d test images; SmallCNN width %d, augmentation '
              '%s, %d epochs (%d warm-up), lr 0.02 -> 0.002 at epoch %d, batch 64, seed %d; torch %s, CPU'
              % (args.n_train, args.n_test, args.width, args.augment, args.num_epochs + 1, args.warm_up,
                 args.lr_decay_epoch, args.seed, torch.__version__))
    text = header + '\n\n' + '\n\n'.join(tables) + '\n'
    with open(os.path.join(args.out, 'label_issues_eval.md'), 'w') as f:
        f.write(text)
    with open(os.path.join(args.out, 'label_issues_eval.json'), 'w') as f:
        logs.dump({'args': vars(args), 'tables': tables}, f, indent=1)
    print(text)
    return text


if __name__ == '__main__':
    run_main(main)
