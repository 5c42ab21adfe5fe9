"""What the three training scripts share besides the algorithm (which is in dividemix.py):
device/precision/compile in one place, seeding and RNG state, input checks that exit
with status 2, run logs that survive a resume, atomic checkpoints, progress bars.
"""
import contextlib
import hashlib
import json
import os
import random
import sys
import tempfile
import time

import numpy as np
import torch

from dividemix import DivergenceError

EXIT_USAGE = 2       # bad flag, missing or damaged data: nothing was trained
EXIT_DIVERGED = 3    # a loss became NaN/inf: the last good checkpoint is kept


class UsageError(Exception):
    """Bad input: the message names the problem and the fix. Exits with status 2."""


def run_main(main, argv=None, data_errors=()):
    """Run main(argv) and turn the expected failures into a message and an exit status.
    data_errors: the loaders' error classes; raised during training (an image that is gone,
    found by a DataLoader worker) they end the run like bad input, with the checkpoint of
    the last finished epoch kept."""
    try:
        return main(argv)
    except UsageError as e:
        print('error: %s' % e, file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except data_errors as e:
        msg = str(e)
        if 'Original Traceback' in msg:  # re-raised from a DataLoader worker: keep the original message
            msg = [l for l in msg.strip().splitlines() if l.strip()][-1].split(': ', 1)[-1]
        print('error: %s' % msg, file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except DivergenceError as e:
        print('error: training diverged: %s. The last good checkpoint was kept; lower --lr, or resume '
              'from it with --resume.' % e, file=sys.stderr)
        sys.exit(EXIT_DIVERGED)


# ----------------------------------------------------------------------------------
# Flags and their checks
# ----------------------------------------------------------------------------------

def add_reference_args(parser, batch_size, lr, alpha, lambda_u, p_threshold, num_epochs, id, num_class, data_path,
                       lambda_u_help='weight for unsupervised loss', p_threshold_help='clean probability threshold'):
    """The flags every reference script has, with that script's defaults (same names and meanings)."""
    parser.add_argument('--batch_size', default=batch_size, type=int, help='train batchsize')
    parser.add_argument('--lr', '--learning_rate', default=lr, type=float, help='initial learning rate')
    parser.add_argument('--alpha', default=alpha, type=float, help='parameter for Beta')
    parser.add_argument('--lambda_u', default=lambda_u, type=float, help=lambda_u_help)
    parser.add_argument('--p_threshold', default=p_threshold, type=float, help=p_threshold_help)
    parser.add_argument('--T', default=0.5, type=float, help='sharpening temperature')
    parser.add_argument('--num_epochs', default=num_epochs, type=int, help='train epochs 0..num_epochs (inclusive)')
    parser.add_argument('--id', default=id, type=str)
    parser.add_argument('--seed', default=123, type=int)
    parser.add_argument('--gpuid', default=0, type=int)
    parser.add_argument('--num_class', default=num_class, type=int)
    parser.add_argument('--data_path', default=data_path, type=str, help='path to dataset')
    parser.add_argument('--num_workers', default=5, type=int, help='DataLoader workers')
    return parser


def check_common_args(args):
    """Range checks of the flags every script shares; each names the flag and the valid range."""
    for name in ('batch_size', 'log_every'):
        check_range(name, getattr(args, name), 1)
    check_range('num_workers', args.num_workers, 0)
    check_range('num_epochs', args.num_epochs, 0)
    check_range('lr', args.lr, 0, lo_open=True)
    check_range('T', args.T, 0, lo_open=True)
    check_range('alpha', args.alpha, 0, lo_open=True)
    if args.p_threshold is not None:
        check_range('p_threshold', args.p_threshold, 0, 1, lo_open=True, hi_open=True,
                    hint='it is a probability threshold')
    if args.lambda_u is not None:
        check_range('lambda_u', args.lambda_u, 0)


def add_runtime_args(parser):
    """The flags every script shares (beyond the reference's own)."""
    g = parser.add_argument_group('runtime (not in the reference)')
    g.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'],
                   help='auto: CUDA when available (device --gpuid), else CPU')
    g.add_argument('--precision', default='fp32', choices=['fp32', 'bf16'],
                   help='bf16: autocast the forward passes (losses stay fp32)')
    g.add_argument('--channels_last', action='store_true', help='channels-last memory format (CUDA)')
    g.add_argument('--compile', action='store_true', help='torch.compile the networks')
    g.add_argument('--compile_mode', default='default',
                   help="torch.compile mode, e.g. 'reduce-overhead' (CUDA graphs) for batch-64 steps")
    g.add_argument('--checkpoint_dir', default='checkpoint', help='where logs, nets and checkpoints go')
    g.add_argument('--resume', nargs='?', const='auto', default=None,
                   help='continue a run: a checkpoint path, or no value for the latest checkpoint of this run')
    g.add_argument('--overwrite', action='store_true',
                   help='start afresh even though this run already has a checkpoint (its logs are replaced)')
    g.add_argument('--unseeded_gmm', action='store_true',
                   help='reference behaviour: fit the GMM without a fixed random_state (not reproducible)')
    g.add_argument('--log_every', type=int, default=10, help='refresh the progress bar every N steps')
    return parser


def check_range(name, value, lo=None, hi=None, lo_open=False, hi_open=False, hint=''):
    """Raise UsageError unless lo <= value <= hi (strict where *_open)."""
    bad = ((lo is not None and (value < lo or (lo_open and value == lo)))
           or (hi is not None and (value > hi or (hi_open and value == hi))))
    if bad:
        lo_s = '' if lo is None else ('(%g' % lo if lo_open else '[%g' % lo)
        hi_s = '' if hi is None else ('%g)' % hi if hi_open else '%g]' % hi)
        interval = '%s, %s' % (lo_s or '(-inf', hi_s or 'inf)')
        raise UsageError('--%s %g is outside %s%s' % (name, value, interval, ('; ' + hint) if hint else ''))


def check_output_dir(path):
    """Create the output folder if needed and prove it is writable, without touching its files."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix='.write_test_'):
            pass
    except OSError as e:
        raise UsageError('cannot write to the output folder %s (%s): pass a writable --checkpoint_dir'
                         % (path, e.strerror or e)) from None


# ----------------------------------------------------------------------------------
# Device, precision, compile: decided here and nowhere else
# ----------------------------------------------------------------------------------

class Runtime(object):
    """Device, precision, memory format and compilation, from the runtime flags."""

    def __init__(self, device='auto', gpuid=0, precision='fp32', channels_last=False, compile=False,
                 compile_mode='default'):
        if device == 'cuda' and not torch.cuda.is_available():
            raise UsageError('--device cuda but no CUDA device is available: use --device cpu or auto')
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        if device == 'cuda':
            check_range('gpuid', gpuid, 0, torch.cuda.device_count() - 1,
                        hint='this machine has %d CUDA device(s)' % torch.cuda.device_count())
            torch.cuda.set_device(gpuid)
            self.device = torch.device('cuda', gpuid)
            torch.backends.cudnn.benchmark = True
        else:
            self.device = torch.device('cpu')
        self.precision = precision
        self.channels_last = channels_last
        self.compile = compile
        self.compile_mode = compile_mode

    @classmethod
    def from_args(cls, args):
        return cls(args.device, args.gpuid, args.precision, args.channels_last, args.compile, args.compile_mode)

    def check_conv_width(self, narrowest):
        """Refuse a CPU setting that torch's CPU convolution gets wrong. Measured with torch 2.15
        on an AVX2 CPU: the backward of a stride-2 1x1 convolution (PreResNet's first downsampling
        shortcut) with 2 to 7 input channels in channels_last layout hangs, corrupts the heap or
        returns wrong gradients (oneDNN's jit_avx2_1x1 kernel). fp32 only; --compile picks
        channels_last by itself. Real widths (8 and up; the paper's is 64) are unaffected."""
        if (self.device.type == 'cpu' and self.precision == 'fp32' and (self.channels_last or self.compile)
                and 2 <= narrowest < 8):
            flag = '--compile' if self.compile else '--channels_last'
            raise UsageError('--width %d with %s on the CPU: torch\'s CPU convolution hangs or computes wrong '
                             'gradients for stride-2 1x1 convolutions with fewer than 8 input channels in '
                             'channels_last layout; use --width 8 or more, or leave out %s' % (narrowest, flag, flag))

    def autocast(self):
        """Context for forward passes: bf16 autocast, or nothing for fp32."""
        if self.precision == 'bf16':
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def model(self, net):
        """Move a freshly built network to the device (and memory format)."""
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return net

    def runner(self, net, batch_sizes=()):
        """What the algorithm calls: the network itself, or with --compile a module that runs
        the compiled network on the batch sizes it was compiled for and the eager one on
        others (the ragged last batches), so shapes never trigger recompilation."""
        if not self.compile:
            return net
        return CompiledNet(net, batch_sizes, self.compile_mode)

    def inputs(self, x):
        """Move a batch tensor from a DataLoader to the device (non-blocking from pinned memory)."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def describe(self):
        name = torch.cuda.get_device_name(self.device) if self.device.type == 'cuda' else 'CPU'
        return '%s (%s), %s%s%s' % (self.device, name, self.precision, ', channels_last' if self.channels_last else '',
                                   ', compiled (%s)' % self.compile_mode if self.compile else '')


class CompiledNet(torch.nn.Module):
    """Dispatch by batch size between a compiled and the eager network (same parameters).

    dynamic=False: one static-shape graph per batch size (a handful: B, 2B, 4B, eval batch,
    in train/eval and grad/no-grad variants) instead of dynamo's switch to a dynamic-shape
    graph at the second size. With mode 'reduce-overhead' (CUDA graphs) an output is only
    valid until the next compiled call, so the algorithm consumes every output before the
    next forward (tests/test_runtime.py checks this with outputs overwritten on purpose)."""

    def __init__(self, net, batch_sizes, mode):
        super().__init__()
        self.net = net
        self.batch_sizes = set(int(b) for b in batch_sizes)
        # both networks share one compiled code object; leave room for every variant of both
        cfg = torch._dynamo.config
        name = 'recompile_limit' if hasattr(cfg, 'recompile_limit') else 'cache_size_limit'  # older torch
        setattr(cfg, name, max(getattr(cfg, name), 32))
        object.__setattr__(self, '_compiled', torch.compile(net, mode=None if mode == 'default' else mode,
                                                            dynamic=False))

    def forward(self, x):
        if x.size(0) in self.batch_sizes:
            return self._compiled(x)
        return self.net(x)


# ----------------------------------------------------------------------------------
# Seeds and RNG state
# ----------------------------------------------------------------------------------

def seed_everything(seed):
    """Python, numpy (the MixUp Beta draw: the reference left it unseeded) and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def rng_state(generators=None):
    """Every random stream a run draws from, in a form torch.load(weights_only=True) reads."""
    np_state = np.random.get_state(legacy=False)
    state = {
        'python': random.getstate(),
        'numpy': {'bit_generator': np_state['bit_generator'],
                  'key': torch.from_numpy(np_state['state']['key'].astype(np.int64)),
                  'pos': int(np_state['state']['pos']), 'has_gauss': int(np_state['has_gauss']),
                  'gauss': float(np_state['gauss'])},
        'torch': torch.get_rng_state(),
        'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        'generators': {k: g.get_state() for k, g in (generators or {}).items()},
    }
    return state


def set_rng_state(state, generators=None):
    random.setstate(_tuplify(state['python']))
    n = state['numpy']
    np.random.set_state({'bit_generator': n['bit_generator'],
                         'state': {'key': n['key'].numpy().astype(np.uint32), 'pos': n['pos']},
                         'has_gauss': n['has_gauss'], 'gauss': n['gauss']})
    torch.set_rng_state(state['torch'])
    if torch.cuda.is_available() and state['cuda']:
        torch.cuda.set_rng_state_all(state['cuda'])
    for k, g in (generators or {}).items():
        g.set_state(state['generators'][k])


def _tuplify(x):
    """random.setstate wants tuples; a checkpoint round trip may hand back lists."""
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def digest(values):
    """sha256 of a label vector, to tell whether a resumed run sees the same noisy labels."""
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.int64))
    return hashlib.sha256(arr.tobytes()).hexdigest()


def file_digest(*paths):
    """sha256 over the bytes of files (the label lists of Clothing1M/WebVision)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------
# Run logs and checkpoints
# ----------------------------------------------------------------------------------

class RunLog(object):
    """The run's text logs (the reference's lines, byte for byte) and its JSON lines.

    files: name -> path. A fresh run truncates them; a resumed run first cuts each file
    back to the size the checkpoint recorded (dropping what the interrupted epoch wrote,
    so nothing is duplicated) and then appends.
    """

    def __init__(self, files, offsets=None):
        self.paths = dict(files)
        self.files = {}
        for name, path in self.paths.items():
            if offsets is None:
                self.files[name] = open(path, 'w')
            else:
                size = int(offsets.get(name, 0))
                if os.path.exists(path):
                    if os.path.getsize(path) < size:
                        raise UsageError('cannot resume: %s is shorter than when the checkpoint was saved; '
                                         'restore it or start a new run with --overwrite' % path)
                    with open(path, 'r+') as f:
                        f.truncate(size)
                elif size:
                    raise UsageError('cannot resume: %s is missing; restore it or start a new run with '
                                     '--overwrite' % path)
                self.files[name] = open(path, 'a')

    def write(self, name, line):
        self.files[name].write(line)
        self.files[name].flush()

    def json(self, name, record):
        self.write(name, json.dumps(record, allow_nan=True) + '\n')

    def offsets(self):
        for f in self.files.values():
            f.flush()
        return {name: os.path.getsize(path) for name, path in self.paths.items()}

    def close(self):
        for f in self.files.values():
            f.close()


def atomic_save(obj, path):
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`:
    a kill at any moment leaves either the old or the new checkpoint, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path):
    """Read a checkpoint with torch.load(weights_only=True): tensors and plain data only."""
    if not os.path.isfile(path):
        raise UsageError('no checkpoint at %s: check --resume, or start the run without it' % path)
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise UsageError('cannot read checkpoint %s (%s): it is damaged or not a checkpoint of these scripts'
                         % (path, str(e).splitlines()[0][:200])) from None


def compare_settings(saved, current, ignore=()):
    """Names of run-defining settings whose values differ, as 'name: saved -> current'."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        if key in ignore:
            continue
        if saved.get(key) != current.get(key):
            diffs.append('--%s: %r in the checkpoint, %r now' % (key, saved.get(key), current.get(key)))
    return diffs


