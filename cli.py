"""The command line the three training scripts share: their flags, the checks that reject
bad values with exit status 2, the read-only settings a run resolves them into, and the
exit statuses of the expected failures."""
import os
import sys
import tempfile

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


class Settings(object):
    """A run's resolved settings: the parsed flags with every run-dependent default filled in.
    Read-only (argparse's namespace is left as parsed); `replace` makes a changed copy."""

    def __init__(self, **values):
        object.__setattr__(self, '_values', dict(values))

    @classmethod
    def from_args(cls, args, **resolved):
        return cls(**dict(vars(args), **resolved))

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
    g.add_argument('--tensorboard', default=None, metavar='DIR',
                   help='also write the JSON-line metrics as TensorBoard scalars to DIR/<run name> '
                        '(needs the tensorboard package)')
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
    if args.tensorboard is not None:
        check_tensorboard()


def check_tensorboard():
    """--tensorboard needs the optional tensorboard package; say so before anything runs."""
    try:
        import torch.utils.tensorboard  # noqa: F401 (it imports tensorboard)
    except ImportError as e:
        raise UsageError('--tensorboard needs the tensorboard package, which is not installed (%s): '
                         'pip install tensorboard, or leave out --tensorboard' % str(e).splitlines()[0][:120]) \
            from None


def check_output_dir(path):
    """Create the output folder if needed and prove it is writable, without touching its files."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix='.write_test_'):
            pass
    except OSError as e:
        raise UsageError('cannot write to the output folder %s (%s): pass a writable --checkpoint_dir'
                         % (path, e.strerror or e)) from None
