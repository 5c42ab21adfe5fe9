"""The prepared GPU measurements: one command for one lent GPU machine (BENCHMARKS.md, "GPU").

    python3 gpu_check.py speed --budget 510      # CUDA smoke runs and tests, the speed table, the rest
    python3 gpu_check.py evidence --budget 510   # DivideMix vs cross-entropy on all of Fashion-MNIST
    python gpu_check.py speed --smoke            # every part for seconds on the CPU (tests/test_gpu_check.py)

The machine it is written for returns at most 8 files of at most 16 MiB, 2 folders deep, and runs one
command of at most 10 minutes. So everything a part makes (data, runs, checkpoints, logs) goes to a
temporary folder, and --out (default $OUT) receives three files: summary_<phase>.md (the tables),
summary_<phase>.json (every part's status and time, the environment) and logs_<phase>.tar.gz (every
part's log and the runs' text logs, JSON lines and tables; no checkpoints; cut to stay under 15 MiB).

Time: every part has a planned box, and the boxes sum to --budget by construction (they are scaled to
it); a part may also use what the parts before it left unused, never what is planned for the parts
after it. A part that runs out of time has its whole process group killed (torchrun's workers too), and
a part that fails prints its log's last lines. It needs python3 with torch (and torchvision, scikit-learn,
pytest), nothing else, and no internet.

speed, in priority order (a CUDA-only failure shows up first, and cheaply):
  smoke_*        each training script on tiny data in its real format on the GPU, with a --resume;
                 CIFAR also with bf16 + channels_last and under torchrun with one process (NCCL)
  tests_cuda     tests/test_cuda.py: device views within 1 ulp of torchvision, fp32 really fp32, a bf16
                 step, a --deterministic resume bit for bit, torchrun (NCCL) against the plain run
  tests_on_cpu   the suite's own CPU pinning, on a machine that has a GPU
  bench_*        50,000 synthetic CIFAR images, one warm-up and one post-warm-up epoch: the reference
                 pipeline, the device pipeline in true fp32, TF32, bf16 + channels_last (benchmark.py)
  breakdown      where a post-warm-up epoch's time goes, for the fastest of those
  bench_deterministic  what --deterministic costs
  smoke_cifar_compile, bench_compile, tests_cuda_compile
                 --compile (reduce-overhead: CUDA graphs), its speed, and that it does not recompile
  scaling_*      one GPU's step and eval times at the per-process batches of 1, 2, 4, 8 GPUs (scaling.py)
evidence: Train_cifar.py --dataset fashionmnist, PreResNet-18, crop+flip, DivideMix and --method ce side
  by side on the same noisy labels, as many epochs as the box allows; 80% symmetric, then 40% asymmetric.
  The Fashion-MNIST .gz files travel in a git-ignored folder (--fashion_dir, default .gpu_data/fashion-mnist).
"""
import argparse
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository's root: parts run there
sys.path.insert(0, ROOT)
DEBIAN_FASHION = '/usr/share/datasets/fashion-mnist'
MAX_TAR = 15 * 2 ** 20  # the machine returns files up to 16 MiB

# (part, planned seconds) in priority order; the boxes are scaled to sum to --budget
SPEED_PLAN = [
    ('smoke_cifar', 22), ('smoke_cifar_resume', 16), ('smoke_cifar_bf16_cl', 16), ('smoke_cifar_torchrun', 22),
    ('smoke_clothing', 24), ('smoke_clothing_resume', 18), ('smoke_webvision', 26), ('smoke_webvision_resume', 20),
    ('smoke_folder', 18),
    ('tests_cuda', 80), ('tests_on_cpu', 12),
    ('bench_reference', 55), ('bench_device', 40), ('bench_tf32', 28), ('bench_bf16_cl', 28),
    ('breakdown', 20), ('bench_deterministic', 30),
    ('smoke_cifar_compile', 0), ('bench_compile', 0), ('tests_cuda_compile', 0),  # on what is left
    ('scaling_cifar10', 15), ('scaling_clothing1m', 20), ('scaling_webvision', 20),
]


class Part(object):
    """One process: argv (run with this Python from the repository root), its planned box in seconds."""

    def __init__(self, name, argv, box, env=None):
        self.name, self.argv, self.box, self.env = name, argv, box, env or {}


def scaled(plan, budget):
    """The plan's boxes scaled so that they sum to the budget."""
    total = sum(box for _, box in plan)
    return {name: budget * box / total for name, box in plan}