# Settings that may change between a run and its resumption: they do not alter the numbers.
RESUME_FREE = ('resume', 'overwrite', 'num_workers', 'gpuid', 'log_every', 'num_epochs', 'checkpoint_dir',
               'data_path', 'cifarn_file', 'noise_file', 'pretrained_path', 'device')


def prepare_run(args, settings, ckpt_path, log_files, label_digest):
    """Decide between a fresh start and a resume, before anything in the output folder changes.

    Returns (checkpoint or None, RunLog). Refuses (UsageError) to resume across different
    settings or noisy labels, and to silently replace a run that has a checkpoint.
    """
    resume_path = None
    if args.resume is not None:
        resume_path = ckpt_path if args.resume == 'auto' else args.resume
    elif os.path.exists(ckpt_path) and not args.overwrite:
        raise UsageError('%s already holds a checkpoint of this run: pass --resume to continue it, or '
                         '--overwrite to start over (its logs will be replaced), or choose another --id / '
                         '--checkpoint_dir' % ckpt_path)
    if resume_path is None:
        return None, RunLog(log_files)
    ckpt = load_checkpoint(resume_path)
    diffs = compare_settings(ckpt['settings'], settings, ignore=RESUME_FREE)
    if diffs:
        raise UsageError('cannot resume from %s: the settings differ (%s). Resume with the checkpoint\'s '
                         'settings, or start a new run' % (resume_path, '; '.join(diffs)))
    if ckpt.get('label_digest') != label_digest:
        raise UsageError('cannot resume from %s: the noisy labels differ from the ones it was trained on '
                         '(another noise file or data folder?). Use the same --data_path/--noise_file, or '
                         'start a new run' % resume_path)
    return ckpt, RunLog(log_files, offsets=ckpt['log_offsets'])


