"""DivideMix on your own noisily labelled images, and the list of labels it doubts.

    python Train_folder.py --data_path ROOT                     # ROOT/train/<class>/<image> (or ROOT/train.txt)
    python Train_folder.py --data_path ROOT --arch resnet50 --weights IMAGENET1K_V2
    python Train_folder.py --data_path ROOT --report_only --resume

Small images (largest side up to 64 px) train like CIFAR: uint8 on the device, PreResNet-18 from
scratch, the paper's CIFAR settings picked by your estimate of the noise rate (--r), or by the rate
the nets' loss mixtures estimate at the end of warm-up (--r auto). Larger images
train like Clothing1M: DataLoader workers, a torchvision model from pretrained weights, the
Clothing1M settings. At the end (and with --report_every K every K epochs) <run>_label_issues.csv
lists every training sample, most suspicious label first (dividemix_run/label_issues.py; docs/own_data.md).
"""
import argparse
import dataclasses
import hashlib
import os

import numpy as np
import torchvision.transforms as transforms

import dataloader_folder as dataloader
from dividemix_run import label_issues
from dividemix_run import noise_rate
from dividemix_run import paper
from dividemix_run import plan
from dividemix_run.cli import (Settings, UsageError, add_image_args, add_reference_args, add_runtime_args, check_common_args,
                 check_output_dir, check_range, check_T, run_main, set_image_limit)
from dividemix_run.data_sources import DeviceSource, LoaderSource
from dividemix_run.pretrained import check_arch, classifier, load_weights, probe, torchvision_weights, weights_note
from PreResNet import ResNet18
from dividemix_run.run import Run, algorithm_config, summarize
from dividemix_run.runtime import Runtime
from SmallCNN import SmallCNN

SMALL_SIDE = 64  # images up to this size (largest side) go through the device-resident pipeline
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The two regimes' defaults: CIFAR's (from scratch) and Clothing1M's (pretrained), as the paper ran them.
SMALL = dict(batch_size=64, lr=0.02, alpha=4.0, num_epochs=300, lr_decay_epoch=150, weight_decay=5e-4,
             eval_batch_size=1024, arch='preresnet18')
LARGE = dict(batch_size=32, lr=0.002, alpha=0.5, num_epochs=80, lr_decay_epoch=40, weight_decay=1e-3,
             eval_batch_size=128, arch='resnet50', lambda_u=0.0, p_threshold=0.5, warm_up=1)


def noise_rate_flag(text):
    """--r: a fraction, or 'auto'."""
    if text == 'auto':
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r: give the fraction of wrong labels you expect (e.g. 0.3), or auto" % text)


