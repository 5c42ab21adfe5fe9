"""What a run writes as it goes: the reference's text logs byte for byte, JSON lines (and,
with --tensorboard, the same numbers as TensorBoard scalars), and a progress bar per pass."""
import contextlib
import errno
import io
import json
import math
import os
import sys
import time


def strict(value):
    """value with every NaN or infinite float as None, recursively: JSON (RFC 8259) has no NaN or Infinity,
    and strict parsers (JavaScript's JSON.parse, most languages' libraries) refuse a file that has them.
    An undefined number (an AUC with no noisy sample, the accuracy of a run without a test split) is
    written as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def dumps(value, **kwargs):
    """Strict JSON text of value (see strict)."""
    return json.dumps(strict(value), allow_nan=False, **kwargs)


def dump(value, f, **kwargs):
    f.write(dumps(value, **kwargs))


def number(value):
    """A logged number as a float, NaN where it is undefined: null in the strict JSON written now, NaN in
    the logs of earlier versions."""
    return float('nan') if value is None else float(value)


def check_resumable(path, size):
    """A log a resumed run continues must hold at least what it held when the checkpoint was saved."""
    from .cli import UsageError  # here: results.py and plots.py import this module without torch
    if os.path.exists(path):
        if os.path.getsize(path) < size:
            raise UsageError('cannot resume: %s is shorter than when the checkpoint was saved; '
                             'restore it or start a new run with --overwrite' % path)
    elif size:
        raise UsageError('cannot resume: %s is missing; restore it or start a new run with --overwrite' % path)


class RunLog(object):
    """The run's text logs and JSON lines.

    files: name -> path. A fresh run truncates them; a resumed run first cuts each file
    back to the size the checkpoint recorded (dropping what the interrupted epoch wrote,
    so nothing is duplicated) and then appends. tensorboard: a folder for the scalars of
    every JSON record that has an 'epoch' (and the summary's), or None.
    """

    def __init__(self, files, offsets=None, tensorboard=None, start_epoch=0):
        self.board = None
        self.last_epoch = start_epoch - 1
        self.paths = dict(files)
        if offsets is not None:  # every log checked before anything is written or cut back
            for name, path in self.paths.items():
                check_resumable(path, int(offsets.get(name, 0)))
        if tensorboard is not None:  # before the logs: a writer that fails leaves them as they were
            from torch.utils.tensorboard import SummaryWriter
            # purge_step: a resumed run hides what an interrupted epoch had logged past its checkpoint
            self.board = SummaryWriter(tensorboard, purge_step=start_epoch if offsets is not None else None)
        self.files = {}
        for name, path in self.paths.items():
            if offsets is None:
                self.files[name] = open(path, 'w')
            else:
                if os.path.exists(path):
                    with open(path, 'r+') as f:
                        f.truncate(int(offsets.get(name, 0)))
                self.files[name] = open(path, 'a')

    def write(self, name, line):
        self.files[name].write(line)
        self.files[name].flush()

    def json(self, name, record):
        self.write(name, dumps(record) + '\n')
        if self.board is not None:
            self._scalars(record)

    def _scalars(self, record):
        if 'epoch' in record:
            self.last_epoch = record['epoch']
            prefix, values = '', record
        elif 'summary' in record:
            prefix, values = 'summary/', record['summary']
        else:
            return
        for key, value in _flatten(values, prefix):
            if key not in ('epoch', 'seconds') and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                self.board.add_scalar(key, value, global_step=self.last_epoch)
        self.board.flush()

    def offsets(self):
        for f in self.files.values():
            f.flush()
        return {name: os.path.getsize(path) for name, path in self.paths.items()}

    def close(self):
        for f in self.files.values():
            f.close()
        if self.board is not None:
            self.board.close()


class _QuietStream(object):
    """stdout or stderr that goes quiet instead of raising once its reader is gone (a pipe closed by
    `| head`, a closed descriptor): the run's files are its output, and training goes on."""

    GONE = (errno.EPIPE, errno.EBADF, errno.EINVAL)

    def __init__(self, stream, fd):
        self._stream, self._fd = stream, fd

    def _silence(self):
        devnull = open(os.devnull, 'w')
        try:  # the descriptor too, where the stream is it: the interpreter's last flush of it at exit stays quiet
            if self._stream.fileno() == self._fd:
                os.dup2(devnull.fileno(), self._fd)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass
        self._stream = devnull

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except (ValueError, OSError) as e:  # ValueError: I/O on a closed file
            if isinstance(e, OSError) and e.errno not in self.GONE:
                raise
            self._silence()
            return getattr(self._stream, fn.__name__)(*args)

    def write(self, text):
        return self._guard(self._stream.write, text)

    def flush(self):
        return self._guard(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def quiet_streams():
    """sys.stdout and sys.stderr that cannot fail the program: a closed one (`>&-`, which leaves Python
    None there) writes to os.devnull, an open one goes quiet when its reader goes away. Restored after."""
    saved = sys.stdout, sys.stderr
    for name, fd in (('stdout', 1), ('stderr', 2)):
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, open(os.devnull, 'w'))
        elif not isinstance(stream, _QuietStream):
            setattr(sys, name, _QuietStream(stream, fd))
    try:
        yield
    finally:
        for stream, name in zip(saved, ('stdout', 'stderr')):
            if stream is not None:
                current = getattr(sys, name)
                if isinstance(current, _QuietStream) and current._stream is not stream:  # silenced: stay so
                    continue
                setattr(sys, name, stream)


class NullLog(object):
    """What ranks other than 0 log to under torchrun: nothing (rank 0 writes the run's files)."""

    def write(self, name, line):
        pass

    def json(self, name, record):
        pass

    def offsets(self):
        return {}

    def close(self):
        pass


def _flatten(values, prefix):
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _flatten(value, prefix + key + '/')
        else:
            yield prefix + key, value


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


def progress_bars(prefix, every=10):
    """The algorithm's progress hook: progress(what, total) -> a context manager giving
    on_step, with a bar titled '<prefix> <what>' (e.g. 'cifar10:0.5-sym | Epoch 3 train net1')."""
    from . import distributed
    if not distributed.is_main():  # under torchrun only rank 0 shows progress
        return None

    @contextlib.contextmanager
    def progress(what, total):
        p = Progress(total, '%s %s' % (prefix, what), every)
        try:
            yield p.step
        finally:
            p.close()
    return progress
