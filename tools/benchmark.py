"""Time DivideMix epochs on synthetic CIFAR-sized data, pipeline by pipeline.

    python benchmark.py                                   # 50,000 images, the paper's net, on CUDA if present
    python benchmark.py --num_images 2000 --width 8       # a small CPU run
    python benchmark.py --breakdown device                # where a post-warm-up epoch's time goes

For each configuration it times one warm-up epoch (both nets, cross-entropy) and one
post-warm-up epoch (eval_train of both nets, GMM, both training passes on a division
with about half of the samples labeled, ensemble test), through the same functions
Train_cifar.py runs:
    reference     : PIL transforms + DataLoader workers (the reference's data path), fp32
    device        : uint8 data on the device, batch augmentation there, fp32 (TensorFloat-32 off)
    tf32          : device + TensorFloat-32 matmuls and convolutions (CUDA, Ampere and newer)
    bf16_cl       : device + bf16 autocast + channels_last
    deterministic : device + --deterministic (deterministic cuDNN/cuBLAS algorithms), fp32
    compile       : bf16_cl + torch.compile (mode from --compile_mode)
and prints images/s, seconds per epoch, the ratio to the reference pipeline, peak device
memory, and the projected time of a whole run (warm-up epochs + the rest). Before the
timed epochs each configuration runs once, untimed, on a small subset (cuDNN autotuning,
compilation), so the timings are steady-state.
"""
import argparse
import time

import os
import sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's root

import numpy as np
import torch
import torch.optim as optim

import dataloader_cifar as dataloader
import dividemix as dm
from dividemix_run import logs
from dividemix_run.checkpoints import seed_everything
from dividemix_run.cli import run_main
from dividemix_run.data_sources import DeviceSource, LoaderSource
from PreResNet import ResNet18
from dividemix_run.runtime import Runtime

CONFIGS = {
    'reference': dict(pipeline='reference', precision='fp32', channels_last=False, compile=False),
    'device': dict(pipeline='device', precision='fp32', channels_last=False, compile=False),
    'tf32': dict(pipeline='device', precision='tf32', channels_last=False, compile=False),
    'bf16_cl': dict(pipeline='device', precision='bf16', channels_last=True, compile=False),
    'deterministic': dict(pipeline='device', precision='fp32', channels_last=False, compile=False,
                          deterministic=True),
    'compile': dict(pipeline='device', precision='bf16', channels_last=True, compile=True),
}


def synthetic_data(num_images, num_test, seed=0):
    """A CIFAR-10-shaped NoisyData: random uint8 images, random labels, 50% sym noise."""
    rng = np.random.RandomState(seed)
    raw = {'train_data': rng.randint(0, 256, (num_images, 32, 32, 3), dtype=np.uint8),
           'train_label': rng.randint(0, 10, num_images),
           'test_data': rng.randint(0, 256, (num_test, 32, 32, 3), dtype=np.uint8),
           'test_label': rng.randint(0, 10, num_test)}
    noisy = dataloader.inject_noise(raw['train_label'], 0.5, 'sym', 10, rng=__import__('random').Random(seed))
    return dataloader.NoisyData('cifar10', raw, noisy)


def subset(data, n):
    raw = {'train_data': data.train_data[:n], 'train_label': data.train_label[:n],
           'test_data': data.test_data[:n], 'test_label': data.test_label[:n]}
    return dataloader.NoisyData('cifar10', raw, data.noise_label[:n])


def make_source(cfg, data, runtime, args):
    if cfg['pipeline'] == 'device':
        return DeviceSource(data.train_data, data.noise_label, data.test_data, data.test_label, data.mean, data.std,
                            args.batch_size, runtime.device, seed=0, eval_batch_size=args.eval_batch_size,
                            channels_last=runtime.channels_last)
    loader = dataloader.cifar_dataloader('cifar10', 0.5, 'sym', args.batch_size, args.num_workers, '', None,
                                         data=data, pin_memory=runtime.pin_memory)  # as Train_cifar.py's
    return LoaderSource(loader, runtime)