def build_parser():
    p = argparse.ArgumentParser(description='DivideMix on your own labelled image folder, with a label-issue report')
    add_reference_args(p, batch_size=None, lr=None, alpha=None, lambda_u=None, p_threshold=None, num_epochs=None,
                       id=None, num_class=None, data_path='./data',
                       lambda_u_help='weight for unsupervised loss (default: by regime, see --r)',
                       p_threshold_help='clean probability threshold, also the report\'s flag (default: by regime)')
    g = p.add_argument_group('your data (docs/own_data.md)')
    g.add_argument('--r', default=0.5, type=noise_rate_flag,
                   help='your estimate of the fraction of wrong labels (default 0.5), or auto: estimated from the two '
                        'nets\' loss mixtures at the first co-divide (the end of warm-up). Picks the paper\'s '
                        'lambda_u and p_threshold for small images (its CIFAR-10 row, CIFAR-100 row above 10 classes); '
                        'explicit --lambda_u / --p_threshold win')
    g.add_argument('--arch', default=None,
                   help='small images: preresnet18 (default) or cnn (SmallCNN.py); larger images: a torchvision '
                        'classification model by name (default resnet50)')
    g.add_argument('--weights', default=None,
                   help='torchvision weights of --arch (default DEFAULT, e.g. IMAGENET1K_V2); their metadata set '
                        'the input size and normalisation')
    g.add_argument('--pretrained_path', default=None, help='a local file of those weights')
    g.add_argument('--offline', action='store_true', help='never try to download weights')
    g.add_argument('--random_init', action='store_true', help='a torchvision --arch from scratch, no weights')
    g.add_argument('--width', default=None, type=int, help='PreResNet-18 base width (64) / SmallCNN width (16)')
    g.add_argument('--pipeline', default='auto', choices=['auto', 'device', 'reference'],
                   help='auto: device (uint8 on the device) when the largest image side is at most %d px, else '
                        'reference (PIL + DataLoader workers)' % SMALL_SIDE)
    g.add_argument('--image_size', default=None, type=int,
                   help='device pipeline: images resized to this square (default: the largest side found); '
                        'reference pipeline: the crop (default: the weights\' crop, else 224)')
    g.add_argument('--resize_size', default=None, type=int,
                   help='reference pipeline: resize before the centre crop of evaluation (default: the '
                        'weights\', else 256)')
    g.add_argument('--augment', default='crop_flip', choices=['crop_flip', 'none'],
                   help='training views: crop_flip (small: 4-pixel padded crop + flip; large: random resized crop '
                        '+ flip) or none')
    g.add_argument('--eval_batch_size', default=None, type=int, help='eval_train/test batch (default by regime)')
    g.add_argument('--warm_up', default=None, type=int, help='warm-up epochs (default 10, 30 above 10 classes; '
                                                             'large images 1)')
    g.add_argument('--lr_decay_epoch', default=None, type=int, help='lr / 10 from this epoch on (default by regime)')
    g.add_argument('--method', default='dividemix', choices=['dividemix', 'ce'],
                   help='ce: cross-entropy baseline (every epoch a warm-up epoch)')
    g.add_argument('--conf_penalty', default='auto', choices=['auto', 'on', 'off'],
                   help='warm-up confidence penalty; auto: on for DivideMix (real label noise is class-dependent, '
                        'as in Clothing1M, where the paper used it), off for --method ce (plain cross-entropy)')
    g.add_argument('--track_division', action='store_true', help='also divide after warm-up epochs (monitoring)')
    g.add_argument('--report_every', default=0, type=int, help='also write the label report every K epochs')
    g.add_argument('--report_only', action='store_true',
                   help='write the label report from a checkpoint (--resume) and stop, without training')
    add_image_args(p)
    add_runtime_args(p)
    return p


# ----------------------------------------------------------------------------------
# Settings: the regime (small or large images) decides the defaults
# ----------------------------------------------------------------------------------

