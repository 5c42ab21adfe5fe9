"""--dry_run: everything a run checks before it trains, then its plan; nothing written or changed.

A dry run resolves the settings and makes the checks a real run makes before its first epoch (the
flags, the data and its labels, the output folder, the lock, a resume), decodes a sample of the
images where the data are image files, and prints the plan: every setting with where its value came
from, the data, the network and its parameter count, the epochs and the steps of each, the devices
and processes, and the files the run would write or continue. Exit status 0; bad input gives the
exit status 2 a real run gives. What it cannot know is said: the labeled set (hence the steps of
co-training) depends on each division.

Nothing is written: the output and TensorBoard folders are checked where they would be made (a
probe file in the nearest existing folder, removed at once), the lock is tested, not taken, noise
labels are drawn but not cached, pretrained weights that are not cached are named, not downloaded.
"""
import argparse
import os
import random

from .cli import UsageError


def given_flags(parser, argv):
    """The dests of the flags given on the command line (argv; None: sys.argv[1:])."""
    quiet = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:  # the same flags with no defaults: only what was given lands
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            kwargs = dict(dest=action.dest, default=argparse.SUPPRESS, required=False)
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction)):
                quiet.add_argument(*action.option_strings, action='store_const', const=True, **kwargs)
            else:
                quiet.add_argument(*action.option_strings, nargs=action.nargs, const=action.const, **kwargs)
    known, _ = quiet.parse_known_args(argv)
    return set(vars(known))


def setting_sources(parser, argv, settings, notes=()):
    """{setting: where its value came from}: 'command line', 'default', or for a value the run resolved
    (from the data, the noise setting, the regime) 'resolved' with the note that explains it."""
    given = given_flags(parser, argv)
    defaults = {a.dest: a.default for a in parser._actions if a.option_strings}
    why = {}
    for note in notes:  # '--lambda_u 25: paper setting for cifar10 sym 50%'
        head, sep, text = note.partition(': ')
        if sep and head.startswith('--'):
            why[head[2:].split()[0]] = text
    out = {}
    for name, value in settings.items():
        if name in given:
            out[name] = 'command line'
        elif name in defaults and value == defaults[name]:
            out[name] = 'default'
        else:
            out[name] = 'resolved: ' + why[name] if name in why else 'resolved for this run'
    return out


def decode_sample(paths, n=32, seed=0, what='images'):
    """Decode n images chosen from paths (a fixed choice; the global random streams are not touched):
    a UsageError naming every one that does not decode. Returns how many were decoded."""
    from PIL import Image
    chosen = random.Random(seed).sample(list(paths), min(n, len(paths)))
    bad = []
    for path in chosen:
        try:
            with Image.open(path) as img:
                img.convert('RGB').load()
        except Image.DecompressionBombError as e:
            bad.append('%s (too large to decode safely: %s; --max_image_pixels raises the limit)'
                       % (path, str(e).split(',')[0]))
        except Exception as e:  # any decoder failure is the image's
            bad.append('%s (%s)' % (path, str(e).splitlines()[0][:160] if str(e) else type(e).__name__))
    if bad:
        raise UsageError('%d of %d sampled %s do not decode: %s. Restore or replace them, or remove them from the '
                         'data' % (len(bad), len(chosen), what, '; '.join(bad[:5]) + ('; ...' if len(bad) > 5 else '')))
    return len(chosen)


def epochs(first, last):
    return 'epoch %d' % first if first == last else 'epochs %d..%d' % (first, last)


def steps(n, batch_size):
    return (n + batch_size - 1) // batch_size


def schedule_lines(s, *, warmup=None, divide=None, train=None, test=(), method='dividemix'):
    """The epochs and what each does. warmup, divide: (samples, batch) of one net's warm-up and
    co-divide passes; train: (upper bound of the labeled set, B) of one net's co-training pass;
    test: [(what, samples, batch)]."""
    last = s.num_epochs
    lines = []
    if method == 'ce':
        lines.append('epochs 0..%d (%d): every one cross-entropy on the given labels (--method ce)' % (last, last + 1))
    elif s.warm_up > last:
        lines.append('epochs 0..%d (%d): all warm-up (cross-entropy; --warm_up %d is past --num_epochs)'
                     % (last, last + 1, s.warm_up))
    else:
        lines.append('epochs 0..%d (%d): %sDivideMix (co-divide, then co-train) in %s'
                     % (last, last + 1, 'warm-up (cross-entropy) in %s, ' % epochs(0, s.warm_up - 1)
                        if s.warm_up else 'no warm-up, ', epochs(s.warm_up, last)))
    lines.append('learning rate %g, %g from epoch %d' % (s.lr, s.lr / 10, s.lr_decay_epoch)
                 if s.lr_decay_epoch <= last else 'learning rate %g (its decay at epoch %d is past the last epoch)'
                 % (s.lr, s.lr_decay_epoch))
    per = []
    if warmup is not None:
        per.append('warm-up %d steps per net (%d samples, batches of %d)' % (steps(*warmup), warmup[0], warmup[1]))
    if divide is not None and method != 'ce':
        per.append('co-divide %d eval batches per net (%d samples, batches of %d)'
                   % (steps(*divide), divide[0], divide[1]))
    if train is not None and method != 'ce':
        per.append('co-train up to %d steps per net (the labeled set / %d + 1: its size is known after each '
                   'division)' % (train[0] // train[1] + 1, train[1]))
    for what, n, batch in test:
        per.append('%s %d batches (%d samples, batches of %d)' % (what, steps(n, batch), n, batch))
    lines.append('per epoch: ' + '; '.join(per))
    return lines


def describe_net(net):
    """'<class> (<module>), N parameters'."""
    n = sum(p.numel() for p in net.parameters())
    return '%s (%s), %s parameters, two of them' % (type(net).__name__, type(net).__module__, format(n, ','))


def folder_state(path):
    """'exists' or 'would be created' for an output folder."""
    return 'exists' if os.path.isdir(path) else 'would be created'