def run_epochs(runs, optimizers, source, runtime, args, prob):
    """(warm-up seconds, post-warm-up seconds) of one epoch each. The post-warm-up epoch divides
    (both nets' eval_train + GMM), then trains on a division of about half the samples (prob)."""
    cfg = dm.Config(num_class=10, warm_up=10, batch_size=args.batch_size, gmm_seed=0)  # CIFAR-10 sym 50%
    times = []
    runtime.sync()
    t0 = time.time()
    dm.warmup(runs, optimizers, source, cfg, epoch=0, autocast=runtime.autocast)
    dm.ensemble_accuracy(runs, source.test_batches(), autocast=runtime.autocast)
    runtime.sync()
    times.append(time.time() - t0)
    t0 = time.time()
    dm.co_divide(runs, source, cfg, autocast=runtime.autocast)
    divisions = [dm.Division(net=k, prob=p, pred=p > cfg.p_threshold, losses=None, input_loss=None, gmm=None)
                 for k, p in enumerate((prob, prob[::-1].copy()))]
    dm.co_train(runs, optimizers, source, divisions, cfg, epoch=20, autocast=runtime.autocast)
    dm.ensemble_accuracy(runs, source.test_batches(), autocast=runtime.autocast)
    runtime.sync()
    times.append(time.time() - t0)
    return times


def setup(cfg, args):
    """Runtime, two PreResNet-18s with their SGD optimizers, and what forwards go through."""
    runtime = Runtime(args.device, 0, cfg['precision'], cfg['channels_last'], cfg['compile'], args.compile_mode,
                      deterministic=cfg.get('deterministic', False))
    seed_everything(0)
    nets = [runtime.model(ResNet18(10, width=args.width)) for _ in range(2)]
    optimizers = [optim.SGD(n.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4) for n in nets]
    sizes = (args.batch_size, 2 * args.batch_size, 4 * args.batch_size, args.eval_batch_size)
    return runtime, optimizers, [runtime.runner(n, sizes) for n in nets]


def prob_of(m):
    """About half of the samples labeled: clean probabilities uniform on [0, 1]."""
    return np.random.RandomState(1).rand(m)


def bench(name, cfg, data, args):
    runtime, optimizers, runs = setup(cfg, args)
    small = subset(data, min(args.prime_images, len(data.noise_label)))
    run_epochs(runs, optimizers, make_source(cfg, small, runtime, args), runtime, args,
               prob_of(len(small.noise_label)))  # untimed: autotune / compile
    if runtime.device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(runtime.device)
    n = len(data.noise_label)
    warm, train = run_epochs(runs, optimizers, make_source(cfg, data, runtime, args), runtime, args, prob_of(n))
    peak = torch.cuda.max_memory_allocated(runtime.device) / 2 ** 30 if runtime.device.type == 'cuda' else None
    return {'config': name, 'warmup_s': warm, 'train_s': train, 'warmup_img_s': n / warm, 'train_img_s': n / train,
            'peak_gib': peak, 'device': runtime.describe()}