def resolve_settings(args, data):
    """Settings with every default filled in, and the notes to print."""
    auto = args.r == 'auto'
    if not auto:
        check_range('r', args.r, 0, 1, hint='it is your estimate of the fraction of wrong labels, or auto')
    survey = dataloader.survey(data.splits['train'][0])
    side, grey = survey.side, survey.grey  # side: the largest, outliers left out (they are named below)
    pipeline = args.pipeline if args.pipeline != 'auto' else ('device' if side <= SMALL_SIDE else 'reference')
    small = pipeline == 'device'
    defaults = SMALL if small else LARGE
    resolved, notes = {}, []
    for name in ('batch_size', 'lr', 'alpha', 'num_epochs', 'lr_decay_epoch', 'eval_batch_size', 'arch'):
        resolved[name] = getattr(args, name) if getattr(args, name) is not None else defaults[name]
    if args.conf_penalty == 'auto':
        resolved['conf_penalty'] = 'on' if args.method == 'dividemix' else 'off'
    resolved.update(pipeline=pipeline, num_class=data.num_class, classes=list(data.classes),
                    weight_decay=defaults['weight_decay'], eval_split=data.eval_split, layout=data.layout,
                    # the folder's own name, also for `--data_path .` (abspath: '.' names no file)
                    id=args.id if args.id is not None else os.path.basename(os.path.abspath(args.data_path)))
    if args.num_class is not None and args.num_class != data.num_class:
        raise UsageError('--num_class %d does not match %s, which has %d classes (%s): drop --num_class'
                         % (args.num_class, args.data_path, data.num_class, ', '.join(data.classes[:10])))
    if small:
        if auto:  # read from the paper's table at the first co-divide (settings_at_estimate)
            lam, pth, src = None, None, ('the paper\'s setting at the noise rate estimated at the first co-divide '
                                         '(--r auto)')
        else:
            lam, pth, src = paper.paper_setting(paper_table(data.num_class), 'sym', args.r)
        resolved['warm_up'] = args.warm_up if args.warm_up is not None else (30 if data.num_class > 10 else 10)
        if auto and resolved['warm_up'] == 0 and args.method == 'dividemix':
            raise UsageError('--r auto estimates the noise rate from nets warmed up on the labels, and --warm_up 0 '
                             'has none: pass --warm_up 1 or more, or --r with your estimate')
        resolved['channels'] = 1 if grey else 3
        resolved['image_size'] = args.image_size or side
        resolved['width'] = args.width or (64 if resolved['arch'] == 'preresnet18' else 16)
        if resolved['arch'] not in ('preresnet18', 'cnn'):
            raise UsageError('--arch %s: small images (the device pipeline) train preresnet18 or cnn; pass '
                             '--pipeline reference for a torchvision model' % resolved['arch'])
        if resolved['arch'] == 'cnn' and resolved['image_size'] < 4:
            raise UsageError('--arch cnn needs images of at least 4 px (its two 2x2 max-pools), not --image_size '
                             '%d: pass --image_size 4 or more, or --arch preresnet18 (any size)'
                             % resolved['image_size'])
    else:
        lam, pth, src = LARGE['lambda_u'], LARGE['p_threshold'], 'the Clothing1M setting (images over %d px)' % (
            SMALL_SIDE)
        resolved['warm_up'] = args.warm_up if args.warm_up is not None else LARGE['warm_up']
        resolved['channels'] = 3
        if resolved['arch'] in ('preresnet18', 'cnn'):
            raise UsageError('--arch %s is for small images; pass --pipeline device (images resized to '
                             '--image_size), or a torchvision model' % resolved['arch'])
        check_arch(resolved['arch'])  # before anything is written, with --random_init too
        if not args.random_init:
            resolved['weights'] = torchvision_weights(resolved['arch'], args.weights or 'DEFAULT').name
        meta = torchvision_weights(resolved['arch'], resolved['weights']).transforms() if not args.random_init \
            else None
        resolved['image_size'] = args.image_size or (meta.crop_size[0] if meta else 224)
        resolved['resize_size'] = args.resize_size or (meta.resize_size[0] if meta else 256)
        resolved['mean'], resolved['std'] = (tuple(meta.mean), tuple(meta.std)) if meta else (IMAGENET_MEAN,
                                                                                                IMAGENET_STD)
    for name, value in (('lambda_u', lam), ('p_threshold', pth)):
        given = getattr(args, name)
        resolved[name] = value if given is None else given
        notes.append('--%s %s: %s' % (name, 'auto' if resolved[name] is None else '%g' % resolved[name],
                                       src if given is None else 'given on the command line'))
    if auto and args.method == 'ce':
        notes.append('--r auto: --method ce never divides the data, so nothing is estimated')
    notes.append('%s images (largest side %d px among those surveyed): %s pipeline, %s defaults' % (
        'small' if small else 'large', side, pipeline, 'CIFAR' if small else 'Clothing1M'))
    if survey.outliers:
        shown = ', '.join('%s (%dx%d)' % o for o in survey.outliers[:3])
        notes.append('%d of the %d images surveyed %s far larger than the rest (largest side over %d times the median '
                     '%d px): %s%s; the size is chosen from the others (--image_size %d), so check or remove %s, or '
                     'pass --image_size' % (len(survey.outliers), survey.count, 'is' if len(survey.outliers) == 1
                                            else 'are', dataloader.Survey.OUTLIER, survey.median, shown,
                                            ', ...' if len(survey.outliers) > 3 else '', resolved['image_size'],
                                            'it' if len(survey.outliers) == 1 else 'them'))
    s = Settings.from_args(args, **resolved)
    check_common_args(s)
    for name in ('image_size', 'width', 'report_every') + (() if small else ('resize_size',)):
        if s.get(name) is not None:
            check_range(name, s.get(name), 0 if name == 'report_every' else 1)
    check_range('warm_up', s.warm_up, 0 if small else 1)
    check_T(s.T, s.num_class)
    # up front, before weights are fetched or images decoded: does the network take this size, and one image?
    s = s.replace(min_train_rows=1 if one_image_batches_train(s) else 2)
    return s, notes


def paper_table(num_class):
    return 'cifar100' if num_class > 10 else 'cifar10'