def summarize(accs):
    """best, last and mean of the last 10 epochs' accuracy (%)."""
    if not accs:
        return {'best': float('nan'), 'last': float('nan'), 'mean_last10': float('nan'), 'epochs': 0}
    return {'best': max(accs), 'last': accs[-1], 'mean_last10': float(np.mean(accs[-10:])), 'epochs': len(accs)}


def print_settings(title, settings, notes=()):
    print('| %s' % title)
    for k in sorted(settings):
        print('|   %-16s %s' % (k, settings[k]))
    for n in notes:
        print('| note: %s' % n)
    sys.stdout.flush()


# ----------------------------------------------------------------------------------
# Progress
# ----------------------------------------------------------------------------------

class Progress(object):
    """A tqdm bar for one pass, quiet when stderr is not a terminal; then one summary line
    per pass goes to stdout instead, so log files still show the run's progress.

    step(batch_idx, metrics) is the algorithm's on_step hook; it reads the metric
    tensors (a device sync) only every `every` steps."""

    def __init__(self, total, desc, every=10):
        from tqdm import tqdm
        self.bar = tqdm(total=total, desc=desc, leave=False, disable=None, dynamic_ncols=True)
        self.desc = desc
        self.every = max(1, every)
        self.done = 0
        self.last = None
        self.start = time.time()

    def step(self, batch_idx, metrics):
        self.last = (batch_idx, metrics)
        if self.bar.disable:
            return
        if (batch_idx + 1) % self.every == 0:
            self.bar.set_postfix({k: '%.4f' % float(v) for k, v in metrics.items()}, refresh=False)
            self.bar.update(batch_idx + 1 - self.done)
            self.done = batch_idx + 1

    def close(self):
        self.bar.close()
        if self.bar.disable and self.last is not None:
            batch_idx, metrics = self.last
            print('%s: %d iterations, %s, %.1f s' % (self.desc, batch_idx + 1, ', '.join(
                '%s %.4f' % (k, float(v)) for k, v in metrics.items()), time.time() - self.start))
            sys.stdout.flush()


