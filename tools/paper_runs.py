"""The command for every cell of the paper's CIFAR table (DivideMix, Table 1), with its settings.

    python paper_runs.py                                  # print the commands
    python paper_runs.py --cifar10 DIR --cifar100 DIR --markdown
    python paper_runs.py --seed 1 | bash                  # run them all, one after another

Each command passes lambda_u and p_threshold explicitly (they are also the defaults that
Train_cifar.py picks for these cells) and everything else at the reference's defaults
(300 epochs + 1, lr 0.02 -> 0.002 at epoch 150, warm-up 10 / 30 epochs).
"""
import argparse

import os
import sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's root

from dividemix_run import paper


def commands(cifar10, cifar100, seed=None, extra=''):
    out = []
    for (dataset, mode, r), (lambda_u, p_threshold) in sorted(paper.SETTINGS.items()):
        path = cifar10 if dataset == 'cifar10' else cifar100
        cmd = ('python Train_cifar.py --dataset %s --data_path %s --noise_mode %s --r %.1f --lambda_u %g '
               '--p_threshold %g' % (dataset, path, mode, r, lambda_u, p_threshold))
        if seed is not None:
            cmd += ' --seed %d --id seed%d' % (seed, seed)
        if extra:
            cmd += ' ' + extra
        best, last = paper.RESULTS[(dataset, mode, r)]
        out.append(((dataset, mode, r, lambda_u, p_threshold, best, last), cmd))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--cifar10', default='./cifar-10-batches-py', help='CIFAR-10 folder (python version)')
    p.add_argument('--cifar100', default='./cifar-100-python', help='CIFAR-100 folder (python version)')
    p.add_argument('--seed', type=int, default=None, help='add --seed N --id seedN to every command')
    p.add_argument('--extra', default='', help='flags appended to every command, e.g. "--precision bf16"')
    p.add_argument('--markdown', action='store_true', help='a Markdown table instead of bare commands')
    args = p.parse_args(argv)
    rows = commands(args.cifar10, args.cifar100, args.seed, args.extra)
    if args.markdown:
        print('| dataset | noise | lambda_u | p_threshold | paper best / last | command |')
        print('| --- | --- | --- | --- | --- | --- |')
        for (dataset, mode, r, lam, pth, best, last), cmd in rows:
            print('| %s | %s %.0f%% | %g | %g | %.1f / %.1f | `%s` |' % (dataset, mode, 100 * r, lam, pth, best, last, cmd))
    else:
        for _, cmd in rows:
            print(cmd)


if __name__ == '__main__':
    main()