def _kill(proc):
    """The part's whole process group (it runs in a session of its own): torchrun's workers too."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path, n=25):
    with open(path, errors='replace') as f:
        return f.read().splitlines()[-n:]


def start(part, logs):
    log = os.path.join(logs, part.name + '.log')
    f = open(log, 'w')
    f.write('$ %s\n' % ' '.join(part.argv))
    f.flush()
    proc = subprocess.Popen([sys.executable] + part.argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED='1', **part.env), start_new_session=True)
    return proc, f, log


def finish(part, proc, f, log, t0, limit, stop_label='timed out'):
    try:
        rc = proc.wait(timeout=max(1, limit - (time.time() - t0)))
        status = 'ok' if rc == 0 else 'failed (exit %d)' % rc
    except subprocess.TimeoutExpired:
        _kill(proc)
        status = '%s after %.0f s' % (stop_label, time.time() - t0)
    f.close()
    row = {'part': part.name, 'status': status, 'seconds': round(time.time() - t0, 1), 'log': os.path.basename(log)}
    print('| %-24s %-30s %6.1f s' % (part.name, status, row['seconds']), flush=True)
    if status != 'ok' and not status.startswith('stopped'):
        print('\n'.join('|     ' + line for line in tail(log)), flush=True)
    return row


def run_parts(parts, boxes, logs, start_time):
    """Each part in turn, by the time its cumulative planned box leaves it."""
    rows, planned = [], 0.0
    for part in parts:
        planned += boxes[part.name]
        limit = start_time + planned - time.time()
        if limit < 3:
            rows.append({'part': part.name, 'status': 'not run (budget spent)', 'seconds': 0})
            print('| %-24s not run (budget spent)' % part.name, flush=True)
            continue
        if part.name == 'breakdown':
            part.argv[part.argv.index('FASTEST')] = fastest_config(os.path.dirname(logs))
        t0 = time.time()
        rows.append(finish(part, *start(part, logs), t0, limit))
    return rows


# ----------------------------------------------------------------------------------
# speed
# ----------------------------------------------------------------------------------

def speed_parts(args, data, work):
    """The speed phase's parts, in SPEED_PLAN's order (data: tiny_data's roots; work: the temporary folder)."""
    smoke = args.smoke
    dev = ['--device', 'cpu' if smoke else 'cuda']
    ck = lambda name: ['--checkpoint_dir', os.path.join(work, 'runs', name)]
    cifar = ['Train_cifar.py', '--data_path', data['cifar10'], '--warm_up', '1', '--batch_size', '16',
             '--num_workers', '0', '--log_every', '1', '--noise_file', os.path.join(work, 'cifar_noise.json')] + dev \
        + (['--width', '8'] if smoke else [])
    clothing = ['Train_clothing1M.py', '--data_path', data['clothing'], '--random_init', '--batch_size', '2',
                '--num_batches', '1', '--num_workers', '0', '--eval_batch_size', '4', '--log_every', '1'] + dev
    webvision = ['Train_webvision.py', '--data_path', data['webvision'], '--num_class', '2', '--batch_size', '2',
                 '--num_workers', '0', '--id', 'web'] + dev
    folder = ['Train_folder.py', '--data_path', data['folder'], '--warm_up', '1', '--batch_size', '8', '--width', '8',
              '--num_workers', '0'] + dev
    first, second = ('0', '1') if smoke else ('1', '2')  # epochs, then the resume's
    no_compile = {'TORCH_COMPILE_DISABLE': '1'} if smoke else {}  # no compiler on the CPU: the flag's path only
    # --smoke: tests/test_cuda.py on the CPU (DIVIDEMIX_TEST_CUDA_DRY), its CUDA-only assertions skipped
    cuda_tests = {'DIVIDEMIX_TEST_CUDA_DRY': '1'} if smoke else {'DIVIDEMIX_TEST_CUDA': '1'}
    pytest = ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', os.path.join('tests', 'test_cuda.py')]
    bench = [os.path.join('tools', 'benchmark.py')] + dev + (['--num_images', '128', '--num_test', '32', '--width', '8', '--batch_size', '16',
                                       '--eval_batch_size', '64', '--prime_images', '32', '--num_workers', '0']
                                      if smoke else ['--num_workers', str(args.workers)])
    # --smoke: TF32 is a CUDA setting (the CPU refuses it); the part's plumbing runs with the fp32 config
    bench_part = lambda config, env=None: (['--configs', 'device' if smoke and config == 'tf32' else config,
                                            '--compile_mode', 'reduce-overhead', '--out',
                                            os.path.join(work, 'bench_' + config)], env)
    argv = {
        'smoke_cifar': (cifar + ck('cifar') + ['--num_epochs', first], None),
        'smoke_cifar_resume': (cifar + ck('cifar') + ['--num_epochs', second, '--resume'], None),
        'smoke_cifar_bf16_cl': (cifar + ck('cifar_bf16') + ['--num_epochs', first, '--precision', 'bf16',
                                                            '--channels_last'], None),
        # the same CIFAR run under torchrun with one process (NCCL on the GPU); its log must equal smoke_cifar's
        'smoke_cifar_torchrun': (['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '1', '--'] + cifar
                                 + ck('cifar_torchrun') + ['--num_epochs', first], None),
        'smoke_clothing': (clothing + ck('clothing') + ['--num_epochs', first], None),
        'smoke_clothing_resume': (clothing + ck('clothing') + ['--num_epochs', second, '--resume'], None),
        'smoke_webvision': (webvision + ck('webvision') + ['--num_epochs', first], None),
        'smoke_webvision_resume': (webvision + ck('webvision') + ['--num_epochs', second, '--resume'], None),
        'smoke_folder': (folder + ck('folder') + ['--num_epochs', second], None),
        'tests_cuda': (pytest + ['--basetemp', os.path.join(work, 'pytest_cuda')], cuda_tests),
        # the suite's CPU pinning on a machine with a GPU (CUDA_VISIBLE_DEVICES='' before torch starts)
        'tests_on_cpu': (['-m', 'pytest', '-q', '-p', 'no:cacheprovider', os.path.join('tests', 'test_runtime.py'),
                          '-k', 'pinned_to_the_cpu', '--basetemp', os.path.join(work, 'pytest_cpu')], {'DIVIDEMIX_TEST_CUDA': ''}),
        'bench_reference': bench_part('reference'), 'bench_device': bench_part('device'),
        'bench_tf32': bench_part('tf32'), 'bench_bf16_cl': bench_part('bf16_cl'),
        'breakdown': (['--breakdown', 'FASTEST', '--compile_mode', 'reduce-overhead', '--breakdown_iters',
                       '3' if smoke else '50', '--out', os.path.join(work, 'breakdown')], no_compile),
        'bench_deterministic': bench_part('deterministic'),
        # the smoke run uses the benchmark's batch sizes, precision and layout, so that bench_compile finds its
        # graphs in inductor's on-disk cache
        'smoke_cifar_compile': (cifar + ck('cifar_compile') + [
            '--num_epochs', first, '--precision', 'bf16', '--channels_last', '--compile', '--compile_mode',
            'reduce-overhead'] + ([] if smoke else ['--batch_size', '64', '--eval_batch_size', '1024']), no_compile),
        'bench_compile': bench_part('compile', no_compile),
        'tests_cuda_compile': (pytest + ['-m', 'slow', '-k', 'compile', '--basetemp',
                                         os.path.join(work, 'pytest_compile')], dict(cuda_tests, **no_compile)),
    }
    for dataset in ('cifar10', 'clothing1m', 'webvision'):
        argv['scaling_' + dataset] = ([os.path.join('tools', 'scaling.py'), '--dataset', dataset, '--out', os.path.join(work, 'scaling')] +
                                      (['--smoke', '--worlds', '1,2'] if smoke else ['--device', 'cuda']), None)
    parts = []
    for name, _ in SPEED_PLAN:
        a, env = argv[name]
        if name.startswith('bench_') or name == 'breakdown':
            a = bench + a
        parts.append(Part(name, a, 0, env))
    return parts


def speed_summary(work, rows):
    """The merged speed table, the breakdown, the scaling tables, as markdown."""
    results = []
    for config in ('reference', 'device', 'tf32', 'bf16_cl', 'deterministic', 'compile'):
        path = os.path.join(work, 'bench_%s.json' % config)
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
            device = [r['train_s'] for r in results if r['config'] == 'device']
            ratio = base['train_s'] / device[0] if device else float('nan')
            lines.append('- target: post-warm-up epoch of the device pipeline (fp32) >= 5x the reference pipeline: '
                         '%.2fx, %s' % (ratio, 'met' if ratio >= 5 else 'NOT met'))
        lines.append('- target: 301-epoch CIFAR-10 run < 1 hour: %.1f min projected with %s, %s'
                     % (total / 60, fastest['config'], 'met' if total < 3600 else 'NOT met'))
        lines.append('')
    lines += torchrun_lines(work)
    for name, title in (('breakdown.md', None), (os.path.join('scaling', 'scaling_%s.md'), 'Projected scaling, %s '
                                                  '(scaling.py: measured on one device, communication modelled):')):
        for dataset in (('cifar10', 'clothing1m', 'webvision') if title else ('',)):
            path = os.path.join(work, name % dataset if title else name)
            if os.path.exists(path):
                with open(path) as f:
                    lines += ([title % dataset, ''] if title else []) + [f.read().strip(), '']
    return lines


def torchrun_lines(work):
    """smoke_cifar against the same run under torchrun with one process: same records? time per epoch?"""
    logs = [os.path.join(work, 'runs', name, 'cifar10_0.5_sym_log.jsonl') for name in ('cifar', 'cifar_torchrun')]
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


def fastest_config(work):
    times = {}
    for config in ('device', 'tf32', 'bf16_cl', 'compile'):
        path = os.path.join(work, 'bench_%s.json' % config)
        if os.path.exists(path):
            with open(path) as f:
                times[config] = json.load(f)['results'][0]['train_s']
    return min(times, key=times.get) if times else 'device'


# ----------------------------------------------------------------------------------
# evidence
# ----------------------------------------------------------------------------------

def evidence_parts(args, fashion, work):
    """(noise label, [DivideMix part, cross-entropy part]) per noise setting, in order."""
    out = os.path.join(work, 'evidence')
    scale = (['--train_subset', '200', '--test_subset', '100', '--width', '4', '--num_epochs', '1', '--warm_up', '1',
              '--device', 'cpu'] if args.smoke else
             ['--num_epochs', str(args.epochs), '--warm_up', str(args.warm_up), '--lr_decay_epoch',
              str(args.lr_decay_epoch), '--device', 'cuda'])
    groups = []
    for mode, r in (('sym', 0.8), ('asym', 0.4)):
        common = ['Train_cifar.py', '--dataset', 'fashionmnist', '--data_path', fashion, '--noise_mode', mode,
                  '--r', str(r), '--noise_file', os.path.join(out, 'noise_%.1f_%s.json' % (r, mode)),
                  '--checkpoint_dir', out, '--num_workers', '0', '--log_every', '50', '--overwrite',
                  '--pipeline', 'device', '--augment', 'crop_flip'] + scale
        env = {'OMP_NUM_THREADS': '1'} if args.smoke else {}  # two CPU processes side by side: a core each
        groups.append(('%s %.0f%%' % (mode, 100 * r), [
            Part('%s%.0f_dividemix' % (mode, 100 * r), common + ['--method', 'dividemix', '--id', 'dividemix'], 0, env),
            Part('%s%.0f_ce' % (mode, 100 * r), common + ['--method', 'ce', '--id', 'ce', '--track_division'], 0,
                 env)]))
    return groups


def run_evidence(groups, logs, start_time, budget):
    """Each pair side by side (they share the device), each pair in half the budget plus what is left."""
    rows, done, planned = [], [], 0.0
    for label, pair in groups:
        planned += budget / len(groups)
        limit = start_time + planned - time.time()
        if limit < 0.5 * budget / len(groups):
            rows += [{'part': p.name, 'status': 'not run (budget spent)', 'seconds': 0} for p in pair]
            continue
        t0 = time.time()
        started = [start(p, logs) for p in pair]
        rows += [finish(p, *s, t0, limit, stop_label='stopped at its box') for p, s in zip(pair, started)]
        done.append((label, label.split()[0], float(label.split()[1][:-1]) / 100))
    return rows, done


def evidence_summary(args, work, fashion_groups):
    out = os.path.join(work, 'evidence')
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
            last_div = [x for x in epochs if x.get('auc1') is not None]
            d = last_div[-1] if last_div else {}
            mean = lambda key: (d[key + '1'] + d[key + '2']) / 2 if d.get(key + '1') is not None else float('nan')
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
            lines += ['', 'plot: evidence_acc.png']
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


def pack_logs(work, path):
    """One .tar.gz of the parts' logs and the runs' text logs, JSON lines and tables (no checkpoints, no
    data), largest files cut to their ends so that the archive stays under MAX_TAR."""
    keep = ('.log', '.txt', '.jsonl', '.json', '.md', '.csv')
    files = []
    for folder, _, names in os.walk(work):
        if os.sep + 'data' in folder[len(work):] or 'pytest_' in folder:
            continue
        files += [os.path.join(folder, n) for n in names if n.endswith(keep)]
    cap = 4 * 2 ** 20
    while True:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode='w:gz') as tar:
            for f in sorted(files):
                with open(f, 'rb') as src:
                    data = src.read()
                data = data[-cap:]
                info = tarfile.TarInfo(os.path.relpath(f, work))
                info.size, info.mtime = len(data), int(os.path.getmtime(f))
                tar.addfile(info, io.BytesIO(data))
        if buf.tell() <= MAX_TAR or cap < 4096:
            break
        cap //= 2
    with open(path, 'wb') as f:
        f.write(buf.getvalue())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('phase', choices=['speed', 'evidence'])
    p.add_argument('--out', default=os.environ.get('OUT', 'gpu_check_out'), help='results folder (default $OUT)')
    p.add_argument('--smoke', action='store_true', help='every part for seconds on the CPU')
    p.add_argument('--budget', type=float, default=None,
                   help='seconds for the whole phase; the planned boxes are scaled to sum to it (default 510; '
                        '--smoke: 900, the CPU being slower)')
    p.add_argument('--workers', type=int, default=12, help='DataLoader workers of the reference pipeline')
    p.add_argument('--fashion_dir', default=os.path.join(ROOT, '.gpu_data', 'fashion-mnist'))
    p.add_argument('--epochs', type=int, default=40, help='evidence: --num_epochs of each run (the box may cut it)')
    p.add_argument('--warm_up', type=int, default=10, help='evidence: warm-up epochs')
    p.add_argument('--lr_decay_epoch', type=int, default=30, help='evidence: lr / 10 from this epoch')
    p.add_argument('--parts', default=None,
                   help='comma-separated part names to run (default all; e.g. to rerun the one that failed)')
    p.add_argument('--keep', default=None, help='keep the working folder here instead of a temporary one')
    args = p.parse_args(argv)
    budget = args.budget if args.budget is not None else (900 if args.smoke else 510)
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    work = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix='gpu_check_')
    logs = os.path.join(work, 'logs')
    os.makedirs(logs, exist_ok=True)
    start_time = time.time()
    env = environment()
    print('| gpu_check %s%s: %s, torch %s, CUDA %s, driver %s; budget %.0f s; results in %s' % (
        args.phase, ' --smoke' if args.smoke else '', env['device'], env['torch'], env['cuda'], env['driver'],
        budget, args.out), flush=True)
    wanted = args.parts.split(',') if args.parts else None
    try:
        if args.phase == 'speed':
            import tiny_data
            data = tiny_data.make_roots(os.path.join(work, 'data'))
            parts = [q for q in speed_parts(args, data, work) if not wanted or q.name in wanted]
            plan = [(name, box) for name, box in SPEED_PLAN if any(q.name == name for q in parts)]
            if not any(box for _, box in plan):  # only parts that run on what is left: share the budget
                plan = [(name, 1) for name, _ in plan]
            rows = run_parts(parts, scaled(plan, budget), logs, start_time)
            summary = speed_summary(work, rows)
        else:
            fashion = find_fashion(args.fashion_dir)
            if args.smoke:  # a tiny copy in the real format, so the smoke run reads little
                import tiny_data
                fashion = os.path.join(work, 'data', 'fashion')
                tiny_data.make_fashion(fashion, n_train=200, n_test=100)
            groups = [(label, [q for q in pair if not wanted or q.name in wanted])
                      for label, pair in evidence_parts(args, fashion, work)]
            rows, done = run_evidence([g for g in groups if g[1]], logs, start_time, budget)
            summary = evidence_summary(args, work, done)
        table = ['| part | status | seconds |', '| --- | --- | --- |'] + [
            '| %s | %s | %.1f |' % (r['part'], r['status'], r['seconds']) for r in rows]
        text = '\n'.join(['gpu_check %s%s on %s (torch %s, CUDA %s, driver %s), %.0f s of a %.0f-s budget' % (
            args.phase, ' --smoke' if args.smoke else '', env['device'], env['torch'], env['cuda'], env['driver'],
            time.time() - start_time, budget), ''] + table + [''] + summary)
        with open(os.path.join(args.out, 'summary_%s.md' % args.phase), 'w') as f:
            f.write(text + '\n')
        with open(os.path.join(args.out, 'summary_%s.json' % args.phase), 'w') as f:
            from dividemix_run import logs  # strict JSON (no NaN)
            logs.dump({'environment': env, 'parts': rows, 'budget': budget, 'args': vars(args)}, f, indent=1)
        pack_logs(work, os.path.join(args.out, 'logs_%s.tar.gz' % args.phase))
        print('\n' + text, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in rows if r['status'] != 'ok' and not r['status'].startswith('stopped at its box')]
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