@contextlib.contextmanager
def progress(total, desc, every=10):
    p = Progress(total, desc, every)
    try:
        yield p.step
    finally:
        p.close()


class Timer(object):
    def __init__(self):
        self.start = time.time()

    def seconds(self):
        return time.time() - self.start


# ----------------------------------------------------------------------------------
# Batches from the reference's DataLoaders
# ----------------------------------------------------------------------------------

def on_device(loader, runtime):
    """Batches of a DataLoader moved to the device (float tensors in the runtime's layout)."""
    for batch in loader:
        yield tuple(runtime.inputs(t) if isinstance(t, torch.Tensor) else t for t in batch)


def cycle(loader, runtime):
    """The reference's unlabeled stream: iterate the loader, start it again when it runs out."""
    while True:
        yield from on_device(loader, runtime)


def randperm_cpu(n, device=None):
    """The reference's MixUp permutation: torch's global CPU generator, moved to the device."""
    return torch.randperm(n).to(device)


class LoaderPipeline(object):
    """The reference-style data path (PIL transforms + DataLoader) behind the interface the
    scripts use for either path: warmup_batches, eval_batches, test_batches, train_batches.
    loader: an object with the reference's run(mode, pred, prob)."""

    def __init__(self, loader, runtime, num_samples):
        self.loader = loader
        self.runtime = runtime
        self.num_samples = num_samples
        self.randperm = randperm_cpu


    def warmup_batches(self):
        return on_device(self.loader.run('warmup'), self.runtime)

    def eval_batches(self):
        return on_device(self.loader.run('eval_train'), self.runtime)

    def test_batches(self):
        return on_device(self.loader.run('test'), self.runtime)

    def train_batches(self, pred, prob):
        labeled, unlabeled = self.loader.run('train', pred, prob)
        n_labeled, n_unlabeled = len(labeled.dataset), len(unlabeled.dataset)
        return (on_device(labeled, self.runtime), cycle(unlabeled, self.runtime) if n_unlabeled else None,
                n_labeled)


