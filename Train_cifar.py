"""DivideMix on CIFAR-10 / CIFAR-100 (and Fashion-MNIST).

    python Train_cifar.py --data_path ./cifar-10-batches-py --r 0.5 --noise_mode sym

The reference's flags, defaults, noise files and log lines; the algorithm lives in
dividemix.py, the data in dataloader_cifar.py / device_data.py, and this script only
wires them together (see README.md for every flag and each deviation).
"""
import argparse
import json
import os
import sys
import time
from collections import deque

import numpy as np
import torch
import torch.optim as optim

import dataloader_cifar as dataloader
import dividemix as dm
import paper
from device_data import DevicePipeline
from PreResNet import ResNet18
from SmallCNN import SmallCNN
from train_utils import (LoaderPipeline, Runtime, UsageError, add_reference_args, add_runtime_args, atomic_save,
                         begin_epoch, check_common_args, check_output_dir, check_range, checkpoint_state, digest,
                         prepare_run, print_settings, resume_nets, run_main, seed_everything, set_rng_state, summarize,
                         train_on_divisions, warmup_nets)

WARM_UP = {'cifar10': 10, 'cifar100': 30, 'fashionmnist': 10}


def build_parser():
    p = argparse.ArgumentParser(description='DivideMix on CIFAR-10/100 (and Fashion-MNIST)')
    # --- the reference's flags (same names, meanings, defaults) ---
    add_reference_args(p, batch_size=64, lr=0.02, alpha=4, lambda_u=None, p_threshold=None, num_epochs=300, id='',
                       num_class=None, data_path='./cifar-10',
                       lambda_u_help="weight for unsupervised loss (default: the paper's setting for this run)",
                       p_threshold_help="clean probability threshold (default: the paper's setting for this run)")
    p.add_argument('--noise_mode', default='sym', choices=dataloader.NOISE_MODES,
                   help='sym, asym (reference); asym_blocks, pairflip, instance; CIFAR-N: aggre, worst, '
                        'rand1, rand2, rand3 (CIFAR-10N), noisy100 (CIFAR-100N)')
    p.add_argument('--r', default=0.5, type=float, help='noise ratio')
    p.add_argument('--dataset', default='cifar10', choices=list(dataloader.DATASETS))
    # --- added ---
    g = p.add_argument_group('added (not in the reference)')
    g.add_argument('--warm_up', default=None, type=int, help='warm-up epochs (default 10 cifar10, 30 cifar100)')
    g.add_argument('--pipeline', default='device', choices=['device', 'reference'],
                   help='device: uint8 data on the device, batch augmentation there (default); '
                        'reference: PIL transforms + DataLoader, as the reference')
    g.add_argument('--augment', default='crop_flip', choices=['crop_flip', 'none'],
                   help="training views: crop_flip (the reference's random crop with padding 4 + horizontal "
                        "flip) or none (the plain normalised image; the demo uses it, see RESULTS.md)")
    g.add_argument('--eval_batch_size', default=None, type=int,
                   help='eval_train/test batch (default 1024 for the device pipeline, batch_size for reference)')
    g.add_argument('--noise_file', default=None, help='noisy-label cache (default <data_path>/<r>_<mode>.json)')
    g.add_argument('--cifarn_file', default=None,
                   help='CIFAR-N label file for the CIFAR-N modes (default <data_path>/CIFAR-10_human.pt or '
                        'CIFAR-100_human.pt)')
    g.add_argument('--method', default='dividemix', choices=['dividemix', 'ce'],
                   help='ce: cross-entropy baseline (every epoch is a warm-up epoch)')
    g.add_argument('--conf_penalty', default='auto', choices=['auto', 'on', 'off'],
                   help='warm-up confidence penalty; auto: on for every noise mode except sym (reference: asym only)')
    g.add_argument('--arch', default='preresnet18', choices=['preresnet18', 'cnn'],
                   help="preresnet18: the paper's ResNet18 (PreResNet.py); cnn: SmallCNN.py, for CPU-scale runs")
    g.add_argument('--width', default=None, type=int,
                   help='network width: PreResNet-18 base width (default 64, the paper) or SmallCNN width (default 16)')
    g.add_argument('--train_subset', default=None, type=int, help='use a fixed random subset of N training images')
    g.add_argument('--test_subset', default=None, type=int, help='use a fixed random subset of N test images')
    g.add_argument('--lr_decay_epoch', default=150, type=int, help='lr / 10 from this epoch on')
    g.add_argument('--dump_losses', default='',
                   help="epochs (e.g. '10,50,300' or 'all') at which to save per-sample losses and the fitted "
                        "GMMs for plots.py")
    g.add_argument('--track_division', action='store_true',
                   help='also fit the GMM during warm-up epochs (monitoring only; training is unchanged)')
    add_runtime_args(p)
    return p


