"""The prepared GPU measurements: one command per lent GPU session, each part its own time-boxed
process, results under --out (default $OUT), a summary table printed last.

    python gpu_check.py speed          # CUDA smoke runs, then the speed table and where an epoch's time goes
    python gpu_check.py evidence       # DivideMix vs cross-entropy on all of Fashion-MNIST, 80% sym (then 40% asym)
    python gpu_check.py speed --smoke  # every part for seconds on the CPU (tests/test_gpu_check.py runs both)

speed, in order (a CUDA-only failure shows up first, and cheaply):
  smoke_*        each training script on tiny data in its real format, two epochs on the GPU and a
                 --resume; CIFAR also with --precision bf16 --channels_last
  bench_*        50,000 synthetic CIFAR images, one warm-up and one post-warm-up epoch (about half the
                 samples labeled): the reference pipeline (DataLoader workers), the device pipeline
                 fp32, + bf16 + channels_last (benchmark.py)
  breakdown      eval_train + GMM and the parts of one training iteration, for the fastest of those
  smoke_cifar_compile, bench_compile
                 --compile with reduce-overhead (CUDA graphs) at the benchmark's shapes, then the
                 compiled config, from inductor's on-disk cache: late, as the slowest and least certain
  scaling_*      the torchrun issue's measurements: step and eval times at the per-process batches of
                 1, 2, 4, 8 GPUs for CIFAR-10, Clothing1M, WebVision, and the projected scaling (scaling.py)
evidence: Train_cifar.py --dataset fashionmnist, PreResNet-18, crop+flip, the fp32 device pipeline,
  DivideMix and --method ce side by side on the same noisy labels (two processes sharing the GPU), as
  many epochs as the box allows; 80% symmetric noise, then 40% asymmetric if time remains.

The GPU machine has no internet: the Fashion-MNIST .gz files travel in a git-ignored folder
(--fashion_dir, default .gpu_data/fashion-mnist, else Debian's /usr/share/datasets/fashion-mnist).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
DEBIAN_FASHION = '/usr/share/datasets/fashion-mnist'


class Part(object):
    """One process: argv (run with this Python from the repository root), its time box in seconds."""

    def __init__(self, name, argv, box, env=None, after=None):
        self.name, self.argv, self.box, self.env, self.after = name, argv, box, env or {}, after


def run_part(part, out, deadline):
    """Run one part in its own process within min(its box, what is left); returns its result row."""
    box = max(1, min(part.box, deadline - time.time()))
    log = os.path.join(out, 'logs', part.name + '.log')
    t0 = time.time()
    with open(log, 'w') as f:
        f.write('$ %s\n' % ' '.join(part.argv))
        f.flush()
        try:
            rc = subprocess.run([sys.executable] + part.argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                env=dict(os.environ, **part.env), timeout=box).returncode
            status = 'ok' if rc == 0 else 'failed (exit %d)' % rc
        except subprocess.TimeoutExpired:
            status = 'timed out after %.0f s' % box
    row = {'part': part.name, 'status': status, 'seconds': round(time.time() - t0, 1), 'log': log}
    print('| %-22s %-26s %6.1f s' % (part.name, status, row['seconds']), flush=True)
    return row


def run_pair(parts, out, deadline):
    """Run parts side by side (they share the device), each within its box; returns their rows."""
    procs = []
    for part in parts:
        log = open(os.path.join(out, 'logs', part.name + '.log'), 'w')
        log.write('$ %s\n' % ' '.join(part.argv))
        log.flush()
        procs.append((part, log, time.time(), subprocess.Popen([sys.executable] + part.argv, cwd=ROOT, stdout=log,
                                                                stderr=subprocess.STDOUT,
                                                                env=dict(os.environ, **part.env))))
    rows = []
    for part, log, t0, proc in procs:
        box = max(1, min(part.box - (time.time() - t0), deadline - time.time()))
        try:
            rc = proc.wait(timeout=box)
            status = 'ok' if rc == 0 else 'failed (exit %d)' % rc
        except subprocess.TimeoutExpired:
            proc.kill()  # checkpoints are atomic and the logs hold every finished epoch
            proc.wait()
            status = 'stopped at its box (%.0f s)' % part.box
        log.close()
        rows.append({'part': part.name, 'status': status, 'seconds': round(time.time() - t0, 1),
                     'log': os.path.join(out, 'logs', part.name + '.log')})
        print('| %-22s %-26s %6.1f s' % (part.name, status, rows[-1]['seconds']), flush=True)
    return rows


# ----------------------------------------------------------------------------------
# speed
# ----------------------------------------------------------------------------------

def speed_parts(args, data):
    """The parts of the speed phase, in order, with their boxes (seconds)."""
    smoke = args.smoke
    dev = ['--device', 'cpu' if smoke else 'cuda']
    cifar = ['Train_cifar.py', '--data_path', data['cifar10'], '--warm_up', '1', '--batch_size', '16',
             '--num_workers', '0', '--log_every', '1'] + dev + (['--width', '8'] if smoke else [])
    ck = lambda name: ['--checkpoint_dir', os.path.join(args.out, 'runs', name)]
    clothing = ['Train_clothing1M.py', '--data_path', data['clothing'], '--random_init', '--batch_size', '2',
                '--num_batches', '1', '--num_workers', '0', '--eval_batch_size', '4', '--log_every', '1'] + dev
    webvision = ['Train_webvision.py', '--data_path', data['webvision'], '--num_class', '2', '--batch_size', '2',
                 '--num_workers', '0', '--id', 'web'] + dev
    # --smoke: no compiler on the CPU (minutes); the flag's code path still runs, torch.compile as a no-op
    no_compile = {'TORCH_COMPILE_DISABLE': '1'} if smoke else {}
    # two epochs, then a resume (--smoke: one epoch, then the resume)
    first, second = ('0', '1') if smoke else ('1', '2')
    parts = []
    for name, argv, box in (('smoke_cifar', cifar + ck('cifar'), 45),
                            ('smoke_clothing', clothing + ck('clothing'), 60),
                            ('smoke_webvision', webvision + ck('webvision'), 60)):
        parts.append(Part(name, argv + ['--num_epochs', first], box))
        parts.append(Part(name + '_resume', argv + ['--num_epochs', second, '--resume'], box))
    parts.append(Part('smoke_cifar_bf16_cl', cifar + ck('cifar_bf16') + ['--num_epochs', first, '--precision', 'bf16',
                                                                        '--channels_last'], 45))
    # the same CIFAR run under torchrun with one process (NCCL on the GPU): the process-group start, the
    # device chosen by LOCAL_RANK; its log must equal smoke_cifar's, and its time shows the overhead
    parts.append(Part('smoke_cifar_torchrun', ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '1',
                                               '--'] + cifar + ck('cifar_torchrun') + ['--num_epochs', first], 60))
    bench = ['benchmark.py'] + dev + (['--num_images', '128', '--num_test', '32', '--width', '8', '--batch_size', '16',
                                       '--eval_batch_size', '64', '--prime_images', '32', '--num_workers', '0']
                                      if smoke else ['--num_workers', str(args.workers)])
    bench_part = lambda config, box, env=None: Part('bench_' + config, bench + [
        '--configs', config, '--compile_mode', 'reduce-overhead', '--out', os.path.join(args.out, 'bench_' + config)],
        box, env)
    parts += [bench_part('reference', 120), bench_part('device', 75), bench_part('bf16_cl', 75)]
    parts.append(Part('breakdown', bench + ['--breakdown', 'FASTEST', '--compile_mode', 'reduce-overhead',
                                            '--breakdown_iters', '3' if smoke else '50',
                                            '--out', os.path.join(args.out, 'breakdown')], 50, no_compile))
    # Compilation last: the slowest and least certain part cannot starve the others. The smoke run uses
    # the benchmark's batch sizes, precision and layout, so that bench_compile finds its graphs in
    # inductor's on-disk cache.
    parts.append(Part('smoke_cifar_compile', cifar + ck('cifar_compile') + [
        '--num_epochs', first, '--precision', 'bf16', '--channels_last', '--compile', '--compile_mode',
        'reduce-overhead'] + ([] if smoke else ['--batch_size', '64', '--eval_batch_size', '1024']), 150, no_compile))
    parts.append(bench_part('compile', 200, no_compile))
    # For the torchrun issue: one device's step / eval times at the per-process batches of 1, 2, 4, 8 GPUs
    # and the projected scaling (scaling.py). After the compile parts, whose issue comes first; when the
    # budget is spent before them, they run alone in the lease's remaining minutes (BENCHMARKS.md).
    for dataset, box in (('cifar10', 45), ('clothing1m', 60), ('webvision', 90)):
        parts.append(Part('scaling_' + dataset, ['scaling.py', '--dataset', dataset, '--out',
                                                 os.path.join(args.out, 'scaling')] +
                          (['--smoke', '--worlds', '1,2'] if smoke else ['--device', 'cuda']), box))
    return parts


def speed_summary(args, rows):
    """The merged speed table, the breakdown, and the targets, as markdown."""
    results = []
    for config in ('reference', 'device', 'bf16_cl', 'compile'):
        path = os.path.join(args.out, 'bench_%s.json' % config)
        if os.path.exists(path):
            with open(path) as f:
                results.extend(json.load(f)['results'])
    lines = []
    if results:
        import benchmark
        bench_args = argparse.Namespace(num_epochs=300, warm_up=10)
        lines += ['Speed (each config its own process; %s):' % results[0]['device'].split(',')[0], '',
                  benchmark.table(results, bench_args), '']
        base = next((r for r in results if r['config'] == 'reference'), None)
        fastest = min(results, key=lambda r: r['train_s'])
        total = 10 * fastest['warmup_s'] + 291 * fastest['train_s']
        if base is not None:
            ratio = base['train_s'] / min(r['train_s'] for r in results if r['config'] == 'device') \
                if any(r['config'] == 'device' for r in results) else float('nan')
            lines.append('- target: post-warm-up epoch of the device pipeline (fp32) >= 5x the reference pipeline: '
                         '%.2fx, %s' % (ratio, 'met' if ratio >= 5 else 'NOT met'))
        lines.append('- target: 301-epoch CIFAR-10 run < 1 hour: %.1f min projected with %s, %s'
                     % (total / 60, fastest['config'], 'met' if total < 3600 else 'NOT met'))
        lines.append('')
    lines += torchrun_lines(args)
    path = os.path.join(args.out, 'breakdown.md')
    if os.path.exists(path):
        with open(path) as f:
            lines += [f.read().strip(), '']
    for dataset in ('cifar10', 'clothing1m', 'webvision'):
        path = os.path.join(args.out, 'scaling', 'scaling_%s.md' % dataset)
        if os.path.exists(path):
            with open(path) as f:
                lines += ['Projected scaling, %s (scaling.py: measured on one device, communication modelled):'
                          % dataset, '', f.read().strip(), '']
    return lines


def torchrun_lines(args):
    """smoke_cifar against the same run under torchrun with one process: same records? time per epoch?"""
    logs = [os.path.join(args.out, 'runs', name, 'cifar10_0.5_sym_log.jsonl') for name in ('cifar', 'cifar_torchrun')]
    if not all(os.path.exists(p) for p in logs):
        return []
    recs = []
    for path in logs:  # the epoch records (the plain run was resumed for one more epoch)
        with open(path) as f:
            recs.append([r for r in map(json.loads, filter(str.strip, f)) if 'epoch' in r])
    seconds = [[r.pop('seconds', None) for r in rs] for rs in recs]
    return ['- torchrun --nproc_per_node 1 against the plain run (CIFAR smoke, epochs %s): records %s; '
            'seconds at the end of each epoch %s (plain) and %s (torchrun)'
            % ([r['epoch'] for r in recs[1]], 'identical' if recs[0][:len(recs[1])] == recs[1] else 'DIFFERENT',
               seconds[0], seconds[1]), '']


def fastest_config(args):
    times = {}
    for config in ('device', 'bf16_cl', 'compile'):
        path = os.path.join(args.out, 'bench_%s.json' % config)
        if os.path.exists(path):
            with open(path) as f:
                times[config] = json.load(f)['results'][0]['train_s']
    return min(times, key=times.get) if times else 'device'


# ----------------------------------------------------------------------------------
# evidence
# ----------------------------------------------------------------------------------

def evidence_parts(args, fashion):
    """(noise label, [DivideMix part, cross-entropy part]) per noise setting, in order."""
    out = os.path.join(args.out, 'evidence')
    settings = [('sym', 0.8), ('asym', 0.4)]
    scale = (['--train_subset', '200', '--test_subset', '100', '--width', '4', '--num_epochs', '1', '--warm_up', '1',
              '--device', 'cpu'] if args.smoke else
             ['--num_epochs', str(args.epochs), '--warm_up', str(args.warm_up), '--lr_decay_epoch',
              str(args.lr_decay_epoch), '--device', 'cuda'])
    groups = []
    for mode, r in settings:
        common = ['Train_cifar.py', '--dataset', 'fashionmnist', '--data_path', fashion, '--noise_mode', mode,
                  '--r', str(r), '--noise_file', os.path.join(out, 'noise_%.1f_%s.json' % (r, mode)),
                  '--checkpoint_dir', out, '--num_workers', '0', '--log_every', '50', '--overwrite',
                  '--pipeline', 'device', '--augment', 'crop_flip'] + scale
        box = 60 if args.smoke else args.box
        env = {'OMP_NUM_THREADS': '1'} if args.smoke else {}  # two CPU processes side by side: a core each
        groups.append(('%s %.0f%%' % (mode, 100 * r), [
            Part('%s%.0f_dividemix' % (mode, 100 * r), common + ['--method', 'dividemix', '--id', 'dividemix'], box,
                 env),
            Part('%s%.0f_ce' % (mode, 100 * r), common + ['--method', 'ce', '--id', 'ce', '--track_division'], box,
                 env)]))
    return groups


def evidence_summary(args, fashion_groups):
    out = os.path.join(args.out, 'evidence')
    lines = ['| noise | method | epochs | best | last | mean last 10 | labeled-set AUC (last) | precision | '
             'recall | seconds |', '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    curves = []
    for label, mode, r in fashion_groups:
        for method in ('dividemix', 'ce'):
            stem = os.path.join(out, 'fashionmnist_%.1f_%s_%s' % (r, mode, method))
            if not os.path.exists(stem + '_log.jsonl'):
                continue
            with open(stem + '_log.jsonl') as f:
                recs = [json.loads(l) for l in f if l.strip()]
            epochs = [x for x in recs if 'epoch' in x]
            if not epochs:
                continue
            accs = [x['test_acc'] for x in epochs]
            last_div = [x for x in epochs if 'auc1' in x]
            d = last_div[-1] if last_div else {}
            mean = lambda key: (d[key + '1'] + d[key + '2']) / 2 if key + '1' in d else float('nan')
            lines.append('| %s | %s | %d | %.2f | %.2f | %.2f | %.3f | %.3f | %.3f | %.0f |' % (
                label, 'DivideMix' if method == 'dividemix' else 'cross-entropy', len(accs), max(accs), accs[-1],
                statistics.mean(accs[-10:]), mean('auc'), mean('precision'), mean('recall'),
                sum(x['seconds'] for x in epochs)))
            curves.append((stem, '%s, %s' % ('DivideMix' if method == 'dividemix' else 'cross-entropy', label)))
    if curves:
        try:
            import plots
            plots.plot_acc([c[0] for c in curves], os.path.join(args.out, 'evidence_acc.png'),
                           labels=[c[1] for c in curves])
            lines += ['', 'plot: %s' % os.path.join(args.out, 'evidence_acc.png')]
        except SystemExit as e:  # no matplotlib
            lines += ['', 'no plot (%s)' % e]
    return lines


# ----------------------------------------------------------------------------------

def find_fashion(path):
    for folder in (path, DEBIAN_FASHION):
        if folder and os.path.isdir(folder) and any(n.startswith('train-images') for n in os.listdir(folder)):
            return folder
    raise SystemExit('error: no Fashion-MNIST files in %s or %s: copy the four .gz files into %s (git-ignored) and '
                     'carry that folder to the GPU machine' % (path, DEBIAN_FASHION, path))


def environment():
    import torch
    info = {'torch': torch.__version__, 'python': sys.version.split()[0], 'cuda': torch.version.cuda,
            'device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU (no CUDA)'}
    try:
        info['driver'] = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                                        capture_output=True, text=True, timeout=20).stdout.strip() or 'n/a'
    except (OSError, subprocess.SubprocessError):
        info['driver'] = 'n/a'
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('phase', choices=['speed', 'evidence'])
    p.add_argument('--out', default=os.environ.get('OUT', 'gpu_check_out'), help='results folder (default $OUT)')
    p.add_argument('--smoke', action='store_true', help='every part for seconds on the CPU')
    p.add_argument('--budget', type=float, default=540, help='seconds for the whole phase (parts are cut to fit)')
    p.add_argument('--workers', type=int, default=12, help='DataLoader workers of the reference pipeline')
    p.add_argument('--fashion_dir', default=os.path.join(ROOT, '.gpu_data', 'fashion-mnist'))
    p.add_argument('--epochs', type=int, default=40, help='evidence: --num_epochs of each run (the box may cut it)')
    p.add_argument('--warm_up', type=int, default=10, help='evidence: warm-up epochs')
    p.add_argument('--lr_decay_epoch', type=int, default=30, help='evidence: lr / 10 from this epoch')
    p.add_argument('--box', type=float, default=240, help='evidence: seconds for each pair of runs')
    p.add_argument('--parts', default=None,
                   help='comma-separated part names to run (default all; e.g. to rerun the one that failed)')
    args = p.parse_args(argv)
    args.out = os.path.abspath(args.out)
    start = time.time()
    deadline = start + args.budget
    os.makedirs(os.path.join(args.out, 'logs'), exist_ok=True)
    env = environment()
    print('| gpu_check %s%s: %s, torch %s, CUDA %s, driver %s; results in %s' % (
        args.phase, ' --smoke' if args.smoke else '', env['device'], env['torch'], env['cuda'], env['driver'],
        args.out), flush=True)
    rows = []
    if args.phase == 'speed':
        import tiny_data
        data = tiny_data.make_roots(os.path.join(args.out, 'data'))
        for part in speed_parts(args, data):
            if args.parts and part.name not in args.parts.split(','):
                continue
            if part.name == 'breakdown':
                part.argv[part.argv.index('FASTEST')] = fastest_config(args)
            if time.time() >= deadline - 5:
                rows.append({'part': part.name, 'status': 'not run (budget spent)', 'seconds': 0})
                continue
            rows.append(run_part(part, args.out, deadline))
        summary = speed_summary(args, rows)
    else:
        fashion = find_fashion(args.fashion_dir)
        if args.smoke:  # a tiny copy in the real format, so the smoke run reads little
            import tiny_data
            fashion = os.path.join(args.out, 'data', 'fashion')
            tiny_data.make_fashion(fashion, n_train=200, n_test=100)
        done = []
        for label, pair in evidence_parts(args, fashion):
            pair = [part for part in pair if not args.parts or part.name in args.parts.split(',')]
            if not pair:
                continue
            if deadline - time.time() < min(part.box for part in pair) * 0.75:
                rows += [{'part': part.name, 'status': 'not run (budget spent)', 'seconds': 0} for part in pair]
                continue
            rows += run_pair(pair, args.out, deadline)
            mode, r = label.split()[0], float(label.split()[1][:-1]) / 100
            done.append((label, mode, r))
        summary = evidence_summary(args, done)
    table = ['| part | status | seconds |', '| --- | --- | --- |'] + [
        '| %s | %s | %.1f |' % (r['part'], r['status'], r['seconds']) for r in rows]
    text = '\n'.join(['gpu_check %s%s on %s (torch %s, CUDA %s, driver %s), %.0f s in all' % (
        args.phase, ' --smoke' if args.smoke else '', env['device'], env['torch'], env['cuda'], env['driver'],
        time.time() - start), ''] + table + [''] + summary)
    with open(os.path.join(args.out, 'summary_%s.md' % args.phase), 'w') as f:
        f.write(text + '\n')
    with open(os.path.join(args.out, 'summary_%s.json' % args.phase), 'w') as f:
        json.dump({'environment': env, 'parts': rows, 'args': vars(args)}, f, indent=1)
    print('\n' + text, flush=True)
    failed = [r for r in rows if r['status'] != 'ok' and not r['status'].startswith('stopped at its box')]
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
