"""DivideMix on CIFAR-10 / CIFAR-100 (and Fashion-MNIST).

    python Train_cifar.py --data_path ./cifar-10-batches-py --r 0.5 --noise_mode sym

The reference's flags, defaults, noise files and log lines; the algorithm lives in
dividemix.py, the data in dataloader_cifar.py / data_sources.py, the run's plumbing
(resume, logs, checkpoints) in run.py, and this script only wires them together (see
README.md for every flag and each deviation).
"""
import argparse
import os

import numpy as np

import dataloader_cifar as dataloader
from dividemix_run import distributed
from dividemix_run import paper
from dividemix_run import plan
from dividemix_run.checkpoints import digest
from dividemix_run.cli import (Settings, UsageError, add_reference_args, add_runtime_args, check_common_args, check_output_dir,
                 check_range, check_T, run_main)
from dividemix_run.data_sources import DeviceSource, LoaderSource
from PreResNet import ResNet18
from dividemix_run.run import Run, algorithm_config, summarize
from dividemix_run.runtime import Runtime
from SmallCNN import SmallCNN

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
    g.add_argument('--accept_noise_file', action='store_true',
                   help='use the noise file even when its realised noise rate is far from what --r and --noise_mode '
                        'imply (it is refused otherwise)')
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
    check_T(args.T, info['num_class'])
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
    """The run's settings: the flags with the defaults that depend on the run filled in
    (argparse's namespace is left as parsed). Returns (Settings, notes to print)."""
    notes, resolved = [], {}
    resolved['num_class'] = dataloader.DATASETS[args.dataset]['num_class']
    resolved['warm_up'] = WARM_UP[args.dataset] if args.warm_up is None else args.warm_up
    if args.method == 'ce':
        notes.append('--method ce: every epoch is a cross-entropy warm-up epoch (the baseline)')
    rate = noise_rate if args.noise_mode in dataloader.CIFARN_MODES else args.r
    lam, pth, src = paper.paper_setting(args.dataset, args.noise_mode, rate)
    for name, value in (('lambda_u', lam), ('p_threshold', pth)):
        given = getattr(args, name)
        resolved[name] = value if given is None else given
        notes.append('--%s %g: %s' % (name, resolved[name], src if given is None else 'given on the command line'))
    if args.conf_penalty == 'auto':
        resolved['conf_penalty'] = 'on' if (args.method == 'dividemix' and args.noise_mode != 'sym') else 'off'
    if args.width is None:
        resolved['width'] = 64 if args.arch == 'preresnet18' else 16
    if args.eval_batch_size is None:
        resolved['eval_batch_size'] = 1024 if args.pipeline == 'device' else args.batch_size
    return Settings.from_args(args, **resolved), notes


def run_stem(args):
    stem = '%s_%.1f_%s' % (args.dataset, args.r, args.noise_mode)
    return stem + ('_' + args.id if args.id else '')


# ----------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------

def load_data(s):
    noise_file = s.noise_file
    if noise_file is None:
        noise_file = dataloader.default_noise_file(s.data_path, s.r, s.noise_mode, s.seed, s.dataset)
        if s.train_subset:
            noise_file = noise_file[:-len('.json')] + '_n%d.json' % s.train_subset
    cifarn_file = s.cifarn_file
    if cifarn_file is None and s.noise_mode in dataloader.CIFARN_MODES:
        cifarn_file = os.path.join(s.data_path, dataloader.CIFARN_FILES[s.dataset])
    try:
        data = dataloader.load_noisy_data(s.dataset, s.r, s.noise_mode, s.data_path, noise_file,
                                          seed=s.seed, cifarn_file=cifarn_file,
                                          train_subset=s.train_subset, test_subset=s.test_subset,
                                          write_noise_file=distributed.env_rank() == 0 and not s.dry_run)
    except dataloader.DatasetError as e:
        raise UsageError(str(e)) from None
    for split, labels in (('training', data.train_label), ('test', data.test_label)):
        if len(labels) and (labels.min() < 0 or labels.max() >= data.num_class):
            raise UsageError('the %s labels in %s span %d..%d but %s has %d classes (labels 0..%d): the folder '
                             'holds another dataset or damaged files; check --dataset and --data_path'
                             % (split, s.data_path, labels.min(), labels.max(), s.dataset, data.num_class,
                                data.num_class - 1))
    if len(data.train_label) < 2:
        raise UsageError('the training set in %s has %d image(s); DivideMix needs at least 2'
                         % (s.data_path, len(data.train_label)))
    if not data.created_noise and not s.accept_noise_file:
        check_noise_rate(s, data)
    return data


