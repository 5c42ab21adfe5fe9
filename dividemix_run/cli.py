"""The command line the three training scripts share: their flags, the checks that reject
bad values with exit status 2, the read-only settings a run resolves them into, and the
exit statuses of the expected failures."""
import math
import os
import signal
import sys
import tempfile

from dividemix import DivergenceError

EXIT_USAGE = 2       # bad flag, missing or damaged data, a failed save: nothing good was lost
EXIT_DIVERGED = 3    # a loss or weight became NaN/inf: the last good checkpoint is kept
# interrupted: 128 + the signal's number (130 SIGINT, 143 SIGTERM), the last checkpoint kept


class UsageError(Exception):
    """Bad input: the message names the problem and the fix. Exits with status 2."""


class SaveError(Exception):
    """A checkpoint or weights file could not be written (disk full, I/O error); the previous file of
    that name is intact. Exits with status 2."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived while a run was training (a BaseException, like KeyboardInterrupt,
    so that no `except Exception` swallows it). Exits with status 128 + the signal's number."""

    def __init__(self, signum):
        self.signum = signum
        super().__init__('interrupted by %s' % signal.Signals(signum).name)


def _kept(e):
    """What the message says about the run's last checkpoint (Run sets e.checkpoint, e.saved_epoch)."""
    if getattr(e, 'checkpoint', None):
        return 'The checkpoint after epoch %d is kept (%s)' % (e.saved_epoch, e.checkpoint)
    return None


def _stderr():
    """Where the expected failures are reported: stderr, but only by rank 0 under torchrun (the other
    ranks exit with the same status, quietly; unexpected tracebacks still show on every rank)."""
    from . import distributed
    return sys.stderr if distributed.env_rank() == 0 else open(os.devnull, 'w')


def deterministic_op(e):
    """For torch's RuntimeError '<op> does not have a deterministic implementation, but you set
    torch.use_deterministic_algorithms(True)...' (--deterministic met an op without a deterministic CUDA
    kernel): the message that names the op and the way out; None for any other error."""
    msg = str(e)
    if 'does not have a deterministic implementation' not in msg:
        return None
    op = msg.split(' does not have a deterministic implementation', 1)[0].split()[-1]
    return ('--deterministic: the CUDA op %s has no deterministic kernel, and this run uses it (torch.use_'
            'deterministic_algorithms(True) refused it). Leave out --deterministic for this network (the run is then '
            'reproduced statistically, not bit for bit), or choose an --arch that does not use it' % op)


def _interrupt(signum, frame):
    raise Interrupted(signum)


