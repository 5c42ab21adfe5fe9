"""SIGTERM and SIGINT during a run: an orderly stop (StopOnSignal).

Schedulers send SIGTERM before they pre-empt a job, users press Ctrl-C. Either raises
cli.Interrupted where the run is (no half epoch is saved: the epoch is redone on resume, so the
resumed run stays exactly the uninterrupted one), except while a checkpoint is being written: then
the signal waits for the file to be complete, so that the exit message names the epoch the file on
disk holds. cli.run_main turns Interrupted into the message and exit status 128 + the signal.
"""
import contextlib
import signal
import threading

from .cli import Interrupted


class StopOnSignal(object):
    """Context manager: SIGTERM/SIGINT raise Interrupted, deferred while saving() is active."""

    def __init__(self):
        self._handlers, self._saving, self._pending = {}, False, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._handlers[signum] = signal.signal(signum, self._interrupt)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}
        return False

    def _interrupt(self, signum, frame):
        if self._saving:  # let the checkpoint and the exit message agree; raised when the save is done
            self._pending = signum
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def saving(self):
        """A checkpoint is being written: a signal now waits until the block is done (and is raised then,
        unless the block itself failed)."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False
        if self._pending is not None:
            raise Interrupted(self._pending)
