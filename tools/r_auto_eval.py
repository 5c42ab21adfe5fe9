"""How good is --r auto? Fashion-MNIST written out as PNG folders with injected noise; for each noise
setting and seed, Train_folder.py twice on the same folder: with --r auto (the noise rate estimated
at the first co-divide) and with --r given the true fraction of wrong labels.

    python tools/r_auto_eval.py --out r_auto_eval                      # the scale of docs/RESULTS.md
    python tools/r_auto_eval.py --out r_auto_eval --seeds 1 --settings sym:0.5 --n_train 500 --num_epochs 6

Each pair is appended to <out>/r_auto_eval.jsonl as it ends (several instances may share an --out,
e.g. one per seed on a machine with cores to spare); the table of every pair there is printed and
written to <out>/r_auto_eval.md. When the estimate lands in the paper-table cell of the true rate,
both runs get the same lambda_u and p_threshold and are the same run, bit for bit (the estimate draws
no random number); the table says so.
"""
import argparse
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's root
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import torch

import dataloader_cifar
import Train_folder
from dividemix_run import logs
from dividemix_run.cli import UsageError, run_main
from label_issues_eval import add_scale_args, write_folder


def train(args, root, out, run_id, r, seed):
    argv = ['--data_path', root, '--checkpoint_dir', out, '--id', run_id, '--r', str(r), '--arch', 'cnn', '--width',
            str(args.width), '--augment', args.augment, '--num_epochs', str(args.num_epochs), '--warm_up',
            str(args.warm_up), '--lr_decay_epoch', str(args.lr_decay_epoch), '--batch_size', '64', '--seed', str(seed),
            '--device', 'cpu', '--overwrite', '--log_every', '50']
    t0 = time.time()
    summary = Train_folder.main(argv)
    with open(os.path.join(out, run_id + '_settings.json')) as f:
        settings = json.load(f)
    with open(os.path.join(out, run_id + '_acc.txt')) as f:
        acc_text = f.read()
    return {'last': summary['last'], 'mean_last10': summary['mean_last10'], 'best': summary['best'],
            'lambda_u': settings['lambda_u'], 'p_threshold': settings['p_threshold'],
            'r_estimate': settings.get('r_estimate'), 'seconds': round(time.time() - t0, 1),
            'acc_digest': hashlib.sha256(acc_text.encode()).hexdigest()}


def pair(args, mode, r, seed):
    out = os.path.join(args.out, '%s_%.1f_s%d' % (mode, r, seed))
    root = os.path.join(out, 'fashion_png')
    truth = write_folder(root, args.data_path, args.n_train, args.n_test, mode, r, seed)
    true_rate = float(np.mean([g != t for g, t in truth.values()]))
    print('| %s %.0f%%, seed %d: %d training PNGs, %.2f%% of their labels wrong' % (mode, 100 * r, seed, len(truth),
                                                                                  100 * true_rate), flush=True)
    auto = train(args, root, out, 'auto', 'auto', seed)
    given = train(args, root, out, 'given', round(true_rate, 4), seed)
    same = (auto['lambda_u'], auto['p_threshold']) == (given['lambda_u'], given['p_threshold'])
    record = {'mode': mode, 'r': r, 'seed': seed, 'true_rate': true_rate, 'auto': auto, 'given': given,
              'same_settings': same, 'same_run': same and auto['acc_digest'] == given['acc_digest']}
    with open(os.path.join(args.out, 'r_auto_eval.jsonl'), 'a') as f:
        f.write(logs.dumps(record) + '\n')
    return record


def table(records, header):
    lines = [header, '',
             '| noise | seed | true rate | estimate | error | settings (auto / given) | test acc auto: last, mean last 10 '
             '| test acc given: last, mean last 10 | same run |', '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    key = lambda rec: (rec['mode'] != 'sym', rec['r'], rec['seed'])
    for rec in sorted(records, key=key):
        a, g = rec['auto'], rec['given']
        lines.append('| %s %.0f%% | %d | %.3f | %.3f | %+.3f | %g, %g / %g, %g | %.2f, %.2f | %.2f, %.2f | %s |' % (
            rec['mode'], 100 * rec['r'], rec['seed'], rec['true_rate'], a['r_estimate'],
            a['r_estimate'] - rec['true_rate'], a['lambda_u'], a['p_threshold'], g['lambda_u'], g['p_threshold'],
            a['last'], a['mean_last10'], g['last'], g['mean_last10'],
            'yes' if rec['same_run'] else ('no' if not rec['same_settings'] else 'no (same settings!)')))
    lines += ['', '| noise | seeds | true rate (mean) | estimate: mean error ± s.d. | mean last 10: auto − given |',
              '| --- | --- | --- | --- | --- |']
    groups = {}
    for rec in records:
        groups.setdefault((rec['mode'], rec['r']), []).append(rec)
    for (mode, r), recs in sorted(groups.items(), key=lambda kv: (kv[0][0] != 'sym', kv[0][1])):
        err = np.array([x['auto']['r_estimate'] - x['true_rate'] for x in recs])
        diff = np.array([x['auto']['mean_last10'] - x['given']['mean_last10'] for x in recs])
        lines.append('| %s %.0f%% | %d | %.3f | %+.3f ± %.3f | %+.2f |' % (
            mode, 100 * r, len(recs), np.mean([x['true_rate'] for x in recs]), err.mean(),
            err.std(ddof=1) if len(err) > 1 else 0.0, diff.mean()))
    return '\n'.join(lines) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_scale_args(p, out='r_auto_eval', n_train=2000, n_test=1000, settings='sym:0.2,sym:0.5,sym:0.8,asym:0.4')
    p.add_argument('--seeds', default='1,2,3')
    p.add_argument('--report', action='store_true', help='only print the table of what <out> holds')
    args = p.parse_args(argv)
    if not args.report:
        if dataloader_cifar.find_idx_folder(args.data_path) is None:
            raise UsageError('no Fashion-MNIST IDX files in %s: apt-get install dataset-fashion-mnist, or pass '
                             '--data_path' % args.data_path)
        os.makedirs(args.out, exist_ok=True)
        for seed in [int(x) for x in args.seeds.split(',')]:
            for item in args.settings.split(','):
                mode, r = item.split(':')
                pair(args, mode, float(r), seed)
    path = os.path.join(args.out, 'r_auto_eval.jsonl')
    if not os.path.exists(path):
        raise UsageError('%s holds no results yet' % args.out)
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    header = ('Fashion-MNIST as PNG folders: %d training images, %d test images; Train_folder.py --arch cnn (SmallCNN '
              'width %d), augmentation %s, %d epochs (%d warm-up), lr 0.02 -> 0.002 at epoch %d, batch 64; torch %s, '
              'CPU' % (args.n_train, args.n_test, args.width, args.augment, args.num_epochs + 1, args.warm_up,
                       args.lr_decay_epoch, torch.__version__))
    text = table(records, header)
    with open(os.path.join(args.out, 'r_auto_eval.md'), 'w') as f:
        f.write(text)
    print(text)
    return text


if __name__ == '__main__':
    run_main(main)