def run_main(main, argv=None, data_errors=()):
    """Run main(argv) and turn the expected failures into a message and an exit status:
    2 bad input (UsageError; data_errors, the loaders' error classes, also when a DataLoader
    worker raised one mid-run: the checkpoint of the last finished epoch is kept; SaveError;
    an op that --deterministic cannot run), 3 divergence, 130 / 143 interrupted by SIGINT / SIGTERM
    (from the first moment: a signal while the data loads or a resume starts up says what is on disk).
    stdout and stderr go quiet instead of failing when they are closed or their reader went away
    (`>&-`, `| head`): the run's files are its output."""
    from .logs import quiet_streams
    import threading
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        with quiet_streams():
            return _run_main(main, argv, data_errors)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _run_main(main, argv, data_errors):
    try:
        return main(argv)
    except UsageError as e:
        print('error: %s' % e, file=_stderr())
        sys.exit(EXIT_USAGE)
    except SaveError as e:
        kept = _kept(e)
        print('error: %s. %s' % (e, (kept + ': free some space (or move the run to another --checkpoint_dir), then '
                                     'continue with --resume.') if kept else
                                 'No checkpoint of this run was written yet: free some space, then start it again.'),
              file=_stderr())
        sys.exit(EXIT_USAGE)
    except data_errors as e:
        msg = str(e)
        if 'Original Traceback' in msg:  # re-raised from a DataLoader worker: keep the original message
            msg = [l for l in msg.strip().splitlines() if l.strip()][-1].split(': ', 1)[-1]
        kept = _kept(e)
        print('error: %s%s' % (msg, ('. ' + kept + ': fix the file, then continue with --resume.') if kept else ''),
              file=_stderr())
        sys.exit(EXIT_USAGE)
    except DivergenceError as e:
        kept = _kept(e)
        print('error: training diverged: %s. %s' % (e, (
            kept + ': --resume continues from it (with the same settings it diverges again: on the CPU, and on '
            'CUDA with --deterministic, the same numbers repeat), or lower --lr and start over with --overwrite.')
            if kept else
            'No checkpoint of this run was written before it: lower --lr and start over (--overwrite).'),
            file=_stderr())
        sys.exit(EXIT_DIVERGED)
    except RuntimeError as e:
        msg = deterministic_op(e)
        if msg is None:
            raise
        kept = _kept(e)
        print('error: %s.%s' % (msg, (' ' + kept + ': continue with --resume.') if kept else ''), file=_stderr())
        sys.exit(EXIT_USAGE)
    except (Interrupted, KeyboardInterrupt) as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        kept = _kept(e)
        during = ' during epoch %d' % e.epoch if getattr(e, 'epoch', None) is not None else ''
        if kept:
            what = kept + ': continue with the same command and --resume.'
        elif getattr(e, 'resume_from', None):
            what = ('The checkpoint %s is as it was: run the same command again to resume from it.' % e.resume_from)
        elif hasattr(e, 'epoch'):  # the run had started (Run saw the signal)
            what = 'No epoch of this run had finished: nothing to resume; start it again.'
        else:
            what = ('It had not started training: nothing of it was written or changed; run the same command again%s.'
                    % (' (its checkpoint is as it was)' if '--resume' in (sys.argv if argv is None else argv) else ''))
        print('\nerror: interrupted by %s%s. %s' % (signal.Signals(signum).name, during, what), file=_stderr())
        sys.exit(128 + signum)


class Settings(object):
    """A run's resolved settings: the parsed flags with every run-dependent default filled in.
    Read-only (argparse's namespace is left as parsed); `replace` makes a changed copy."""

    def __init__(self, **values):
        object.__setattr__(self, '_values', dict(values))

    NOT_SETTINGS = ('dry_run',)  # how to run, not what: never recorded

    @classmethod
    def from_args(cls, args, **resolved):
        values = {k: v for k, v in vars(args).items() if k not in cls.NOT_SETTINGS}
        return cls(**dict(values, **resolved))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError('no setting %r' % name) from None

    def __setattr__(self, name, value):
        raise AttributeError('settings are read-only; use replace(%s=...)' % name)

    def get(self, name, default=None):
        return self._values.get(name, default)

    def replace(self, **changes):
        return Settings(**dict(self._values, **changes))

    def as_dict(self):
        return dict(self._values)


def print_settings(title, settings, notes=()):
    print('| %s' % title)
    for k in sorted(settings):
        print('|   %-16s %s' % (k, settings[k]))
    for n in notes:
        print('| note: %s' % n)
    sys.stdout.flush()


# ----------------------------------------------------------------------------------
# Flags
# ----------------------------------------------------------------------------------