# ----------------------------------------------------------------------------------
# The per-epoch passes every script runs in the same way
# ----------------------------------------------------------------------------------

def warmup_nets(epoch, runs, optimizers, batches_for, conf_penalty, runtime, name, log_every, total=None):
    """Warm up net1 then net2 with cross-entropy (+ confidence penalty); batches_for(k) gives
    the batches of net k. Returns {'loss1': .., 'loss2': ..}."""
    import dividemix as dm
    out = {}
    for k in range(2):
        with progress(total, '%s | Epoch %d warm-up net%d' % (name, epoch, k + 1), log_every) as step:
            res = dm.warmup_epoch(runs[k], optimizers[k], batches_for(k), epoch=epoch, conf_penalty=conf_penalty,
                                  autocast=runtime.autocast, on_step=step, check_every=log_every * 5)
        out['loss%d' % (k + 1)] = res['loss']
    return out


def train_on_divisions(epoch, runs, optimizers, probs, p_threshold, train_batches, runtime, name, log_every,
                       batch_size, num_class, warm_up, T, alpha, lambda_u, mix_unlabeled, randperm,
                       on_division=None):
    """Co-divide: net1 trains on the division made by net2, then net2 on net1's.

    probs: (prob1, prob2), each net's clean probabilities. train_batches(peer, pred, prob)
    returns (labeled batches, unlabeled stream or None, number labeled) for the division
    made by net `peer` (0 or 1). on_division(peer, prob, pred) is called before each pass
    (the scripts write their stats lines there). An empty labeled set skips that net's
    pass; an empty unlabeled set trains on labeled samples only (Lu = 0); both warn.
    Returns the per-net results for the JSON log.
    """
    import dividemix as dm
    record = {}
    for k in range(2):
        peer = 1 - k
        prob = probs[peer]
        pred = prob > p_threshold
        if on_division is not None:
            on_division(peer, prob, pred)
        labeled, unlabeled, n_labeled = train_batches(peer, pred, prob)
        if n_labeled == 0:
            print('warning: epoch %d: the division by net%d labels no sample as clean; net%d is not trained this '
                  'epoch' % (epoch, peer + 1, k + 1), file=sys.stderr)
            record['skipped%d' % (k + 1)] = True
            continue
        if unlabeled is None:
            print('warning: epoch %d: the division by net%d labels every sample as clean; net%d trains on labeled '
                  'samples only (Lu = 0)' % (epoch, peer + 1, k + 1), file=sys.stderr)
        num_iter = dm.num_iterations(n_labeled, batch_size)
        with progress(num_iter, '%s | Epoch %d train net%d' % (name, epoch, k + 1), log_every) as step:
            out = dm.train_epoch(runs[k], runs[peer], optimizers[k], labeled, unlabeled, epoch=epoch,
                                 warm_up=warm_up, num_iter=num_iter, num_class=num_class, T=T, alpha=alpha,
                                 lambda_u=lambda_u, mix_unlabeled=mix_unlabeled, randperm=randperm,
                                 autocast=runtime.autocast, on_step=step, check_every=log_every * 5)
        record.update({'Lx%d' % (k + 1): out['Lx'], 'Lu%d' % (k + 1): out['Lu'], 'lambda_u': out['lambda_u']})
    return record