def settings_at_estimate(s, rate):
    """(lambda_u, p_threshold, where from) for --r auto at the estimated rate: the paper's table as --r
    reads it for small images, the Clothing1M setting for large ones; explicit flags win."""
    if s.pipeline == 'device':
        lam, pth, src = paper.paper_setting(paper_table(s.num_class), 'sym', rate)
    else:
        lam, pth, src = LARGE['lambda_u'], LARGE['p_threshold'], 'the Clothing1M setting, whatever the rate'
    given = lambda name, value: (getattr(s, name), 'given on the command line') if getattr(s, name) is not None \
        else (value, src)
    return given('lambda_u', lam), given('p_threshold', pth)


def one_image_batches_train(s):
    """Whether the network trains on a batch of one image at the run's size (probed on the meta device
    before anything runs): where BatchNorm would see one value per channel (a 1x1 last feature map), the
    run skips training batches of one image instead of crashing on the first ragged one."""
    if s.pipeline == 'device':
        import torch
        with torch.device('meta'):
            net = create_model(s, None).train()
        try:
            net(torch.empty(1, s.channels, s.image_size, s.image_size, device='meta'))
            return True
        except ValueError:
            return False
    return probe(s.arch, s.num_class, s.image_size, pretrained=not s.random_init)


def check_device_memory(s, n_images, runtime):
    """The device pipeline holds every image as uint8 at --image_size, on the host while decoding and on the
    device (with a 4-pixel border) while training: refuse sizes that cannot fit, with the figures."""
    need = n_images * s.image_size * s.image_size * s.channels
    on_device = n_images * (s.image_size + 8) ** 2 * s.channels
    limits = [('memory', os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES'), need)] \
        if hasattr(os, 'sysconf') else []
    if runtime.device.type == 'cuda':
        import torch
        limits.append(('GPU memory', torch.cuda.get_device_properties(runtime.device).total_memory, on_device))
    for what, total, bytes_needed in limits:
        if bytes_needed > total / 2:
            raise UsageError('the device pipeline holds every image as uint8 at --image_size %d: %d images need %.1f GB '
                             'of %s, over half of the %.1f GB there. Pass a smaller --image_size, or --pipeline '
                             'reference (images read from disk batch by batch)'
                             % (s.image_size, n_images, bytes_needed / 1e9, what, total / 1e9))


# ----------------------------------------------------------------------------------
# Data and model
# ----------------------------------------------------------------------------------

def make_source(s, data, runtime):
    """(source, extra settings to record): the device pipeline for small images, DataLoaders for large."""
    train_paths, train_labels = data.splits['train']
    min_rows, extra = s.min_train_rows, {}
    if s.pipeline == 'device':
        check_device_memory(s, len(train_paths) + (len(data.splits[s.eval_split][0]) if s.eval_split else 0), runtime)
        images = dataloader.load_images(train_paths, s.image_size, s.channels)
        mean, std = dataloader.channel_stats(images)
        test_paths, test_labels = data.splits[s.eval_split] if s.eval_split else ([], np.zeros(0, np.int64))
        test = dataloader.load_images(test_paths, s.image_size, s.channels)
        return DeviceSource(images, train_labels, test, test_labels, mean, std, s.batch_size, runtime.device,
                            seed=s.seed, eval_batch_size=s.eval_batch_size, channels_last=runtime.channels_last,
                            crop_flip=s.augment == 'crop_flip', min_train_rows=min_rows), dict(extra, mean=mean,
                                                                                                std=std)
    normalize = transforms.Normalize(s.mean, s.std)
    test = transforms.Compose([transforms.Resize(s.resize_size), transforms.CenterCrop(s.image_size),
                               transforms.ToTensor(), normalize])
    train = transforms.Compose([transforms.RandomResizedCrop(s.image_size), transforms.RandomHorizontalFlip(),
                                transforms.ToTensor(), normalize]) if s.augment == 'crop_flip' else test
    loader = dataloader.folder_dataloader(data, s.batch_size, s.num_workers, train, test, s.eval_batch_size,
                                          pin_memory=runtime.pin_memory)
    return LoaderSource(loader, runtime, min_train_rows=min_rows), extra


def create_model(s, state):
    if s.arch == 'cnn':
        return SmallCNN(num_classes=s.num_class, in_channels=s.channels, width=s.width, image_size=s.image_size)
    if s.arch == 'preresnet18':
        return ResNet18(num_classes=s.num_class, in_channels=s.channels, width=s.width)
    return classifier(s.arch, s.num_class, state, image_size=s.image_size)


def labels_digest(data):
    """What resume compares: the training images (paths relative to the root) and their given labels."""
    paths, labels = data.splits['train']
    h = hashlib.sha256('\n'.join(os.path.relpath(p, data.root) for p in paths).encode())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------

def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.report_only and args.resume is None:
        args.resume = 'auto'
    set_image_limit(args.max_image_pixels)
    try:
        # --checkpoint_dir inside ROOT/train (or val, test) would be read as a class folder at the next start
        data = dataloader.scan(args.data_path, ignore=[args.checkpoint_dir])
    except dataloader.DatasetError as e:
        raise UsageError(str(e)) from None
    s, notes = resolve_settings(args, data)
    runtime = Runtime.from_args(args)
    if s.arch == 'preresnet18':
        runtime.check_conv_width(s.width)
    check_output_dir(s.checkpoint_dir, create=not args.dry_run)
    state = weights = None
    if s.pipeline == 'reference' and not s.random_init:
        weights = torchvision_weights(s.arch, s.weights)
        state = load_weights(weights, s.pretrained_path, s.offline, download=not args.dry_run)
    if args.dry_run:  # the checks make_source makes, without decoding every image
        all_paths = [p for k in data.splits for p in data.splits[k][0]]
        if s.pipeline == 'device':
            check_device_memory(s, len(data.splits['train'][0]) + (len(data.splits[s.eval_split][0]) if s.eval_split
                                                                   else 0), runtime)
        decoded = plan.decode_sample(all_paths, what='images of %s' % s.data_path)
        source, extra = None, {}
    else:
        source, extra = make_source(s, data, runtime)
    stem = os.path.join(s.checkpoint_dir, s.id)
    train_paths = data.splits['train'][0]
    info = ['classes (%d, label = position): %s' % (s.num_class, ', '.join(s.classes)),
            'data: %s, %d training images%s' % (data.layout, len(train_paths), ''.join(
                ', %d %s' % (len(data.splits[k][0]), k) for k in ('val', 'test') if k in data.splits)),
            'device: %s; pipeline: %s' % (runtime.describe(), s.pipeline)]
    files = {'stats': stem + '_stats.txt', 'json': stem + '_log.jsonl'}
    if s.eval_split:
        files['acc'] = stem + '_acc.txt'
    with Run('Train_folder', s, runtime, stem=stem, log_files=files, label_digest=labels_digest(data), name=s.id,
             title='DivideMix on %s, run %s' % (s.data_path, s.id), notes=notes, info=info, extra_settings=extra,
             read_only=s.report_only, dry_run=args.dry_run) as run:
        if run.dry_run:
            n, labels = len(train_paths), data.splits['train'][1]
            n_eval = len(data.splits[s.eval_split][0]) if s.eval_split else 0
            run.plan(parser, argv, lambda: create_model(s, state), data=[
                'labels %d..%d of %d classes; %d sampled images decoded' % (labels.min(), labels.max(), s.num_class,
                                                                           decoded)],
                schedule=plan.schedule_lines(s, warmup=(n, 2 * s.batch_size), divide=(n, s.eval_batch_size),
                                             train=(n, s.batch_size),
                                             test=[(s.eval_split, n_eval, s.eval_batch_size)] if s.eval_split else (),
                                             method=s.method)
                + ['at the end: %s_label_issues.csv, every training image with its clean probabilities' % s.id]
                if not s.report_only else ['--report_only: %s_label_issues.csv from the checkpoint\'s nets, nothing '
                                           'trained' % s.id],
                notes=[n for n in [weights_note(weights, state) if weights is not None else None] if n])
            return None
        # --r auto: the settings wait for the first co-divide (until then lambda_u 0 and p_threshold 0.5 stand in,
        # used by nothing but a warm-up --track_division); a resume after it has them in the checkpoint
        estimated = run.state.get('r_auto')
        auto = estimated if estimated is not None else {}
        lam = s.lambda_u if s.lambda_u is not None else 0.0
        pth = s.p_threshold if s.p_threshold is not None else 0.5
        cfg = algorithm_config(s.replace(lambda_u=auto.get('lambda_u', lam), p_threshold=auto.get('p_threshold', pth)),
                               mix_unlabeled=s.pipeline == 'device', conf_penalty=s.conf_penalty == 'on')
        if estimated is not None:
            print('| %s (estimated before this resume): --lambda_u %g, --p_threshold %g'
                  % (noise_rate.describe(auto['epoch'], auto['estimate'], auto['estimate_per_net']), auto['lambda_u'],
                     auto['p_threshold']))

        def first_division(epoch, divisions, record):
            """--r auto: estimate the noise rate, then read the settings at it (once, before anything trains)."""
            mean, per_net = noise_rate.estimate(divisions)
            (lam, lam_src), (pth, pth_src) = settings_at_estimate(s, mean)
            auto.update(epoch=epoch, estimate=mean, estimate_per_net=per_net, lambda_u=lam, p_threshold=pth)
            print('\n| %s: %s\n' % (noise_rate.describe(epoch, mean, per_net), (
                '--lambda_u %g, --p_threshold %g (%s)' % (lam, pth, lam_src) if lam_src == pth_src else
                '--lambda_u %g (%s), --p_threshold %g (%s)' % (lam, lam_src, pth, pth_src))))
            record.update(r_estimate=mean, r_estimate_net1=per_net[0], r_estimate_net2=per_net[1],
                          lambda_u_setting=lam, p_threshold=pth)
            run.record_settings(r_estimate=mean, r_estimate_per_net=per_net, r_estimate_epoch=epoch, lambda_u=lam,
                                p_threshold=pth)
            return dataclasses.replace(cfg, lambda_u=lam, p_threshold=pth)

        pending = s.r == 'auto' and estimated is None and s.method == 'dividemix'
        run.build(lambda: create_model(s, state), cfg, source, weight_decay=s.weight_decay,
                  batch_sizes=(s.batch_size, 2 * s.batch_size, 4 * s.batch_size, s.eval_batch_size),
                  stats_line=lambda st: 'Numer of labeled samples:%d \n' % st['labeled'],
                  first_division=first_division if pending else None)

        def write_report(epoch):
            rep = label_issues.report(run.runs, source, run.cfg, data.splits['train'][1], runtime.autocast, epoch)
            if run.main:  # under torchrun every rank computed its shard; rank 0 writes
                print('\n' + label_issues.write(stem, rep, train_paths, s.classes, epoch) + '\n')
                print('| label report: %s_label_issues.csv' % stem)

        if s.report_only:
            write_report(run.start_epoch - 1)
            return None
        accs = list(run.state.get('accs', []))
        for epoch in run.epochs():
            # Algorithm 1: warm-up, or co-divide then co-train (monitor: also divide after a warm-up epoch)
            record, _ = run.train_epoch(epoch, monitor=s.track_division)
            if s.eval_split:  # (the device pipeline holds the clean split as its 'test' images)
                acc = run.test('test' if s.pipeline == 'device' else s.eval_split)[0]
                accs.append(acc)
                print('\n| %s Epoch #%d\t Accuracy: %.2f%%\n' % (s.eval_split.title(), epoch, acc))
                run.log.write('acc', 'Epoch:%d   Accuracy:%.2f\n' % (epoch, acc))
                record['test_acc'] = acc
            if s.report_every and (epoch + 1) % s.report_every == 0 and epoch < s.num_epochs:
                write_report(epoch)
            # an --r auto run's checkpoints keep the estimate (None until it is made)
            run.end_epoch(record, accs=accs, **({'r_auto': auto or None} if s.r == 'auto' else {}))
        write_report(s.num_epochs)
        summary = summarize(accs)
        run.save_nets()
        run.finish(summary, dict(summary, run=s.id, classes=s.classes, eval_split=s.eval_split,
                                 **({'r_estimate': auto.get('estimate')} if s.r == 'auto' else {})))
    return summary


def console():
    """The command line: `python Train_folder.py ...` from a clone, `dividemix-folder ...` after `pip install .`."""
    run_main(main, data_errors=(dataloader.DatasetError,))


if __name__ == '__main__':
    console()