def check_noise_rate(s, data):
    """A noise file made for another r or mode (e.g. a 0.2 file under a run named 0.5) is refused: its
    realised rate must match what --r and --noise_mode imply, within 5 standard deviations."""
    expected = dataloader.expected_noise_rate(s.noise_mode, s.r, data.train_label, data.num_class, s.dataset,
                                              data.train_coarse)
    if expected is None:
        return
    mean, sd = expected
    if abs(data.noise_rate - mean) > 5 * sd + 0.002:
        raise UsageError('noise file %s changes %.2f%% of the training labels, but --noise_mode %s --r %g changes '
                         '%.2f%% +- %.2f%%: it was made for another noise setting. Delete it to draw the noise for '
                         'this one, pass the right --noise_file, or --accept_noise_file to use it anyway'
                         % (data.noise_file, 100 * data.noise_rate, s.noise_mode, s.r, 100 * mean, 100 * sd))


def create_model(s, data):
    in_channels, side = data.train_data.shape[-1], data.train_data.shape[1]
    if s.arch == 'cnn':
        return SmallCNN(num_classes=s.num_class, in_channels=in_channels, width=s.width, image_size=side)
    return ResNet18(num_classes=s.num_class, in_channels=in_channels, width=s.width)


def make_source(s, data, runtime):
    if s.pipeline == 'device':
        return DeviceSource(data.train_data, data.noise_label, data.test_data, data.test_label, data.mean, data.std,
                            s.batch_size, runtime.device, seed=s.seed, eval_batch_size=s.eval_batch_size,
                            channels_last=runtime.channels_last, crop_flip=s.augment == 'crop_flip')
    loader = dataloader.cifar_dataloader(s.dataset, s.r, s.noise_mode, s.batch_size, s.num_workers, s.data_path,
                                         log=None, noise_file=data.noise_file, data=data,
                                         eval_batch_size=s.eval_batch_size, crop_flip=s.augment == 'crop_flip',
                                         pin_memory=runtime.pin_memory)
    return LoaderSource(loader, runtime)


# ----------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------

