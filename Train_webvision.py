"""DivideMix on WebVision 1.0 (first 50 classes), tested on WebVision val and ILSVRC12 val.

    python Train_webvision.py --data_path <WebVision root>/

The reference's flags, defaults, schedule and log lines; the algorithm lives in
dividemix.py, the data in dataloader_webvision.py, the model in InceptionResNetV2.py.
"""
import argparse
import json
import os
import time
import torch
import torch.optim as optim

import dataloader_webvision as dataloader
import dividemix as dm
import paper
from InceptionResNetV2 import InceptionResNetV2
from train_utils import (LoaderPipeline, Runtime, UsageError, add_reference_args, add_runtime_args, atomic_save,
                         begin_epoch, check_common_args, check_output_dir, check_range, checkpoint_state, file_digest,
                         on_device, prepare_run, print_settings, resume_nets, run_main, seed_everything,
                         set_rng_state, summarize, train_on_divisions, warmup_nets)


def build_parser():
    p = argparse.ArgumentParser(description='DivideMix on WebVision')
    add_reference_args(p, batch_size=32, lr=0.01, alpha=0.5, lambda_u=0, p_threshold=0.5, num_epochs=80, id='',
                       num_class=50, data_path='./dataset/',
                       lambda_u_help='weight for unsupervised loss (unused: only the labeled part is mixed)')
    g = p.add_argument_group('added (not in the reference)')
    g.add_argument('--warm_up', default=1, type=int, help='warm-up epochs')
    g.add_argument('--lr_decay_epoch', default=40, type=int,
                   help='lr / 10 from this epoch on (the reference\'s two-GPU variant: 50, with 100 epochs)')
    add_runtime_args(p)
    return p


def check_args(args):
    check_common_args(args)
    check_range('num_class', args.num_class, 1, 1000, hint='WebVision 1.0 has 1000 classes')
    check_range('warm_up', args.warm_up, 1, hint='the first division is made at the end of a warm-up epoch')