def add_reference_args(parser, *, batch_size, lr, alpha, lambda_u, p_threshold, num_epochs, id, num_class, data_path,
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


def add_runtime_args(parser):
    """The flags every script shares (beyond the reference's own)."""
    g = parser.add_argument_group('runtime (not in the reference)')
    g.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'],
                   help='auto: CUDA when available (device --gpuid), else CPU')
    g.add_argument('--precision', default='fp32', choices=['fp32', 'tf32', 'bf16'],
                   help='fp32: IEEE single precision (on CUDA too: TensorFloat-32 off); tf32 (CUDA): TensorFloat-32 '
                        'matmuls and convolutions on Ampere and newer GPUs; bf16: autocast the forward passes (losses '
                        'stay fp32)')
    g.add_argument('--deterministic', action='store_true',
                   help='CUDA: deterministic cuDNN/cuBLAS algorithms and torch.use_deterministic_algorithms(True), '
                        'so a run and its resumption reach the same bits on the same GPU model and torch version '
                        '(slower; the CPU is deterministic without it)')
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
    g.add_argument('--no_sync_bn', action='store_true',
                   help='under torchrun: BatchNorm statistics per process instead of over the global batch '
                        '(faster; not the reference\'s numbers)')
    g.add_argument('--dry_run', action='store_true',
                   help='check the settings, the data (with a decode of sampled images), the output folder and a '
                        'resume as the run would, print the plan (settings and their sources, data, network, '
                        'epochs and steps, devices), and exit without writing or changing anything')
    g.add_argument('--tensorboard', default=None, metavar='DIR',
                   help='also write the JSON-line metrics as TensorBoard scalars to DIR/<run name> '
                        '(needs the tensorboard package)')
    return parser


def add_image_args(parser):
    """The flags of the scripts that decode image files (Train_folder, Clothing1M, WebVision)."""
    parser.add_argument('--max_image_pixels', type=int, default=None, metavar='N',
                        help='largest image (width x height, in pixels) to decode (default: Pillow\'s, which refuses '
                             'images over 178,956,970 pixels as possible decompression bombs; 0: no limit)')
    return parser


def set_image_limit(max_image_pixels):
    """Pillow's decompression-bomb limit from --max_image_pixels (None: Pillow's own; 0: none). DataLoader
    workers started by fork inherit it."""
    if max_image_pixels is None:
        return
    check_range('max_image_pixels', max_image_pixels, 0)
    import warnings
    from PIL import Image
    # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice it: N allows images of up to N pixels, quietly
    Image.MAX_IMAGE_PIXELS = max_image_pixels // 2 if max_image_pixels else None
    warnings.simplefilter('ignore', Image.DecompressionBombWarning)


def check_T(T, num_class):
    """--T: sharpening raises probabilities to the power 1/T. A prediction that is uniform over C classes
    (1/C each, the worst case: the largest probability is never below 1/C) then becomes 2^(-log2(C)/T),
    which underflows float32's normal range (2^-126) for T < log2(C)/126: the targets turn 0/0 and every
    loss NaN, whatever the learning rate. Refuse such T up front, naming the bound."""
    bound = math.log2(max(num_class, 2)) / 126
    if T < bound:
        raise UsageError('--T %g is too small for %d classes: sharpening raises probabilities to the power 1/T, and '
                         'below T = %.3g float32 underflows to 0/0 (the targets, then every loss, become NaN, '
                         'whatever the learning rate). Use --T %.3g or more (the paper\'s is 0.5)'
                         % (T, num_class, bound, bound))


def check_range(name, value, lo=None, hi=None, lo_open=False, hi_open=False, hint=''):
    """Raise UsageError unless value is a finite number with lo <= value <= hi (strict where *_open).
    NaN compares false with everything, so it is refused first, by name."""
    if not math.isfinite(value):
        raise UsageError('--%s %s is not a finite number%s' % (name, value, ('; ' + hint) if hint else ''))
    bad = ((lo is not None and (value < lo or (lo_open and value == lo)))
           or (hi is not None and (value > hi or (hi_open and value == hi))))
    if bad:
        num = lambda v: str(v) if isinstance(v, int) else '%g' % v
        lo_s = '' if lo is None else ('(' if lo_open else '[') + num(lo)
        hi_s = '' if hi is None else num(hi) + (')' if hi_open else ']')
        interval = '%s, %s' % (lo_s or '(-inf', hi_s or 'inf)')
        raise UsageError('--%s %s is outside %s%s' % (name, num(value), interval, ('; ' + hint) if hint else ''))


