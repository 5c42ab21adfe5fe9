"""DivideMix on WebVision 1.0 (first 50 classes), tested on WebVision val and ILSVRC12 val.

    python Train_webvision.py --data_path <WebVision root>/

The reference's flags, defaults, schedule and log lines; the algorithm lives in
dividemix.py, the data in dataloader_webvision.py / data_sources.py, the model in
InceptionResNetV2.py, the run's plumbing in run.py.
"""
import argparse
import os

import dataloader_webvision as dataloader
from dividemix_run import paper
from dividemix_run import plan
from dividemix_run.checkpoints import file_digest
from dividemix_run.cli import (Settings, UsageError, add_image_args, add_reference_args, add_runtime_args, check_common_args,
                 check_output_dir, check_range, check_T, run_main, set_image_limit)
from dividemix_run.data_sources import LoaderSource
from InceptionResNetV2 import InceptionResNetV2
from dividemix_run.run import Run, algorithm_config, summarize
from dividemix_run.runtime import Runtime


def build_parser():
    p = argparse.ArgumentParser(description='DivideMix on WebVision')
    add_reference_args(p, batch_size=32, lr=0.01, alpha=0.5, lambda_u=0, p_threshold=0.5, num_epochs=80, id='',
                       num_class=50, data_path='./dataset/',
                       lambda_u_help='weight for unsupervised loss (unused: only the labeled part is mixed)')
    g = p.add_argument_group('added (not in the reference)')
    g.add_argument('--warm_up', default=1, type=int, help='warm-up epochs')
    g.add_argument('--lr_decay_epoch', default=40, type=int,
                   help='lr / 10 from this epoch on (the reference\'s two-GPU variant: 50, with 100 epochs)')
    add_image_args(p)
    add_runtime_args(p)
    return p


def check_args(args):
    check_common_args(args)
    check_range('num_class', args.num_class, 1, 1000, hint='WebVision 1.0 has 1000 classes')
    check_range('warm_up', args.warm_up, 1, hint='the first division needs nets warmed up for at least one epoch')
    check_T(args.T, args.num_class)
    set_image_limit(args.max_image_pixels)

def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args)
    runtime = Runtime.from_args(args)
    check_output_dir(args.checkpoint_dir, create=not args.dry_run)
    loader = dataloader.webvision_dataloader(args.batch_size, args.num_class, args.num_workers, args.data_path, None,
                                             pin_memory=runtime.pin_memory)
    try:
        loader.check()
        N = len(loader.run('eval_train').dataset)
        if args.dry_run:
            val = dataloader.webvision_dataset(args.data_path, None, 'test', args.num_class).val_imgs
            imagenet = [path for _, path in dataloader.imagenet_dataset(args.data_path, None, args.num_class).val_data]
            train = dataloader.webvision_dataset(args.data_path, None, 'all', args.num_class).train_imgs
            decoded = plan.decode_sample([os.path.join(args.data_path, p) for p in train]
                                         + [os.path.join(args.data_path, 'val_images_256', p) for p in val] + imagenet,
                                         what='WebVision and ILSVRC12 images')
    except dataloader.DatasetError as e:
        raise UsageError(str(e)) from None
    if N < 2:
        raise UsageError('%s lists %d training image(s) of classes < %d; DivideMix needs at least 2'
                         % (os.path.join(args.data_path, dataloader.TRAIN_LIST), N, args.num_class))

    s = Settings.from_args(args)
    stem = os.path.join(s.checkpoint_dir, s.id)
    with Run('Train_webvision', s, runtime, stem=stem,
             log_files={'acc': stem + '_acc.txt', 'stats': stem + '_stats.txt', 'json': stem + '_log.jsonl'},
             label_digest=file_digest(os.path.join(s.data_path, dataloader.TRAIN_LIST)),
             name='WebVision%s' % (' ' + s.id if s.id else ''), title='DivideMix WebVision, run %r' % s.id,
             notes=['paper: WebVision top-1/top-5 %(webvision_top1).2f / %(webvision_top5).2f, '
                    'ILSVRC12 top-1 %(imagenet_top1).2f' % paper.WEBVISION],
             info=['device: %s; %d training images of %d classes' % (runtime.describe(), N, s.num_class)],
             dry_run=args.dry_run) as run:
        if run.dry_run:
            run.plan(parser, argv, lambda: InceptionResNetV2(num_classes=s.num_class), data=[
                'data: WebVision at %s: %d training images (Google), %d WebVision and %d ILSVRC12 validation images '
                'of classes 0..%d; labels in range; %d sampled images decoded'
                % (s.data_path, N, len(val), len(imagenet), s.num_class - 1, decoded)],
                schedule=plan.schedule_lines(s, warmup=(N, 2 * s.batch_size), divide=(N, 20 * s.batch_size),
                                             train=(N, s.batch_size),
                                             test=[('WebVision test', len(val), 20 * s.batch_size),
                                                   ('ILSVRC12 test', len(imagenet), 20 * s.batch_size)]))
            return None
        # only the labeled rows are mixed, loss Lx + penalty (lambda_u unused); warm-up is CE only
        cfg = algorithm_config(s, mix_unlabeled=False, conf_penalty=False)
        run.build(lambda: InceptionResNetV2(num_classes=s.num_class), cfg, LoaderSource(loader, runtime),
                  weight_decay=5e-4, batch_sizes=(s.batch_size, 2 * s.batch_size, 20 * s.batch_size),
                  stats_line=lambda st: 'Numer of labeled samples:%d \n' % st['labeled'])

        results = list(run.state.get('results', []))
        for epoch in run.epochs():
            record, _ = run.train_epoch(epoch)  # Algorithm 1: warm-up, or co-divide then co-train
            web, imagenet = run.test('test', topk=(1, 5)), run.test('imagenet', topk=(1, 5))
            line = 'Epoch:%d \t WebVision Acc: %.2f%% (%.2f%%) \t ImageNet Acc: %.2f%% (%.2f%%)\n' % (
                epoch, web[0], web[1], imagenet[0], imagenet[1])
            print('\n| Test ' + line.replace('Epoch:', 'Epoch #'))
            run.log.write('acc', line)
            results.append([web[0], web[1], imagenet[0], imagenet[1]])
            record.update({'webvision_top1': web[0], 'webvision_top5': web[1], 'imagenet_top1': imagenet[0],
                           'imagenet_top5': imagenet[1]})
            run.end_epoch(record, results=results)

        run.save_nets()
        names = ('webvision_top1', 'webvision_top5', 'imagenet_top1', 'imagenet_top5')
        summary = {n: summarize([r[i] for r in results]) for i, n in enumerate(names)}
        run.finish(summary)
        print('| Done: WebVision top-1 best %.2f%% last %.2f%%; ImageNet top-1 best %.2f%% last %.2f%%'
              % (summary['webvision_top1']['best'], summary['webvision_top1']['last'],
                 summary['imagenet_top1']['best'], summary['imagenet_top1']['last']))
    return summary


def console():
    """The command line: `python Train_webvision.py ...` from a clone, `dividemix-webvision ...` after `pip install .`."""
    run_main(main, data_errors=(dataloader.DatasetError,))


if __name__ == '__main__':
    console()