def breakdown(name, cfg, data, args):
    """Where a post-warm-up epoch's time goes under one configuration: eval_train of one net (its
    forwards, then the GMM), and one training iteration cut into its parts, each part timed between
    device syncs (which the real loop does not have, so the parts add up to a little more than an
    iteration of the real loop). Mean over --breakdown_iters iterations after 5 untimed ones."""
    runtime, optimizers, runs = setup(cfg, args)
    source = make_source(cfg, data, runtime, args)
    dmcfg = dm.Config(num_class=10, warm_up=10, batch_size=args.batch_size, gmm_seed=0)
    n = len(data.noise_label)
    division = dm.Division(net=1, prob=prob_of(n), pred=prob_of(n) > 0.5, losses=None, input_loss=None, gmm=None)
    net, net2, optimizer = runs[0], runs[1], optimizers[0]

    def timed(fn):
        runtime.sync()
        t0 = time.time()
        out = fn()
        runtime.sync()
        return time.time() - t0, out

    for _ in range(2):  # the second is timed: the first autotunes / compiles
        forward_s, losses = timed(lambda: dm.per_sample_losses(net, source.eval_batches(0), runtime.autocast))
    gmm_s, _ = timed(lambda: dm.fit_gmm(dm.normalize_losses(losses).reshape(-1, 1).numpy(), random_state=0))
    parts = {'views (2 labeled + 2 unlabeled, augmented)': [], 'co-guess + co-refine (6 no-grad forwards)': [],
             'MixUp + mixed forward + loss': [], 'backward': [], 'optimizer step': []}
    _, unlabeled, num_labeled = source.train_batches(division)

    def full_batches():  # the labeled pass restarted as often as needed; ragged last batches left out
        while True:
            for batch in source.train_batches(division)[0]:
                if batch[0].size(0) == args.batch_size:
                    yield batch
    labeled = full_batches()
    for i in range(args.breakdown_iters + 5):
        t, (x, x2, y, w) = timed(lambda: next(labeled))
        t2, (u, u2) = timed(lambda: next(unlabeled))
        net.train()
        net2.eval()
        y = torch.zeros(x.size(0), 10, device=x.device).scatter_(1, y.view(-1, 1), 1)
        w = w.view(-1, 1).float()

        def guess():
            with runtime.autocast():
                return dm.co_guess(net, net2, u, u2, dmcfg.T), dm.co_refine(net, x, x2, y, w, dmcfg.T)
        t3, (tu, tx) = timed(guess)

        def forward():
            inputs, targets = torch.cat([x, x2, u, u2]), torch.cat([tx, tx, tu, tu])
            mixed, target = dm.mixmatch(inputs, targets, 0.7, source.randperm(inputs.size(0), device=x.device))
            with runtime.autocast():
                logits = net(mixed).float()
            B2 = 2 * x.size(0)
            Lx, Lu = dm.semi_loss(logits[:B2], target[:B2], logits[B2:], target[B2:])
            return Lx + 25 * Lu + dm.uniform_prior_penalty(logits, 10)
        t4, loss = timed(forward)
        optimizer.zero_grad()
        t5, _ = timed(loss.backward)
        t6, _ = timed(optimizer.step)
        if i >= 5:
            for part, value in zip(parts, (t + t2, t3, t4, t5, t6)):
                parts[part].append(value)
    per_iter = {part: float(np.mean(v)) for part, v in parts.items()}
    iteration = sum(per_iter.values())
    num_iter = dm.num_iterations(num_labeled, args.batch_size)
    return {'config': name, 'device': runtime.describe(), 'eval_forward_s': forward_s, 'gmm_s': gmm_s,
            'iteration_parts_s': per_iter, 'iteration_s': iteration, 'num_iter': num_iter,
            'epoch_estimate_s': 2 * (forward_s + gmm_s) + 2 * num_iter * iteration}


def breakdown_table(r):
    epoch = r['epoch_estimate_s']
    rows = ['| part | time | share of a post-warm-up epoch |', '| --- | --- | --- |',
            '| eval_train forwards (per net, %d images) | %.3f s | %.1f%% |' % (
                r['num_images'], r['eval_forward_s'], 100 * 2 * r['eval_forward_s'] / epoch),
            '| GMM fit + posterior (per net) | %.3f s | %.1f%% |' % (r['gmm_s'], 100 * 2 * r['gmm_s'] / epoch)]
    for part, t in r['iteration_parts_s'].items():
        rows.append('| training iteration: %s | %.2f ms | %.1f%% |' % (part, 1000 * t,
                                                                      100 * 2 * r['num_iter'] * t / epoch))
    rows.append('| one training iteration, all parts | %.2f ms | %d per net per epoch |' % (
        1000 * r['iteration_s'], r['num_iter']))
    rows.append('| post-warm-up epoch, sum of the parts | %.2f s | 100%% |' % epoch)
    return '\n'.join(rows)


