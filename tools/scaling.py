"""How a post-warm-up DivideMix epoch should scale over 1, 2, 4 and 8 GPUs under torchrun, worked out on
paper from times measured on ONE device.

    python scaling.py --dataset clothing1m       # ResNet-50, 224 px, B = 32
    python scaling.py --dataset webvision        # InceptionResNetV2, 299 px, B = 32
    python scaling.py --dataset cifar10          # PreResNet-18, 32 px, B = 64
    python scaling.py --dataset cifar10 --smoke  # seconds on the CPU (tests/test_scaling.py)

Why per-process batch sizes matter: `--batch_size` stays the reference's global batch under torchrun
(docs/distributed.md), so with W processes each one forwards B / W labeled rows per
step and 1 / W of every eval batch. Small batches do not run W times faster, so the projection uses
the time measured AT the per-process batch, not the single-GPU time divided by W.

Measured here, on synthetic tensors through the functions the training scripts run:
  step(b)   one training iteration of one network (dividemix.train_pass: the six no-grad co-guess /
            co-refine forwards, MixUp, the mixed forward, backward, SGD step) with b = B / W labeled and
            b unlabeled rows; for W > 1 also with distributed.GlobalBatchNorm's arithmetic (what the
            default sync BN computes, its collective left out: that is in the model below) against
            the plain BatchNorm of --no_sync_bn
  eval(e)   per-sample-loss forwards (dividemix.per_sample_losses) at e = E / W rows per batch
  gmm       dividemix.fit_gmm on the epoch's number of losses (on the CPU; every process fits it)
Modelled, with the assumptions printed beside the table (--link_GBps, --latency_us):
  per step  the gradient all-reduce (ring: 2 (W-1)/W of 4 bytes per parameter), the gather of the
            global batch's rows ((W-1)/W of them), and the latency of the small collectives (six per
            BatchNorm layer with sync BN, a few more for the losses); no overlap with compute is
            assumed, so the comm column is an upper bound (DDP overlaps the all-reduce with backward)
Not in the projection: image decoding, done per process by DataLoader workers on the CPU; the table
gives the decode rate each process needs to keep up (the device pipeline of CIFAR decodes nothing).
"""
import argparse
import itertools
import math
import os
import time

import sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's root

import numpy as np
import torch

import dividemix as dm
from dividemix_run import distributed
from dividemix_run import logs
from dividemix_run.cli import check_range, run_main
from dividemix_run.runtime import Runtime

# Per dataset: the network, input, the reference's global batch B and eval batches, what one post-warm-up
# epoch evaluates (numbers from SPEC.md and the scripts), and the assumed labeled fraction of the
# division (about 1 - noise rate: CIFAR-10 at 50% symmetric noise, Clothing1M's estimated 38.5%,
# WebVision's ~20%; the training steps scale with it).
DATASETS = {
    'cifar10': dict(model='preresnet18', num_class=10, image=(3, 32, 32), batch_size=64, mix_unlabeled=True,
                    eval_images=50000, eval_batch=1024, test=[('test, both nets', 2 * 10000, 1024)],
                    labeled_fraction=0.5, decoded=False),
    'clothing1m': dict(model='resnet50', num_class=14, image=(3, 224, 224), batch_size=32, mix_unlabeled=False,
                       eval_images=32000, eval_batch=32, test=[('val, each net', 2 * 14313, 1000)],
                       labeled_fraction=0.615, decoded=True),
    'webvision': dict(model='inceptionresnetv2', num_class=50, image=(3, 299, 299), batch_size=32,
                      mix_unlabeled=False, eval_images=66000, eval_batch=640,
                      test=[('WebVision + ImageNet val, both nets', 2 * 5000, 640)],
                      labeled_fraction=0.8, decoded=True),
}


def build(model, num_class, width=None):
    if model == 'preresnet18':
        from PreResNet import ResNet18
        return ResNet18(num_classes=num_class, **({'width': width} if width else {}))
    if model == 'inceptionresnetv2':
        from InceptionResNetV2 import InceptionResNetV2
        return InceptionResNetV2(num_classes=num_class)
    from dividemix_run.pretrained import classifier
    return classifier(model, num_class)