def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    runtime = Runtime.from_args(args)
    check_output_dir(args.checkpoint_dir)
    loader = dataloader.webvision_dataloader(args.batch_size, args.num_class, args.num_workers, args.data_path, None)
    try:
        loader.check()
        N = len(loader.run('eval_train').dataset)
    except dataloader.DatasetError as e:
        raise UsageError(str(e)) from None
    if N < 2:
        raise UsageError('%s lists %d training image(s) of classes < %d; DivideMix needs at least 2'
                         % (os.path.join(args.data_path, dataloader.TRAIN_LIST), N, args.num_class))

    settings = dict(vars(args))
    stem = os.path.join(args.checkpoint_dir, args.id)
    files = {'acc': stem + '_acc.txt', 'stats': stem + '_stats.txt', 'json': stem + '_log.jsonl'}
    ckpt_path = stem + '_checkpoint.pth.tar'
    label_digest = file_digest(os.path.join(args.data_path, dataloader.TRAIN_LIST))
    ckpt, log = prepare_run(args, settings, ckpt_path, files, label_digest)
    print_settings('DivideMix WebVision, run %r' % args.id, settings,
                   ['paper: WebVision top-1/top-5 %(webvision_top1).2f / %(webvision_top5).2f, '
                    'ILSVRC12 top-1 %(imagenet_top1).2f' % paper.WEBVISION])
    print('| device: %s; %d training images of %d classes' % (runtime.describe(), N, args.num_class))

    seed_everything(args.seed)
    print('| Building net')
    net1 = runtime.model(InceptionResNetV2(num_classes=args.num_class))
    net2 = runtime.model(InceptionResNetV2(num_classes=args.num_class))
    optimizer1 = optim.SGD(net1.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    optimizer2 = optim.SGD(net2.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sizes = (args.batch_size, 2 * args.batch_size, 20 * args.batch_size)
    runs = (runtime.runner(net1, sizes), runtime.runner(net2, sizes))
    nets, optimizers = (net1, net2), (optimizer1, optimizer2)
    pipeline = LoaderPipeline(loader, runtime, N)
    gmm_state = None if args.unseeded_gmm else args.seed
    results, start_epoch, probs = [], 0, None
    if ckpt is not None:
        resume_nets(ckpt, nets, optimizers)
        results, start_epoch = list(ckpt['results']), ckpt['epoch'] + 1
        probs = [t.numpy() for t in ckpt['probs']]
        set_rng_state(ckpt['rng'])
        print('| resumed after epoch %d' % ckpt['epoch'])

    def write_stats(peer, prob, pred):
        log.write('stats', 'Numer of labeled samples:%d \n' % int(pred.sum()))

    name = 'WebVision%s' % (' ' + args.id if args.id else '')
    for epoch in range(start_epoch, args.num_epochs + 1):
        t0 = time.time()
        record = begin_epoch(epoch, args, optimizers)
        if epoch < args.warm_up:  # cross-entropy only on WebVision (no confidence penalty)
            n_iter = (N + 2 * args.batch_size - 1) // (2 * args.batch_size)
            record.update(warmup_nets(epoch, runs, optimizers, lambda k: pipeline.warmup_batches(), False, runtime,
                                      name, args.log_every, n_iter))
        else:
            record.update(train_on_divisions(
                epoch, runs, optimizers, probs, args.p_threshold,
                lambda peer, pred, prob: pipeline.train_batches(pred, prob), runtime, name, args.log_every,
                args.batch_size, args.num_class, args.warm_up, args.T, args.alpha, args.lambda_u,
                mix_unlabeled=False, randperm=pipeline.randperm, on_division=write_stats))
            for k in range(2):
                record['labeled%d' % (k + 1)] = int((probs[k] > args.p_threshold).sum())

        web = dm.ensemble_accuracy(runs, pipeline.test_batches(), topk=(1, 5), autocast=runtime.autocast)
        imagenet = dm.ensemble_accuracy(runs, on_device(loader.run('imagenet'), runtime), topk=(1, 5),
                                        autocast=runtime.autocast)
        line = 'Epoch:%d \t WebVision Acc: %.2f%% (%.2f%%) \t ImageNet Acc: %.2f%% (%.2f%%)\n' % (
            epoch, web[0], web[1], imagenet[0], imagenet[1])
        print('\n| Test ' + line.replace('Epoch:', 'Epoch #'))
        log.write('acc', line)
        results.append([web[0], web[1], imagenet[0], imagenet[1]])

        probs = []
        for k in range(2):  # divisions for the next epoch
            print('\n==== net %d evaluate training data loss ====' % (k + 1))
            out = dm.eval_train(runs[k], pipeline.eval_batches(), N, None, 1, random_state=gmm_state,
                                autocast=runtime.autocast)
            probs.append(out['prob'])
        record.update({'webvision_top1': web[0], 'webvision_top5': web[1], 'imagenet_top1': imagenet[0],
                       'imagenet_top5': imagenet[1], 'seconds': round(time.time() - t0, 3)})
        log.json('json', record)
        atomic_save(checkpoint_state('Train_webvision', epoch, settings, label_digest, nets, optimizers, log,
                                     results=results, probs=[torch.as_tensor(p) for p in probs]), ckpt_path)

    for k in range(2):
        atomic_save(nets[k].state_dict(), '%s_net%d.pth.tar' % (stem, k + 1))
    names = ('webvision_top1', 'webvision_top5', 'imagenet_top1', 'imagenet_top5')
    summary = {n: summarize([r[i] for r in results]) for i, n in enumerate(names)}
    log.json('json', {'summary': summary})
    log.close()
    with open(stem + '_summary.json', 'w') as f:
        json.dump(summary, f, indent=1)
    print('| Done: WebVision top-1 best %.2f%% last %.2f%%; ImageNet top-1 best %.2f%% last %.2f%%'
          % (summary['webvision_top1']['best'], summary['webvision_top1']['last'],
             summary['imagenet_top1']['best'], summary['imagenet_top1']['last']))
    return summary


if __name__ == '__main__':
    run_main(main, data_errors=(dataloader.DatasetError,))
