"""DivideMix on Clothing1M (ResNet-50 from ImageNet weights).

    python Train_clothing1M.py --data_path <Clothing1M root>

The reference's flags, defaults, sampling, schedule, checkpoints and log lines; the
algorithm lives in dividemix.py, the data in dataloader_clothing1M.py / data_sources.py,
the run's plumbing in run.py.
"""
import argparse
import os

import torch
import torchvision

import dataloader_clothing1M as dataloader
from dividemix_run import paper
from dividemix_run import plan
from dividemix_run.checkpoints import atomic_save, file_digest
from dividemix_run.cli import (Settings, UsageError, add_image_args, add_reference_args, add_runtime_args, check_common_args,
                 check_output_dir, check_range, check_T, run_main, set_image_limit)
from dividemix_run.data_sources import ClothingSource
from dividemix_run.pretrained import classifier, load_weights, weights_note
from dividemix_run.run import Run, algorithm_config
from dividemix_run.runtime import Runtime


def build_parser():
    p = argparse.ArgumentParser(description='DivideMix on Clothing1M')
    add_reference_args(p, batch_size=32, lr=0.002, alpha=0.5, lambda_u=0, p_threshold=0.5, num_epochs=80,
                       id='clothing1m', num_class=14, data_path='../../Clothing1M/data',
                       lambda_u_help='weight for unsupervised loss (unused: only the labeled part is mixed)')
    p.add_argument('--num_batches', default=1000, type=int)
    g = p.add_argument_group('added (not in the reference)')
    g.add_argument('--warm_up', default=1, type=int, help='warm-up epochs')
    g.add_argument('--lr_decay_epoch', default=40, type=int, help='lr / 10 from this epoch on')
    g.add_argument('--eval_batch_size', default=1000, type=int, help='val/test batch')
    g.add_argument('--pretrained_path', default=None,
                   help='local file of torchvision\'s ResNet-50 ImageNet weights (resnet50-0676ba61.pth)')
    g.add_argument('--offline', action='store_true', help='never try to download the ImageNet weights')
    g.add_argument('--random_init', action='store_true',
                   help='train ResNet-50 from scratch instead of ImageNet weights (not the paper\'s setting)')
    add_image_args(p)
    add_runtime_args(p)
    return p


def check_args(args):
    check_common_args(args)
    check_T(args.T, args.num_class)
    set_image_limit(args.max_image_pixels)
    for name in ('num_batches', 'eval_batch_size'):
        check_range(name, getattr(args, name), 1)
    check_range('warm_up', args.warm_up, 1, hint='the first division needs nets warmed up for at least one epoch')
    if args.num_class != dataloader.NUM_CLASS:
        raise UsageError('--num_class %d does not match Clothing1M, which has %d classes: drop --num_class'
                         % (args.num_class, dataloader.NUM_CLASS))


# ResNet-50 with ImageNet weights, never silently from scratch (pretrained.py)

WEIGHTS = torchvision.models.ResNet50_Weights.IMAGENET1K_V1  # what pretrained=True gave the reference


def imagenet_weights(args):
    """The ImageNet state dict of torchvision's ResNet-50 from --pretrained_path, torch's cache, or a
    download; else a clear error (--dry_run: None where a download would be needed)."""
    return load_weights(WEIGHTS, args.pretrained_path, args.offline, what='ResNet-50 ImageNet weights',
                        download=not args.dry_run)


