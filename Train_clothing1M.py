"""DivideMix on Clothing1M (ResNet-50 from ImageNet weights).

    python Train_clothing1M.py --data_path <Clothing1M root>

The reference's flags, defaults, sampling, schedule, checkpoints and log lines; the
algorithm lives in dividemix.py, the data in dataloader_clothing1M.py.
"""
import argparse
import json
import os
import socket
import time

import torch
import torch.nn as nn
import torch.optim as optim
import torchvision

import dataloader_clothing1M as dataloader
import dividemix as dm
import paper
from train_utils import (Runtime, UsageError, add_reference_args, add_runtime_args, atomic_save, begin_epoch,
                         check_common_args, check_output_dir, check_range, checkpoint_state, file_digest, on_device,
                         prepare_run, print_settings, randperm_cpu, resume_nets, run_main, seed_everything,
                         set_rng_state, train_on_divisions, warmup_nets)


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
    add_runtime_args(p)
    return p


def check_args(args):
    check_common_args(args)
    for name in ('num_batches', 'eval_batch_size'):
        check_range(name, getattr(args, name), 1)
    check_range('warm_up', args.warm_up, 1, hint='the first division is made at the end of a warm-up epoch')
    if args.num_class != dataloader.NUM_CLASS:
        raise UsageError('--num_class %d does not match Clothing1M, which has %d classes: drop --num_class'
                         % (args.num_class, dataloader.NUM_CLASS))


# ----------------------------------------------------------------------------------
# ResNet-50 with ImageNet weights, never silently from scratch
# ----------------------------------------------------------------------------------

def imagenet_weights(args):
    """The ImageNet state dict of torchvision's ResNet-50 (IMAGENET1K_V1, what pretrained=True gave
    the reference), from --pretrained_path, torch's cache, or a download; else a clear error."""
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    filename = os.path.basename(weights.url)
    cache = os.path.join(torch.hub.get_dir(), 'checkpoints', filename)
    how = ('Provide them with --pretrained_path /path/to/%s, or put that file in torch\'s cache folder %s '
           '(set TORCH_HOME to move the cache), e.g. after downloading %s on a machine with internet. '
           '--random_init trains from scratch instead (not the paper\'s setting).'
           % (filename, os.path.dirname(cache), weights.url))
    path = args.pretrained_path or cache
    if args.pretrained_path and not os.path.isfile(path):
        raise UsageError('--pretrained_path %s does not exist. %s' % (path, how))
    if not os.path.isfile(path):
        if args.offline:
            raise UsageError('ResNet-50 ImageNet weights are not cached at %s and --offline forbids a download. %s'
                             % (cache, how))
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(60)
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            torch.hub.download_url_to_file(weights.url, cache, progress=False)
        except Exception as e:
            raise UsageError('ResNet-50 ImageNet weights are not cached at %s and downloading %s failed (%s). %s'
                             % (cache, weights.url, str(e).splitlines()[0][:200], how)) from None
        finally:
            socket.setdefaulttimeout(old)
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise UsageError('cannot read ImageNet weights %s (%s). %s'
                         % (path, str(e).splitlines()[0][:200], how)) from None
    return state.get('state_dict', state) if isinstance(state, dict) else state


def create_model(args, state=None):
    model = torchvision.models.resnet50(weights=None)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise UsageError('the weights file does not fit torchvision\'s ResNet-50 (%s); pass the ImageNet '
                             'weights of torchvision.models.resnet50' % str(e).splitlines()[0][:200]) from None
    model.fc = nn.Linear(2048, args.num_class)
    return model


# ----------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------