class LocalGlobalBatchNorm(distributed.GlobalBatchNorm):
    """GlobalBatchNorm's training-mode arithmetic with its all-reduce replaced by this process's own
    statistics: on one device it costs what a rank's sync BN computes, without the wire."""

    def _global(self):
        return self.training

    def _all_sum(self, stats):
        return stats


def count_bn(net):
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


def timed(runtime, fn, min_seconds, max_reps):
    """Mean seconds of fn() over at least two calls (after one untimed: cuDNN autotuning), more while
    the total stays under min_seconds."""
    fn()
    runtime.sync()
    times = []
    while len(times) < 2 or (sum(times) < min_seconds and len(times) < max_reps):
        t0 = time.time()
        fn()
        runtime.sync()
        times.append(time.time() - t0)
    return float(np.mean(times))


def measure(spec, runtime, worlds, args):
    """The measured times (seconds) for every per-process batch the worlds need."""
    C, shape, B = spec['num_class'], spec['image'], spec['batch_size']
    nets = [runtime.model(build(spec['model'], C, args.width)) for _ in range(2)]
    params = sum(p.numel() for p in nets[0].parameters())
    n_bn = count_bn(nets[0])
    cfg = dm.Config(num_class=C, warm_up=10, batch_size=B, mix_unlabeled=spec['mix_unlabeled'])
    # lr 0: the same kernels as any lr, and the random-init net on random inputs, stepped again and again,
    # cannot diverge (train_pass stops on a non-finite loss)
    optimizer = torch.optim.SGD(nets[0].parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)
    dev = runtime.device
    out = {'params': params, 'bn_layers': n_bn, 'device': runtime.describe(), 'step_s': {}, 'step_sync_bn_s': {},
           'eval_s': {}}

    def inputs(n):
        x = torch.randn(n, *shape, device=dev)
        return x.contiguous(memory_format=torch.channels_last) if runtime.channels_last else x

    def step_fn(net, b):
        x, x2, u, u2 = inputs(b), inputs(b), inputs(b), inputs(b)
        labeled = [(x, x2, torch.randint(0, C, (b,), device=dev), torch.rand(b, device=dev))] * args.steps
        rng = np.random.RandomState(0)
        return lambda: dm.train_pass(net, nets[1], optimizer, labeled, itertools.repeat((u, u2)), cfg, epoch=20,
                                     num_iter=100, rng=rng, autocast=runtime.autocast)

    for W in worlds:
        out['step_s'][W] = timed(runtime, step_fn(nets[0], B // W), args.min_seconds, args.max_reps) / args.steps
    for e in sorted({max(1, E // W) for _, _, E in spec['test'] + [(None, None, spec['eval_batch'])]
                     for W in worlds}):
        batch = [(inputs(e), torch.randint(0, C, (e,), device=dev), torch.arange(e))]
        out['eval_s'][e] = timed(runtime, lambda: dm.per_sample_losses(nets[0], batch, runtime.autocast),
                                 args.min_seconds, args.max_reps)
    # the same steps with the sync-BN arithmetic (the plain BN above is --no_sync_bn's); the conversion
    # happens in place (same parameters), so it comes after every plain measurement
    synced = distributed._convert(nets[0], LocalGlobalBatchNorm)
    for W in worlds[1:]:
        out['step_sync_bn_s'][W] = timed(runtime, step_fn(synced, B // W), args.min_seconds,
                                         args.max_reps) / args.steps
    losses = np.concatenate([np.random.RandomState(0).gamma(2, 0.2, spec['eval_images'] // 2),
                             np.random.RandomState(1).gamma(9, 0.4, spec['eval_images'] - spec['eval_images'] // 2)])
    norm = dm.normalize_losses(torch.from_numpy(losses)).reshape(-1, 1).numpy()
    t0 = time.time()
    for seed in range(3):
        dm.fit_gmm(norm, random_state=seed)
    out['gmm_s'] = (time.time() - t0) / 3
    return out


def comm_per_step(spec, m, W, link_GBps, latency_us):
    """Modelled seconds of one training step's communication for one process, with the default sync BN
    (no overlap assumed)."""
    if W == 1:
        return 0.0
    B = spec['batch_size']
    row = 4 * int(np.prod(spec['image']))           # fp32 image row
    grads = 2 * (W - 1) / W * 4 * m['params']
    rows = (W - 1) / W * (4 * B * row + 2 * B * 4 * spec['num_class'])  # x, x2, u, u2 rows; targets of x and u
    collectives = 6 * m['bn_layers'] + 6  # sync BN per layer; row gathers, penalty, totals
    return (grads + rows) / (link_GBps * 1e9) + collectives * latency_us * 1e-6


def project(spec, m, worlds, link_GBps, latency_us):
    """Rows of the projection: one post-warm-up epoch of one process, per world size."""
    B, E = spec['batch_size'], spec['eval_batch']
    steps = math.ceil(spec['labeled_fraction'] * spec['eval_images'] / B)  # per network
    rows = []
    for W in worlds:
        step = m['step_sync_bn_s'].get(W, m['step_s'][W])
        comm = comm_per_step(spec, m, W, link_GBps, latency_us)
        train = 2 * steps * step
        evals = 2 * math.ceil(spec['eval_images'] / E) * m['eval_s'][max(1, E // W)]
        test = sum(math.ceil(n / e) * m['eval_s'][max(1, e // W)] for _, n, e in spec['test'])
        gmm = 2 * m['gmm_s']
        compute = train + evals + test + gmm
        wire = 2 * steps * comm
        # images a process decodes per epoch: per step b labeled (two views of one decode) + b unlabeled;
        # its share of the eval and test images
        decoded = 2 * steps * 2 * (B // W) + (2 * spec['eval_images'] + sum(n for _, n, _ in spec['test'])) / W
        rows.append(dict(W=W, b=B // W, step_ms=1000 * step, plain_bn_step_ms=1000 * m['step_s'][W],
                         comm_ms=1000 * comm, steps=steps, train_s=train, eval_s=evals, test_s=test, gmm_s=gmm,
                         epoch_s=compute, epoch_comm_s=compute + wire, decode_per_s=decoded / (compute + wire)))
    base = rows[0]['epoch_s']
    for r in rows:
        r['speedup'] = base / r['epoch_comm_s']
        r['speedup_no_comm'] = base / r['epoch_s']
    return rows


def table(spec, m, rows, args):
    lines = ['| GPUs | rows per process (b) | step, sync BN (plain BN) | comm per step (modelled) | train | eval_train '
             '| test | GMM | epoch (without comm .. with) | speed-up over 1 (with comm .. without) |%s' %
             (' decodes/s per process |' if spec['decoded'] else ''),
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |%s' %
             (' --- |' if spec['decoded'] else '')]
    for r in rows:
        lines.append('| %d | %d | %.1f ms (%.1f) | %.2f ms | %.1f s | %.1f s | %.1f s | %.2f s | %.1f .. %.1f s '
                     '| %.2fx .. %.2fx |%s' % (
                         r['W'], r['b'], r['step_ms'], r['plain_bn_step_ms'], r['comm_ms'], r['train_s'], r['eval_s'],
                         r['test_s'], r['gmm_s'], r['epoch_s'], r['epoch_comm_s'], r['speedup'],
                         r['speedup_no_comm'], ' %.0f |' % r['decode_per_s'] if spec['decoded'] else ''))
    lines += ['', '%s: %s, %.1f M parameters, %d BatchNorm layers, B = %d, eval batch %d; %s steps per network per '
              'epoch (labeled fraction %.3f of %d, assumed); GMM on %d losses %.3f s (CPU). Assumed link: %.0f GB/s '
              'bus bandwidth, %.0f us per collective, no overlap.' % (
                  args.dataset, m['device'], m['params'] / 1e6, m['bn_layers'], spec['batch_size'], spec['eval_batch'],
                  rows[0]['steps'], spec['labeled_fraction'], spec['eval_images'], spec['eval_images'], m['gmm_s'],
                  args.link_GBps, args.latency_us)]
    return '\n'.join(lines)


def parse_args(argv=None):
    """(args, spec, worlds) from the command line; spec is the dataset's, shrunk by --smoke."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--dataset', choices=sorted(DATASETS), default='clothing1m')
    p.add_argument('--worlds', default='1,2,4,8', help='process counts to project (B must divide by each)')
    p.add_argument('--device', default='auto', choices=['auto', 'cuda', 'cpu'])
    p.add_argument('--precision', default='fp32', choices=['fp32', 'bf16'])
    p.add_argument('--channels_last', action='store_true')
    p.add_argument('--steps', type=int, default=5, help='training iterations per timed call')
    p.add_argument('--min_seconds', type=float, default=1.0, help='time each measurement for at least this long')
    p.add_argument('--max_reps', type=int, default=10)
    p.add_argument('--link_GBps', type=float, default=300.0,
                   help='assumed all-reduce bus bandwidth (GB/s): ~300 for NVLink within a node, ~25 for PCIe '
                        'or a 200 Gb/s network')
    p.add_argument('--latency_us', type=float, default=20.0, help='assumed time of one small collective (us)')
    p.add_argument('--out', default=None, help='folder for scaling_<dataset>.json and .md')
    p.add_argument('--smoke', action='store_true',
                   help='seconds on the CPU: 32 px images (299 for InceptionResNetV2, which needs it), width-8 '
                        'PreResNet, B = 8, eval batches / 64, 256 eval images')
    p.add_argument('--width', type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    check_range('link_GBps', args.link_GBps, 0, lo_open=True)
    check_range('latency_us', args.latency_us, 0)
    check_range('min_seconds', args.min_seconds, 0)
    for name in ('steps', 'max_reps'):
        check_range(name, getattr(args, name), 1)
    spec = dict(DATASETS[args.dataset])
    try:
        worlds = sorted({int(w) for w in args.worlds.split(',')})
    except ValueError:
        p.error('--worlds %r: give process counts separated by commas, e.g. 1,2,4,8' % args.worlds)
    if args.smoke:
        size = 299 if spec['model'] == 'inceptionresnetv2' else 32
        spec.update(image=(3, size, size), batch_size=8 if size < 299 else 4, eval_images=256,
                    eval_batch=max(2, spec['eval_batch'] // 64),
                    test=[(n, 32, max(2, e // 64)) for n, _, e in spec['test']])
        args.width = args.width or (8 if spec['model'] == 'preresnet18' else None)
        args.steps, args.min_seconds, args.max_reps = 1, 0.0, 2
        args.device = 'cpu' if args.device == 'auto' else args.device
    bad = [W for W in worlds if W < 1 or spec['batch_size'] % W]
    if bad:
        p.error('--worlds %s: the global batch %d must split evenly over every process count' % (
            ','.join(map(str, bad)), spec['batch_size']))
    if worlds[0] != 1:
        worlds = [1] + worlds  # the speed-ups are over one process
    return args, spec, worlds


def main(argv=None):
    args, spec, worlds = parse_args(argv)
    torch.manual_seed(0)
    runtime = Runtime(args.device, precision=args.precision, channels_last=args.channels_last)
    m = measure(spec, runtime, worlds, args)
    rows = project(spec, m, worlds, args.link_GBps, args.latency_us)
    md = table(spec, m, rows, args)
    print(md, flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        stem = os.path.join(args.out, 'scaling_%s' % args.dataset)
        with open(stem + '.md', 'w') as f:
            f.write(md + '\n')
        with open(stem + '.json', 'w') as f:
            logs.dump({'args': vars(args), 'spec': spec, 'measured': m, 'rows': rows}, f, indent=1)
    return rows


if __name__ == '__main__':
    run_main(main)