MAX_SEED = 2 ** 32 - 1  # numpy's np.random.seed takes 0..2**32-1; torch would take more


def check_common_args(args):
    """Range checks of the flags every script shares; each names the flag and the valid range.
    They run before anything is read or written."""
    for name in ('batch_size', 'log_every'):
        check_range(name, getattr(args, name), 1)
    if getattr(args, 'eval_batch_size', None) is not None:
        check_range('eval_batch_size', args.eval_batch_size, 1)
    check_range('seed', args.seed, 0, MAX_SEED, hint='numpy and torch are seeded with it')
    check_id(args.id)
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
    if args.tensorboard is not None:
        check_tensorboard()


def check_id(run_id):
    """--id names files inside --checkpoint_dir: no folder parts."""
    bad = [c for c in ('/', os.sep, os.altsep, '\0') if c and c in run_id]
    if bad or run_id in ('.', '..'):
        raise UsageError('--id %r would name a file outside --checkpoint_dir (%s): use a plain name, and '
                         '--checkpoint_dir for the folder' % (run_id, 'it contains %r' % bad[0] if bad else 'a folder'))


def check_tensorboard():
    """--tensorboard needs the optional tensorboard package; say so before anything runs."""
    try:
        import torch.utils.tensorboard  # noqa: F401 (it imports tensorboard)
    except ImportError as e:
        raise UsageError('--tensorboard needs the tensorboard package, which is not installed (%s): '
                         'pip install tensorboard, or leave out --tensorboard' % str(e).splitlines()[0][:120]) \
            from None


# What the longest file name a run writes adds to its name: the checkpoint's temporary file
# ('.' + name + '_checkpoint.pth.tar' + '.XXXXXXXX.tmp', checkpoints.atomic_save)
LONGEST_SUFFIX = len('.' + '_checkpoint.pth.tar' + '.XXXXXXXX.tmp')


def check_file_names(stem, settings):
    """The run's file names fit the file system (at most NAME_MAX bytes each, 255 on most): refused up front,
    naming the --id length that fits, instead of failing when epoch 0's checkpoint is saved."""
    folder, name = os.path.split(os.path.abspath(stem))
    try:
        limit = os.pathconf(folder, 'PC_NAME_MAX')
    except (OSError, ValueError, AttributeError):
        limit = 255
    longest = len(name.encode()) + LONGEST_SUFFIX
    if longest > limit:
        run_id = settings.get('id') or ''
        fits = len(run_id.encode()) - (longest - limit)
        raise UsageError('the run name %s... (%d bytes) makes file names of up to %d bytes (its checkpoint\'s '
                         'temporary file), over the %d this file system allows in %s: %s'
                         % (name[:40], len(name.encode()), longest, limit, folder,
                            'pass an --id of at most %d characters' % fits if fits > 0 else 'pass a shorter --id'))


def check_writable_folder(path, what='the output folder', fix='pass a writable --checkpoint_dir', create=True):
    """Create the folder if needed and prove it takes files, without touching the files it holds; a
    UsageError naming it (what) and the way out (fix) when it cannot. create=False (--dry_run): nothing is
    made; the nearest folder that exists must be one and take files (a probe file, removed at once)."""
    try:
        probe = path
        if create:
            os.makedirs(path, exist_ok=True)
        else:
            while not os.path.lexists(probe) and os.path.dirname(os.path.abspath(probe)) != os.path.abspath(probe):
                probe = os.path.dirname(os.path.abspath(probe))
            if not os.path.isdir(probe):
                import errno
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), probe)
        with tempfile.NamedTemporaryFile(dir=probe, prefix='.write_test_'):
            pass
    except OSError as e:
        raise UsageError('cannot write to %s %s (%s): %s' % (what, path, e.strerror or e, fix)) from None


def check_output_dir(path, create=True):
    """--checkpoint_dir: created if needed (create=False, --dry_run: where it would be), proven writable."""
    check_writable_folder(path, create=create)