class ClothingPipeline(object):
    """Clothing1M's loaders behind the scripts' batch interface. A division is made on the
    images of one eval sample and travels with their paths."""

    def __init__(self, loader, runtime):
        self.loader = loader
        self.runtime = runtime

    def warmup_batches(self):
        return on_device(self.loader.run('warmup'), self.runtime)

    def eval_sample(self):
        """(batches of (x, label, position), paths, size) over a fresh class-balanced eval sample."""
        loader = self.loader.run('eval_train')
        paths = []

        def batches():
            n = 0
            for x, y, p in loader:
                paths.extend(p)
                yield self.runtime.inputs(x), y.to(self.runtime.device), torch.arange(n, n + len(p))
                n += len(p)
        return batches(), paths, len(loader.dataset)

    def train_batches(self, pred, prob, paths):
        labeled, unlabeled = self.loader.run('train', pred, prob, paths=paths)
        stream = None
        if len(unlabeled.dataset):
            def stream_of(loader):
                while True:
                    yield from on_device(loader, self.runtime)
            stream = stream_of(unlabeled)
        return on_device(labeled, self.runtime), stream, len(labeled.dataset)

    def batches(self, mode):
        return on_device(self.loader.run(mode), self.runtime)


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    runtime = Runtime.from_args(args)
    check_output_dir(args.checkpoint_dir)
    loader = dataloader.clothing_dataloader(args.data_path, args.batch_size, args.num_batches, args.num_workers,
                                            num_class=args.num_class, eval_batch_size=args.eval_batch_size)
    try:
        loader.check()
        val_size = len(loader.run('val').dataset)
    except dataloader.DatasetError as e:
        raise UsageError(str(e)) from None
    imagenet_state = None if args.random_init else imagenet_weights(args)

    settings = dict(vars(args))
    stem = os.path.join(args.checkpoint_dir, args.id)
    files = {'log': stem + '.txt', 'json': stem + '_log.jsonl'}
    ckpt_path = stem + '_checkpoint.pth.tar'
    label_digest = file_digest(os.path.join(args.data_path, dataloader.NOISY_KV),
                               os.path.join(args.data_path, dataloader.TRAIN_KEYS))
    ckpt, log = prepare_run(args, settings, ckpt_path, files, label_digest)
    print_settings('DivideMix Clothing1M, run %s' % args.id, settings,
                   ['paper result: %.2f%% test accuracy' % paper.CLOTHING1M_TEST])
    print('| device: %s; %d validation images' % (runtime.describe(), val_size))

    seed_everything(args.seed)
    print('| Building net')
    net1 = runtime.model(create_model(args, imagenet_state))
    net2 = runtime.model(create_model(args, imagenet_state))
    optimizer1 = optim.SGD(net1.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-3)
    optimizer2 = optim.SGD(net2.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-3)
    sizes = (args.batch_size, 2 * args.batch_size, args.eval_batch_size)
    runs = (runtime.runner(net1, sizes), runtime.runner(net2, sizes))
    nets, optimizers = (net1, net2), (optimizer1, optimizer2)
    pipeline = ClothingPipeline(loader, runtime)
    gmm_state = None if args.unseeded_gmm else args.seed
    # -1, not the reference's 0: a net whose validation accuracy stays 0% is still saved once, so the
    # final test finds its file (the reference crashed there)
    best_acc, start_epoch, division = [-1.0, -1.0], 0, None
    best_paths = [stem + '_net1.pth.tar', stem + '_net2.pth.tar']
    if ckpt is not None:
        resume_nets(ckpt, nets, optimizers)
        best_acc, start_epoch = list(ckpt['best_acc']), ckpt['epoch'] + 1
        division = ckpt['division']
        set_rng_state(ckpt['rng'])
        print('| resumed after epoch %d' % ckpt['epoch'])

    name = 'Clothing1M'
    for epoch in range(start_epoch, args.num_epochs + 1):
        t0 = time.time()
        record = begin_epoch(epoch, args, optimizers)
        if epoch < args.warm_up:
            # each net warms up on its own freshly sampled class-balanced set; CE + confidence penalty
            record.update(warmup_nets(epoch, runs, optimizers, lambda k: pipeline.warmup_batches(), True, runtime,
                                      name, args.log_every, args.num_batches))
        else:
            probs = [torch.as_tensor(division['prob%d' % (k + 1)]).numpy() for k in range(2)]
            record.update(train_on_divisions(
                epoch, runs, optimizers, probs, args.p_threshold,
                lambda peer, pred, prob: pipeline.train_batches(pred, prob, division['paths%d' % (peer + 1)]),
                runtime, name, args.log_every, args.batch_size, args.num_class, args.warm_up, args.T, args.alpha,
                args.lambda_u, mix_unlabeled=False, randperm=randperm_cpu))
            for k in range(2):
                record['labeled%d' % (k + 1)] = int((probs[k] > args.p_threshold).sum())

        accs = []
        for k in range(2):  # validate each net; keep its best weights
            acc = dm.ensemble_accuracy([runs[k]], pipeline.batches('val'), autocast=runtime.autocast)[0]
            print('\n| Validation\t Net%d  Acc: %.2f%%' % (k + 1, acc))
            if acc > best_acc[k]:
                best_acc[k] = acc
                print('| Saving Best Net%d ...' % (k + 1))
                atomic_save(nets[k].state_dict(), best_paths[k])
            accs.append(acc)
        log.write('log', 'Validation Epoch:%d      Acc1:%.2f  Acc2:%.2f\n' % (epoch, accs[0], accs[1]))

        division = {}
        for k in range(2):  # each net divides its own fresh eval sample, for the next epoch
            print('\n==== net %d evaluate next epoch training data loss ====' % (k + 1))
            batches, paths, size = pipeline.eval_sample()
            out = dm.eval_train(runs[k], batches, size, None, 1, random_state=gmm_state, autocast=runtime.autocast)
            division['prob%d' % (k + 1)] = torch.as_tensor(out['prob'])
            division['paths%d' % (k + 1)] = list(paths)
        record.update({'val_acc1': accs[0], 'val_acc2': accs[1], 'seconds': round(time.time() - t0, 3)})
        log.json('json', record)
        atomic_save(checkpoint_state('Train_clothing1M', epoch, settings, label_digest, nets, optimizers, log,
                                     best_acc=best_acc, division=division), ckpt_path)

    for k in range(2):
        if not os.path.exists(best_paths[k]):
            raise UsageError('no best weights at %s to test (the run saved none: did every validation give 0%%?)'
                             % best_paths[k])
        nets[k].load_state_dict(torch.load(best_paths[k], map_location=runtime.device, weights_only=True))
    acc = dm.ensemble_accuracy(runs, pipeline.batches('test'), autocast=runtime.autocast)[0]
    print('\n| Test Acc: %.2f%%\n' % acc)
    log.write('log', 'Test Accuracy:%.2f\n' % acc)
    log.json('json', {'summary': {'test_acc': acc, 'best_val_acc1': best_acc[0], 'best_val_acc2': best_acc[1],
                                  'paper_test_acc': paper.CLOTHING1M_TEST}})
    log.close()
    with open(stem + '_summary.json', 'w') as f:
        json.dump({'test_acc': acc, 'best_val_acc': best_acc, 'run': args.id}, f, indent=1)
    return acc


if __name__ == '__main__':
    run_main(main, data_errors=(dataloader.DatasetError,))
