"""Whether, and from what, a run may resume (checkpoint_to_resume), and which settings may change.

A resume continues a run exactly, so it is refused, with what differs named, when the checkpoint
belongs to another script or an earlier format that cannot continue, another number of processes,
other run-defining settings or other noisy labels, another kind of device (for the device pipeline,
whose generator's state belongs to one kind), or when nothing is left to train. A fresh start over a
run that has a checkpoint needs --overwrite.
"""
import os

from .checkpoints import load_checkpoint
from .cli import UsageError
from .data_sources import generator_device

# Settings that may change between a run and its resumption: they do not alter the numbers.
RESUME_FREE = ('resume', 'overwrite', 'num_workers', 'gpuid', 'log_every', 'num_epochs', 'checkpoint_dir',
               'data_path', 'cifarn_file', 'noise_file', 'pretrained_path', 'device', 'tensorboard',
               'accept_noise_file', 'offline', 'report_only', 'report_every', 'max_image_pixels')
# Settings added after checkpoints were written without them, with the value those runs had.
ADDED_SETTINGS = {'deterministic': False, 'min_train_rows': 1, 'max_image_pixels': None}


def compare_settings(saved, current, ignore=()):
    """Names of run-defining settings whose values differ, as 'name: saved -> current'."""
    diffs = []
    saved, current = dict(ADDED_SETTINGS, **saved), dict(ADDED_SETTINGS, **current)  # absent: the old value
    for key in sorted(set(saved) | set(current)):
        if key in ignore:
            continue
        if saved.get(key) != current.get(key):
            diffs.append('--%s: %r in the checkpoint, %r now' % (key, saved.get(key), current.get(key)))
    return diffs


def checkpoint_to_resume(script, s, ckpt_path, label_digest, world, device_type, read_only=False):
    """(checkpoint, its path, a note to print or None) to continue from, or (None, None, None) for a fresh
    start. s: cli.Settings; ckpt_path: this run's checkpoint (--resume with no path); world: the number
    of processes; device_type: 'cpu' or 'cuda'. read_only: only a look at the nets (--report_only)."""
    if s.resume is None:
        if os.path.exists(ckpt_path) and not s.overwrite:
            raise UsageError('%s already holds a checkpoint of this run: pass --resume to continue it, or '
                             '--overwrite to start over (its logs will be replaced), or choose another --id / '
                             '--checkpoint_dir' % ckpt_path)
        return None, None, None
    path = ckpt_path if s.resume == 'auto' else s.resume
    ckpt = load_checkpoint(path)
    if ckpt.get('script', script) != script:
        raise UsageError('cannot resume from %s: it is a checkpoint of %s.py, not of %s.py'
                         % (path, ckpt['script'], script))
    if ckpt.get('format', 1) == 1 and script != 'Train_cifar':
        raise UsageError('cannot resume from %s: it was written by an earlier version of %s.py, which made each '
                         'division at the end of the epoch before it and saved it with the checkpoint; this '
                         'version makes it at the start of the epoch, so the run cannot continue exactly. Finish '
                         'it with the version that started it, or start a new run' % (path, script))
    if ckpt.get('world_size', 1) != world:
        raise UsageError('cannot resume from %s: it was written by a run of %d process(es), this one has %d; the '
                         'random streams of each process are in the checkpoint, so resume with --nproc_per_node '
                         '%d (or start a new run)' % (path, ckpt.get('world_size', 1), world,
                                                      ckpt.get('world_size', 1)))
    free = RESUME_FREE + (('warm_up',) if s.get('method') == 'ce' else ())  # no warm-up in a CE-only run
    diffs = compare_settings(ckpt['settings'], s.as_dict(), ignore=free)
    if diffs:
        raise UsageError('cannot resume from %s: the settings differ (%s). Resume with the checkpoint\'s '
                         'settings, or start a new run' % (path, '; '.join(diffs)))
    note = check_device(ckpt, path, device_type)
    if not read_only and ckpt['epoch'] > s.num_epochs:
        raise UsageError('nothing to train: %s holds the run after epoch %d, and --num_epochs %d asks for epochs '
                         '0..%d. Pass --num_epochs %d or more to continue it%s'
                         % (path, ckpt['epoch'], s.num_epochs, s.num_epochs, ckpt['epoch'] + 1,
                            ' (or --report_only for the label report of its nets)' if 'report_only' in s.as_dict()
                            else ''))
    if ckpt.get('label_digest') != label_digest:
        raise UsageError('cannot resume from %s: the noisy labels differ from the ones it was trained on '
                         '(another noise file or data folder?). Use the same --data_path/--noise_file, or '
                         'start a new run' % path)
    return ckpt, path, note


def check_device(ckpt, path, here):
    """A run whose data pipeline draws from its own generator on the device (the device pipeline)
    continues only on that kind of device: refused otherwise, naming the --device to use. Other
    pipelines draw from the global streams, which continue anywhere: the note returned says that the
    continuation is then statistical (another device computes other bits); None when nothing changed."""
    states = [r['source'] for r in ckpt['rank_states']] if 'rank_states' in ckpt else [ckpt.get('source', {})]
    generator = generator_device(states[0])
    if generator is not None and generator != here:
        raise UsageError('cannot resume from %s on the %s: the run trained on %s, and its data pipeline draws '
                         'crops, flips and shuffles from a %s random generator, which the %s cannot continue. '
                         'Resume with --device %s%s, or start a new run'
                         % (path, here.upper(), generator.upper(), generator.upper(), here.upper(), generator,
                            ' on a machine with a GPU' if generator == 'cuda' else ''))
    saved = ckpt.get('device_type', generator)
    if saved is not None and saved != here:
        return ('the run trained on %s and resumes on %s: it continues the same random streams, but the two '
                'compute other bits, so it is not the bit-for-bit continuation' % (saved.upper(), here.upper()))
    return None
