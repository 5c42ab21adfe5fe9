"""One run per run name at a time (RunLock).

An exclusive flock on <stem>.lock, held for the run's life: a second run of the same name stops at
once, naming the holder. The kernel drops a flock when its holder dies, however it dies, so a lock
left by a killed run is stale and simply taken over.
"""
import json
import os
import socket
import time

from .cli import UsageError


class RunLock(object):
    """One run per run name at a time: an exclusive flock on <stem>.lock, held for the run's life.
    The kernel drops it when the holder dies, however it dies, so a lock left by a killed run is
    stale and taken over; the file names the holder (pid, host) for the refusal's message.
    (flock is local: on a network file system shared by several hosts, give runs distinct --id.)"""

    def __init__(self, path):
        self.path, self.fd = path, None

    def acquire(self):
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = self._holder(fd)
                os.close(fd)
                raise UsageError('another run with this name is running (%s): %s is locked. Wait for it to end, or '
                                 'give this run another --id or --checkpoint_dir' % (holder, self.path)) from None
            try:  # still the file at self.path? (a run that just ended removes it; then lock the new one)
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                                 'started': time.strftime('%Y-%m-%d %H:%M:%S')}).encode())
        self.fd = fd
        return self

    def check_free(self):
        """What acquire() would refuse, without taking the lock or making its file (--dry_run)."""
        try:
            import fcntl
            fd = os.open(self.path, os.O_RDONLY)
        except (ImportError, OSError):  # no lock file (or no flock): nobody holds it
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            raise UsageError('another run with this name is running (%s): %s is locked. Wait for it to end, or give '
                             'this run another --id or --checkpoint_dir' % (self._holder(fd), self.path)) from None
        finally:
            os.close(fd)

    @staticmethod
    def _holder(fd):
        holder = os.read(fd, 4096).decode(errors='replace').strip()
        try:
            return 'pid %(pid)s on host %(host)s, started %(started)s' % json.loads(holder)
        except (ValueError, KeyError, TypeError):
            return 'holder unknown'

    def release(self):
        if self.fd is not None:
            try:
                os.remove(self.path)  # removed while still held: a waiting run re-opens and locks the new file
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None