def table(results, args):
    base = next((r for r in results if r['config'] == 'reference'), results[0])
    rows = ['| config | warm-up epoch s | img/s | post-warm-up epoch s | img/s | speed-up (post-warm-up) | '
            'peak GiB | projected %d-epoch run |' % (args.num_epochs + 1),
            '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for r in results:
        total = args.warm_up * r['warmup_s'] + (args.num_epochs + 1 - args.warm_up) * r['train_s']
        rows.append('| %s | %.2f | %.0f | %.2f | %.0f | %.2fx | %s | %s |' % (
            r['config'], r['warmup_s'], r['warmup_img_s'], r['train_s'], r['train_img_s'],
            base['train_s'] / r['train_s'], '%.2f' % r['peak_gib'] if r['peak_gib'] is not None else 'n/a',
            '%.2f h' % (total / 3600) if total > 3600 else '%.1f min' % (total / 60)))
    return '\n'.join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--num_images', type=int, default=50000, help='synthetic training images (50000 = CIFAR)')
    p.add_argument('--num_test', type=int, default=10000, help='synthetic test images')
    p.add_argument('--width', type=int, default=64, help='PreResNet-18 width (64 = the paper)')
    p.add_argument('--batch_size', type=int, default=64, help='training batch (64 = the paper)')
    p.add_argument('--eval_batch_size', type=int, default=1024,
                   help='eval_train / test batch of the device configs')
    p.add_argument('--num_workers', type=int, default=5, help='DataLoader workers of the reference pipeline')
    p.add_argument('--configs', default=','.join(CONFIGS), help='comma-separated subset of %s' % ', '.join(CONFIGS))
    p.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'], help='auto: CUDA when present')
    p.add_argument('--compile_mode', default='max-autotune-no-cudagraphs', help='torch.compile mode of the compile config')
    p.add_argument('--prime_images', type=int, default=2048, help='images of the untimed priming run')
    p.add_argument('--num_epochs', type=int, default=300, help='for the projection: epochs 0..num_epochs')
    p.add_argument('--warm_up', type=int, default=10, help='for the projection: warm-up epochs')
    p.add_argument('--out', default=None, help='also write the table (.md) and raw numbers (.json) here')
    p.add_argument('--breakdown', default=None, metavar='CONFIG',
                   help='instead of timing epochs: where the time of a post-warm-up epoch goes under CONFIG '
                        '(eval_train, GMM, and the parts of one training iteration)')
    p.add_argument('--breakdown_iters', type=int, default=50, help='training iterations the breakdown averages')
    args = p.parse_args(argv)
    names = [c for c in args.configs.split(',') if c]
    unknown = [c for c in names + [args.breakdown or 'device'] if c not in CONFIGS]
    if unknown:
        p.error('unknown config(s) %s; choose from %s' % (', '.join(unknown), ', '.join(CONFIGS)))
    data = synthetic_data(args.num_images, args.num_test)
    if args.breakdown:
        return run_breakdown(data, args)
    results = []
    for name in names:
        print('| timing %s ...' % name, flush=True)
        results.append(bench(name, CONFIGS[name], data, args))
        print('|   warm-up %.2f s, post-warm-up %.2f s' % (results[-1]['warmup_s'], results[-1]['train_s']), flush=True)
    md = table(results, args)
    header = ('%d synthetic 32x32 images, PreResNet-18 width %d, batch %d, torch %s, %s'
              % (args.num_images, args.width, args.batch_size, torch.__version__,
                 results[0]['device'].split(',')[0]))  # the device; precision and layout are per config
    report(args, header, md, {'results': results})
    return results


def run_breakdown(data, args):
    r = dict(breakdown(args.breakdown, CONFIGS[args.breakdown], data, args), num_images=args.num_images)
    header = ('Where a post-warm-up epoch goes: config %s, %d synthetic 32x32 images, PreResNet-18 width %d, '
              'batch %d, torch %s, %s' % (r['config'], args.num_images, args.width, args.batch_size,
                                         torch.__version__, r['device']))
    report(args, header, breakdown_table(r), {'breakdown': r})
    return r


def report(args, header, md, raw):
    """Print the table under its header; with --out also write it (.md) and the raw numbers (.json)."""
    print('\n' + header + '\n\n' + md)
    if args.out:
        with open(args.out + '.md', 'w') as f:
            f.write(header + '\n\n' + md + '\n')
        with open(args.out + '.json', 'w') as f:
            logs.dump(dict(raw, args=vars(args), torch=torch.__version__), f, indent=1)


if __name__ == '__main__':
    run_main(main)