# ----------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------

def check_args(args):
    """Flag values that make no sense stop here, before anything is read or written."""
    check_range('r', args.r, 0, 1, hint='it is the fraction of noisy labels')
    check_common_args(args)
    if args.width is not None:
        check_range('width', args.width, 1)
    if args.warm_up is not None:
        check_range('warm_up', args.warm_up, 0)
    info = dataloader.DATASETS[args.dataset]
    if args.num_class is not None and args.num_class != info['num_class']:
        raise UsageError('--num_class %d does not match --dataset %s, which has %d classes (labels 0..%d): '
                         'drop --num_class or pass %d' % (args.num_class, args.dataset, info['num_class'],
                                                          info['num_class'] - 1, info['num_class']))
    if args.noise_mode in dataloader.CIFARN_MODES and dataloader.CIFARN_MODES[args.noise_mode][0] != args.dataset:
        want = dataloader.CIFARN_MODES[args.noise_mode][0]
        raise UsageError('--noise_mode %s is a %s label set: pass --dataset %s' % (args.noise_mode, want, want))
    for name in ('train_subset', 'test_subset'):
        if getattr(args, name) is not None:
            check_range(name, getattr(args, name), 2)


def dump_epochs(spec, num_epochs):
    if not spec:
        return set()
    if spec == 'all':
        return set(range(num_epochs + 1))
    try:
        return set(int(e) for e in spec.split(','))
    except ValueError:
        raise UsageError("--dump_losses %r: give epochs separated by commas (e.g. 10,50,300) or 'all'" % spec)


def resolve_settings(args, noise_rate):
    """Fill the defaults that depend on the run; returns (settings dict, notes to print)."""
    notes = []
    args.num_class = dataloader.DATASETS[args.dataset]['num_class']
    if args.warm_up is None:
        args.warm_up = WARM_UP[args.dataset]
    if args.method == 'ce':
        args.warm_up = args.num_epochs + 1
        notes.append('--method ce: every epoch is a cross-entropy warm-up epoch (the baseline)')
    rate = noise_rate if args.noise_mode in dataloader.CIFARN_MODES else args.r
    lam, pth, src = paper.paper_setting(args.dataset, args.noise_mode, rate)
    for name, value in (('lambda_u', lam), ('p_threshold', pth)):
        if getattr(args, name) is None:
            setattr(args, name, value)
            notes.append('--%s %g: %s' % (name, value, src))
        else:
            notes.append('--%s %g: given on the command line' % (name, getattr(args, name)))
    if args.conf_penalty == 'auto':
        args.conf_penalty = 'on' if (args.method == 'dividemix' and args.noise_mode != 'sym') else 'off'
    if args.width is None:
        args.width = 64 if args.arch == 'preresnet18' else 16
    if args.eval_batch_size is None:
        args.eval_batch_size = 1024 if args.pipeline == 'device' else args.batch_size
    settings = {k: v for k, v in vars(args).items()}
    return settings, notes


def run_stem(args):
    stem = '%s_%.1f_%s' % (args.dataset, args.r, args.noise_mode)
    return stem + ('_' + args.id if args.id else '')


# ----------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------

def load_data(args):
    noise_file = args.noise_file
    if noise_file is None:
        noise_file = dataloader.default_noise_file(args.data_path, args.r, args.noise_mode, args.seed, args.dataset)
        if args.train_subset:
            noise_file = noise_file[:-len('.json')] + '_n%d.json' % args.train_subset
    cifarn_file = args.cifarn_file
    if cifarn_file is None and args.noise_mode in dataloader.CIFARN_MODES:
        cifarn_file = os.path.join(args.data_path, dataloader.CIFARN_FILES[args.dataset])
    try:
        data = dataloader.load_noisy_data(args.dataset, args.r, args.noise_mode, args.data_path, noise_file,
                                          seed=args.seed, cifarn_file=cifarn_file,
                                          train_subset=args.train_subset, test_subset=args.test_subset)
    except dataloader.DatasetError as e:
        raise UsageError(str(e)) from None
    for split, labels in (('training', data.train_label), ('test', data.test_label)):
        if len(labels) and (labels.min() < 0 or labels.max() >= data.num_class):
            raise UsageError('the %s labels in %s span 0..%d but %s has %d classes: the folder holds another '
                             'dataset; check --dataset and --data_path' % (split, args.data_path, labels.max(),
                                                                           args.dataset, data.num_class))
    if len(data.train_label) < 2:
        raise UsageError('the training set in %s has %d image(s); DivideMix needs at least 2'
                         % (args.data_path, len(data.train_label)))
    return data