def begin_epoch(epoch, args, optimizers):
    """Set the epoch's learning rate (lr, / 10 from lr_decay_epoch) and start its JSON record."""
    import dividemix as dm
    lr = dm.learning_rate(epoch, args.lr, args.lr_decay_epoch)
    for opt in optimizers:
        dm.set_lr(opt, lr)
    return {'epoch': epoch, 'lr': lr, 'phase': 'warmup' if epoch < args.warm_up else 'train'}


def resume_nets(ckpt, nets, optimizers):
    for k in range(2):
        nets[k].load_state_dict(ckpt['net%d' % (k + 1)])
        optimizers[k].load_state_dict(ckpt['optimizer%d' % (k + 1)])


def checkpoint_state(script, epoch, settings, label_digest, nets, optimizers, log, generators=None, **extra):
    """Everything a run needs to continue exactly: nets, optimizers, RNG streams, log sizes."""
    state = {'format': 1, 'script': script, 'epoch': epoch, 'settings': settings, 'label_digest': label_digest,
             'rng': rng_state(generators), 'log_offsets': log.offsets()}
    for k in range(2):
        state['net%d' % (k + 1)] = nets[k].state_dict()
        state['optimizer%d' % (k + 1)] = optimizers[k].state_dict()
    state.update(extra)
    return state