def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args)
    wanted_dumps = dump_epochs(args.dump_losses, args.num_epochs)
    runtime = Runtime.from_args(args)
    if args.arch == 'preresnet18' and args.width is not None:
        runtime.check_conv_width(args.width)
    check_output_dir(args.checkpoint_dir, create=not args.dry_run)
    data = load_data(args)
    s, notes = resolve_settings(args, data.noise_rate)

    stem = os.path.join(s.checkpoint_dir, run_stem(s))
    labels = 'human labels' if s.noise_mode in dataloader.CIFARN_MODES else 'r=%.2f' % s.r
    info = ['noise: %s, %s -> %.2f%% of %d training labels differ from the true ones (%s %s)' % (
        s.noise_mode, labels, 100 * data.noise_rate, len(data.noise_label),
        ('drawn for this dry run; the run caches them in' if args.dry_run else 'generated and cached in')
        if data.created_noise else 'read from', data.noise_file or '(not cached)'),
        'device: %s; pipeline: %s' % (runtime.describe(), s.pipeline)]
    with Run('Train_cifar', s, runtime, stem=stem, label_digest=digest(data.noise_label),
             log_files={'acc': stem + '_acc.txt', 'stats': stem + '_stats.txt', 'json': stem + '_log.jsonl'},
             name='%s:%.1f-%s' % (s.dataset, s.r, s.noise_mode), notes=notes, info=info,
             title='DivideMix %s, run %s' % (s.dataset, os.path.basename(stem)),
             extra_settings={'noise_rate': data.noise_rate}, dry_run=args.dry_run) as run:
        if run.dry_run:
            n, n_test = len(data.noise_label), len(data.test_label)
            run.plan(parser, argv, lambda: create_model(s, data), data=[
                'data: %s, %d training and %d test images of %dx%d px, %d classes; training labels %d..%d, test '
                'labels %d..%d' % (s.dataset, n, n_test, data.train_data.shape[1], data.train_data.shape[2],
                                   s.num_class, data.noise_label.min(), data.noise_label.max(),
                                   data.test_label.min(), data.test_label.max())],
                schedule=plan.schedule_lines(s, warmup=(n, 2 * s.batch_size), divide=(n, s.eval_batch_size),
                                             train=(n, s.batch_size), test=[('test', n_test, s.eval_batch_size)],
                                             method=s.method))
            return None
        cfg = algorithm_config(s, mix_unlabeled=True, conf_penalty=s.conf_penalty == 'on',
                               loss_window=5 if s.r == 0.9 else 1)  # kept quirk: loss history only when r == 0.9
        run.build(lambda: create_model(s, data), cfg, make_source(s, data, runtime), weight_decay=5e-4,
                  batch_sizes=(s.batch_size, 2 * s.batch_size, 4 * s.batch_size, s.eval_batch_size),
                  clean=data.clean,
                  stats_line=lambda st: 'Numer of labeled samples:%d   AUC:%.3f\n' % (st['labeled'], st['auc']))

        accs = list(run.state.get('accs', []))
        for epoch in run.epochs():
            # Algorithm 1: warm-up, or co-divide then co-train (monitor: also divide after a warm-up epoch)
            record, divisions = run.train_epoch(epoch, monitor=s.track_division or epoch in wanted_dumps)
            if epoch in wanted_dumps:
                save_losses(stem, epoch, divisions, data.clean, s.p_threshold)
            acc = run.test()[0]
            accs.append(acc)
            print('\n| Test Epoch #%d\t Accuracy: %.2f%%\n' % (epoch, acc))
            run.log.write('acc', 'Epoch:%d   Accuracy:%.2f\n' % (epoch, acc))
            record['test_acc'] = acc
            run.end_epoch(record, accs=accs)

        summary = summarize(accs)
        run.save_nets()
        run.finish(summary, dict(summary, run=os.path.basename(stem), noise_rate=data.noise_rate))
    print('| Done: best %.2f%%, last %.2f%%, mean of the last 10 epochs %.2f%% (%d epochs); nets saved to %s'
          % (summary['best'], summary['last'], summary['mean_last10'], summary['epochs'], stem + '_net{1,2}.pth.tar'))
    return summary


def save_losses(stem, epoch, divisions, clean, p_threshold):
    """What plots.py needs for the loss histogram with the fitted GMM (paper Fig. 2). Under torchrun
    rank 0 writes it (every rank holds the same divisions); through a temporary file and a rename."""
    if not distributed.is_main():
        return
    out = {'epoch': epoch, 'clean': clean, 'p_threshold': p_threshold}
    for k, d in enumerate(divisions, start=1):
        gmm = d.gmm
        out.update({'input_loss%d' % k: d.input_loss.reshape(-1), 'prob%d' % k: d.prob,
                    'means%d' % k: gmm.means_.reshape(-1), 'variances%d' % k: gmm.covariances_.reshape(-1),
                    'weights%d' % k: gmm.weights_.reshape(-1)})
    path = '%s_losses_ep%03d.npz' % (stem, epoch)
    with open(path + '.tmp', 'wb') as f:
        np.savez_compressed(f, **out)
    os.replace(path + '.tmp', path)


def console():
    """The command line: `python Train_cifar.py ...` from a clone, `dividemix-cifar ...` after `pip install .`."""
    run_main(main, data_errors=(dataloader.DatasetError,))


if __name__ == '__main__':
    console()