def create_model(args, data):
    in_channels, side = data.train_data.shape[-1], data.train_data.shape[1]
    if args.arch == 'cnn':
        return SmallCNN(num_classes=args.num_class, in_channels=in_channels, width=args.width, image_size=side)
    return ResNet18(num_classes=args.num_class, in_channels=in_channels, width=args.width)


def make_pipeline(args, data, runtime):
    if args.pipeline == 'device':
        return DevicePipeline(data.train_data, data.noise_label, data.test_data, data.test_label, data.mean,
                              data.std, args.batch_size, runtime.device, seed=args.seed,
                              eval_batch_size=args.eval_batch_size, channels_last=runtime.channels_last,
                              crop_flip=args.augment == 'crop_flip')
    loader = dataloader.cifar_dataloader(args.dataset, args.r, args.noise_mode, args.batch_size, args.num_workers,
                                         args.data_path, log=None, noise_file=data.noise_file, data=data,
                                         eval_batch_size=args.eval_batch_size, crop_flip=args.augment == 'crop_flip')
    return LoaderPipeline(loader, runtime, len(data.noise_label))


# ----------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------

def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    wanted_dumps = dump_epochs(args.dump_losses, args.num_epochs)
    runtime = Runtime.from_args(args)
    if args.arch == 'preresnet18' and args.width is not None:
        runtime.check_conv_width(args.width)
    check_output_dir(args.checkpoint_dir)
    data = load_data(args)
    settings, notes = resolve_settings(args, data.noise_rate)

    stem = os.path.join(args.checkpoint_dir, run_stem(args))
    files = {'acc': stem + '_acc.txt', 'stats': stem + '_stats.txt', 'json': stem + '_log.jsonl'}
    ckpt_path = stem + '_checkpoint.pth.tar'
    ckpt, log = prepare_run(args, settings, ckpt_path, files, digest(data.noise_label))

    print_settings('DivideMix %s, run %s' % (args.dataset, os.path.basename(stem)), settings, notes)
    source = 'human labels' if args.noise_mode in dataloader.CIFARN_MODES else 'r=%.2f' % args.r
    print('| noise: %s, %s -> %.2f%% of %d training labels differ from the true ones (%s %s)'
          % (args.noise_mode, source, 100 * data.noise_rate, len(data.noise_label),
             'generated and cached in' if data.created_noise else 'read from', data.noise_file or '(not cached)'))
    print('| device: %s; pipeline: %s' % (runtime.describe(), args.pipeline))
    if ckpt is None:
        with open(stem + '_settings.json', 'w') as f:
            json.dump(dict(settings, noise_rate=data.noise_rate, torch=torch.__version__,
                           device_name=runtime.describe()), f, indent=1, sort_keys=True)

    seed_everything(args.seed)
    print('| Building net')
    net1 = runtime.model(create_model(args, data))
    net2 = runtime.model(create_model(args, data))
    optimizer1 = optim.SGD(net1.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    optimizer2 = optim.SGD(net2.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sizes = (args.batch_size, 2 * args.batch_size, 4 * args.batch_size, args.eval_batch_size)
    run1, run2 = runtime.runner(net1, sizes), runtime.runner(net2, sizes)
    pipeline = make_pipeline(args, data, runtime)
    generators = {'pipeline': pipeline.generator} if hasattr(pipeline, 'generator') else {}

    N = len(data.noise_label)
    clean = data.clean
    label_digest = digest(data.noise_label)
    window = 5 if args.r == 0.9 else 1  # kept quirk: history averaging only for exactly r == 0.9
    history = [deque(maxlen=5), deque(maxlen=5)]  # normalised loss vectors; only the last 5 are ever used
    gmm_state = None if args.unseeded_gmm else args.seed
    nets, runs, optimizers = (net1, net2), (run1, run2), (optimizer1, optimizer2)
    accs, start_epoch = [], 0
    if ckpt is not None:
        resume_nets(ckpt, nets, optimizers)
        for k in range(2):
            history[k].extend(ckpt['history'][k])
        accs = list(ckpt['accs'])
        start_epoch = ckpt['epoch'] + 1
        set_rng_state(ckpt['rng'], generators)
        print('| resumed from %s after epoch %d' % (ckpt_path if args.resume == 'auto' else args.resume,
                                                     ckpt['epoch']))

    autocast = runtime.autocast
    name = '%s:%.1f-%s' % (args.dataset, args.r, args.noise_mode)

    def write_stats(peer, prob, pred):
        stats = dm.division_stats(prob, pred, clean)
        log.write('stats', 'Numer of labeled samples:%d   AUC:%.3f\n' % (stats['labeled'], stats['auc']))

    for epoch in range(start_epoch, args.num_epochs + 1):
        t0 = time.time()
        record = begin_epoch(epoch, args, optimizers)
        divisions = [None, None]

        if epoch < args.warm_up:
            n_iter = (N + 2 * args.batch_size - 1) // (2 * args.batch_size)
            record.update(warmup_nets(epoch, runs, optimizers, lambda k: pipeline.warmup_batches(),
                                      args.conf_penalty == 'on', runtime, name, args.log_every, n_iter))
            if args.track_division or epoch in wanted_dumps:
                # monitoring only: fork the RNG so the run's random stream is exactly as without it
                with torch.random.fork_rng(devices=[]):
                    divisions = [dm.eval_train(runs[k], pipeline.eval_batches(), N, None, 1,
                                               random_state=gmm_state, autocast=autocast) for k in range(2)]
        else:
            divisions = [dm.eval_train(runs[k], pipeline.eval_batches(), N, history[k], window,
                                       random_state=gmm_state, autocast=autocast) for k in range(2)]
            record.update(train_on_divisions(
                epoch, runs, optimizers, [d['prob'] for d in divisions], args.p_threshold,
                lambda peer, pred, prob: pipeline.train_batches(pred, prob), runtime, name, args.log_every,
                args.batch_size, args.num_class, args.warm_up, args.T, args.alpha, args.lambda_u,
                mix_unlabeled=True, randperm=pipeline.randperm, on_division=write_stats))

        for k, d in enumerate(divisions):
            if d is not None:
                stats = dm.division_stats(d['prob'], d['prob'] > args.p_threshold, clean)
                record.update({key + str(k + 1): v for key, v in stats.items()})
        if epoch in wanted_dumps and divisions[0] is not None:
            save_losses(stem, epoch, divisions, clean, args.p_threshold)

        acc = dm.ensemble_accuracy(runs, pipeline.test_batches(), autocast=autocast)[0]
        accs.append(acc)
        print('\n| Test Epoch #%d\t Accuracy: %.2f%%\n' % (epoch, acc))
        log.write('acc', 'Epoch:%d   Accuracy:%.2f\n' % (epoch, acc))
        record.update({'test_acc': acc, 'seconds': round(time.time() - t0, 3)})
        log.json('json', record)
        sys.stdout.flush()
        atomic_save(checkpoint_state('Train_cifar', epoch, settings, label_digest, nets, optimizers, log, generators,
                                     history=[list(h) for h in history], accs=accs), ckpt_path)

    summary = summarize(accs)
    atomic_save(net1.state_dict(), stem + '_net1.pth.tar')
    atomic_save(net2.state_dict(), stem + '_net2.pth.tar')
    log.json('json', {'summary': summary})
    log.close()
    with open(stem + '_summary.json', 'w') as f:
        json.dump(dict(summary, run=os.path.basename(stem), noise_rate=data.noise_rate), f, indent=1)
    print('| Done: best %.2f%%, last %.2f%%, mean of the last 10 epochs %.2f%% (%d epochs); nets saved to %s'
          % (summary['best'], summary['last'], summary['mean_last10'], summary['epochs'],
             stem + '_net{1,2}.pth.tar'))
    return summary


def save_losses(stem, epoch, divisions, clean, p_threshold):
    """What plots.py needs for the loss histogram with the fitted GMM (paper Fig. 2)."""
    out = {'epoch': epoch, 'clean': clean, 'p_threshold': p_threshold}
    for k, d in enumerate(divisions, start=1):
        gmm = d['gmm']
        out.update({'input_loss%d' % k: d['input_loss'].reshape(-1), 'prob%d' % k: d['prob'],
                    'means%d' % k: gmm.means_.reshape(-1), 'variances%d' % k: gmm.covariances_.reshape(-1),
                    'weights%d' % k: gmm.weights_.reshape(-1)})
    np.savez_compressed('%s_losses_ep%03d.npz' % (stem, epoch), **out)


if __name__ == '__main__':
    run_main(main, data_errors=(dataloader.DatasetError,))