def create_model(s, state=None):
    """torchvision's ResNet-50 with `state` (ImageNet weights; None: random init), fc -> Linear(2048, 14)."""
    return classifier('resnet50', s.num_class, state)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args)
    runtime = Runtime.from_args(args)
    check_output_dir(args.checkpoint_dir, create=not args.dry_run)
    loader = dataloader.clothing_dataloader(args.data_path, args.batch_size, args.num_batches, args.num_workers,
                                            num_class=args.num_class, eval_batch_size=args.eval_batch_size,
                                            pin_memory=runtime.pin_memory)
    try:
        loader.check()
        val_size = len(loader.run('val').dataset)
        if args.dry_run:
            splits = {name: dataloader._read_list(args.data_path, name, False)
                      for name in (dataloader.TRAIN_KEYS, dataloader.VAL_KEYS, dataloader.TEST_KEYS)}
            decoded = plan.decode_sample([p for paths in splits.values() for p in paths], what='Clothing1M images')
    except dataloader.DatasetError as e:
        raise UsageError(str(e)) from None
    imagenet_state = None if args.random_init else imagenet_weights(args)

    s = Settings.from_args(args)
    stem = os.path.join(s.checkpoint_dir, s.id)
    with Run('Train_clothing1M', s, runtime, stem=stem,
             log_files={'log': stem + '.txt', 'json': stem + '_log.jsonl'},
             label_digest=file_digest(os.path.join(s.data_path, dataloader.NOISY_KV),
                                      os.path.join(s.data_path, dataloader.TRAIN_KEYS)),
             name='Clothing1M', title='DivideMix Clothing1M, run %s' % s.id,
             notes=['paper result: %.2f%% test accuracy' % paper.CLOTHING1M_TEST],
             info=['device: %s; %d validation images' % (runtime.describe(), val_size)], dry_run=args.dry_run) as run:
        if run.dry_run:
            n, n_val, n_test = (len(splits[k]) for k in (dataloader.TRAIN_KEYS, dataloader.VAL_KEYS,
                                                         dataloader.TEST_KEYS))
            sample = s.num_batches * s.batch_size
            run.plan(parser, argv, lambda: create_model(s, imagenet_state), data=[
                'data: Clothing1M at %s: %d noisy training images (each epoch a class-balanced sample of %d for '
                'warm-up, %d for co-divide), %d clean validation and %d clean test images, %d classes; labels '
                'in range; %d sampled images decoded' % (s.data_path, n, 2 * sample, sample, n_val, n_test,
                                                         s.num_class, decoded)],
                schedule=plan.schedule_lines(s, warmup=(2 * sample, 2 * s.batch_size), divide=(sample, s.batch_size),
                                             train=(sample, s.batch_size),
                                             test=[('validation of each net', n_val, s.eval_batch_size)])
                + ['at the end: the test of both nets\' best weights, %d batches' % plan.steps(n_test, s.eval_batch_size)],
                notes=[n for n in [None if s.random_init else weights_note(WEIGHTS, imagenet_state,
                                                                          'ResNet-50 ImageNet weights')] if n])
            return None
        # only the labeled rows are mixed, loss Lx + penalty (lambda_u unused); warm-up CE + confidence penalty
        cfg = algorithm_config(s, mix_unlabeled=False, conf_penalty=True)
        run.build(lambda: create_model(s, imagenet_state), cfg, ClothingSource(loader, runtime), weight_decay=1e-3,
                  batch_sizes=(s.batch_size, 2 * s.batch_size, s.eval_batch_size))

        # -1, not the reference's 0: a net whose validation accuracy stays 0% is still saved once, so the
        # final test finds its file (the reference crashed there)
        best_acc = list(run.state.get('best_acc', [-1.0, -1.0]))
        best_paths = [stem + '_net1.pth.tar', stem + '_net2.pth.tar']
        for epoch in run.epochs():
            record, _ = run.train_epoch(epoch)  # Algorithm 1: warm-up, or co-divide then co-train
            accs = [run.test('val', nets=[k])[0] for k in range(2)]
            for k in range(2):  # validate each net; keep its best weights
                print('\n| Validation\t Net%d  Acc: %.2f%%' % (k + 1, accs[k]))
                if accs[k] > best_acc[k]:
                    best_acc[k] = accs[k]
                    print('| Saving Best Net%d ...' % (k + 1))
                    atomic_save(run.nets[k].state_dict(), best_paths[k])
            run.log.write('log', 'Validation Epoch:%d      Acc1:%.2f  Acc2:%.2f\n' % (epoch, accs[0], accs[1]))
            record.update({'val_acc1': accs[0], 'val_acc2': accs[1]})
            run.end_epoch(record, best_acc=best_acc)

        for k in range(2):  # the test: the ensemble of both nets' best weights
            if not os.path.exists(best_paths[k]):
                raise UsageError('no best weights at %s to test (the run saved none: did every validation give '
                                 '0%%?)' % best_paths[k])
            run.nets[k].load_state_dict(torch.load(best_paths[k], map_location=runtime.device, weights_only=True))
        acc = run.test('test')[0]
        print('\n| Test Acc: %.2f%%\n' % acc)
        run.log.write('log', 'Test Accuracy:%.2f\n' % acc)
        run.finish({'test_acc': acc, 'best_val_acc1': best_acc[0], 'best_val_acc2': best_acc[1],
                    'paper_test_acc': paper.CLOTHING1M_TEST}, {'test_acc': acc, 'best_val_acc': best_acc, 'run': s.id})
    return acc


def console():
    """The command line: `python Train_clothing1M.py ...` from a clone, `dividemix-clothing1m ...` after `pip install .`."""
    run_main(main, data_errors=(dataloader.DatasetError,))


if __name__ == '__main__':
    console()
