"""What a run needs to stop and continue exactly: atomic checkpoint files, every random
stream's state, and digests that tell whether a resumed run sees the same labels.

A checkpoint is a dict of tensors and plain data (torch.load(weights_only=True) reads it):
    format 2, script, epoch, settings, label_digest, rng, source, log_offsets,
    net1, optimizer1, net2, optimizer2, history, and the script's own state
    (CIFAR: accs; Clothing1M: best_acc; WebVision: results).
"""
import hashlib
import os
import random
import shutil
import tempfile
import zipfile

import numpy as np
import torch

from . import distributed
from .cli import SaveError, UsageError

FORMAT = 2  # 1: before the redesign (Clothing1M/WebVision carried the next epoch's division)
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_save(obj, path):
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`:
    a kill at any moment leaves either the old or the new file, never half of one. A failed
    write (disk full, I/O error) removes the temporary file and raises SaveError saying how
    much room a save needs. Under torchrun only rank 0 writes."""
    if not distributed.is_main():
        return
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp's 0600 would hide the file from the user's group
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        _remove(tmp)
        if isinstance(e, RuntimeError) and not any(m in str(e) for m in ('inline_container', 'PytorchStreamWriter')):
            raise  # not a failure of torch's file writer (a full disk shows as 'unexpected pos ...' there)
        need = payload_bytes(obj)
        free = shutil.disk_usage(folder).free
        raise SaveError('cannot write %s (%s): a save needs about %s free in %s (%s free now; the previous file '
                        'stays until the new one is complete, so a checkpoint needs room for two)'
                        % (path, _first_line(e), _size(need), folder, _size(free))) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path):
    if os.path.exists(path):
        os.remove(path)


def remove_stale_temporaries(paths):
    """Remove what saves of these files killed mid-write left behind ('.<name>.XXXXXXXX.tmp').
    Only call it while holding the run's lock: then no save of these files is under way."""
    removed = []
    for path in paths:
        folder, name = os.path.split(os.path.abspath(path))
        if not os.path.isdir(folder):
            continue
        for entry in os.listdir(folder):
            if entry.startswith('.' + name + '.') and entry.endswith('.tmp') and len(entry) == len(name) + 14:
                os.remove(os.path.join(folder, entry))
                removed.append(entry)
    return removed


def payload_bytes(obj):
    """Bytes of tensor data in a (nested) checkpoint: what a save writes, give or take the metadata."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj)
    return 0


def _size(n):
    return '%.1f GB' % (n / 1e9) if n >= 1e9 else '%.1f MB' % (n / 1e6)


def _first_line(e):
    lines = [l for l in str(e).splitlines() if l.strip()]
    return (lines[0][:200] if lines else type(e).__name__)


RUN_KEYS = ('format', 'script', 'epoch', 'settings', 'net1', 'net2', 'optimizer1', 'optimizer2', 'rng', 'log_offsets')


def load_checkpoint(path):
    """Read and verify a run checkpoint. The file is a zip archive in which every record carries its
    CRC-32; all are checked before anything is unpickled, so a damaged file (flipped or overwritten
    bytes, a truncated or empty file) is refused instead of resumed with wrong numbers. Then
    torch.load(weights_only=True): tensors and plain data only. Refuses files that are not run
    checkpoints (e.g. the <run>_net1.pth.tar weights)."""
    if not os.path.isfile(path):
        raise UsageError('no checkpoint at %s: check --resume, or start the run without it' % path)
    damaged = ('%s is damaged (%%s): it cannot be resumed. Restore it from a copy, or start a new run with '
               '--overwrite' % path)
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise UsageError(damaged % ('%s bytes, not a checkpoint archive: %s' % (os.path.getsize(path),
                                                                                  _first_line(e)))) from None
    if bad is not None:
        raise UsageError(damaged % ('its record %s fails its CRC-32 check' % bad))
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise UsageError('cannot read checkpoint %s (%s): it is damaged or not a checkpoint of these scripts'
                         % (path, _first_line(e))) from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in RUN_KEYS if k != 'format'):
        what = ('network weights (a state dict), like the <run>_net1.pth.tar files'
                if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values())
                else 'no run checkpoint (it lacks %s)' % ', '.join(
                    k for k in RUN_KEYS if k != 'format' and not (isinstance(ckpt, dict) and k in ckpt)))
        raise UsageError('%s is not a run checkpoint: it holds %s. Resume from <run>_checkpoint.pth.tar'
                         % (path, what))
    return ckpt


# ----------------------------------------------------------------------------------
# Seeds and random state
# ----------------------------------------------------------------------------------

def seed_everything(seed):
    """Python, numpy (the MixUp Beta draw: the reference left it unseeded) and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def rng_state():
    """Every global random stream a run draws from, in a form torch.load(weights_only=True) reads.
    CUDA: the generator of the one device this process runs on, and only once CUDA is in use here
    (asking every visible device would open a context on each, and a resume with fewer visible
    devices could not restore them all)."""
    np_state = np.random.get_state(legacy=False)
    return {
        'python': random.getstate(),
        'numpy': {'bit_generator': np_state['bit_generator'],
                  'key': torch.from_numpy(np_state['state']['key'].astype(np.int64)),
                  'pos': int(np_state['state']['pos']), 'has_gauss': int(np_state['has_gauss']),
                  'gauss': float(np_state['gauss'])},
        'torch': torch.get_rng_state(),
        'cuda': [torch.cuda.get_rng_state()] if torch.cuda.is_initialized() else [],
    }


def cuda_state_to_restore(saved, device_index):
    """Which saved CUDA generator state the process on device `device_index` continues: the one state
    (format 2.1 and later save only the device the run used), or from a list of every visible
    device's states (earlier checkpoints) the entry of that index when there is one, else the first
    (the run used one device; its index may differ under another CUDA_VISIBLE_DEVICES). None: nothing
    to restore."""
    if not len(saved):
        return None
    if len(saved) == 1:
        return saved[0]
    return saved[device_index] if device_index < len(saved) else saved[0]


def set_rng_state(state):
    random.setstate(_tuplify(state['python']))
    n = state['numpy']
    np.random.set_state({'bit_generator': n['bit_generator'],
                         'state': {'key': n['key'].numpy().astype(np.uint32), 'pos': n['pos']},
                         'has_gauss': n['has_gauss'], 'gauss': n['gauss']})
    torch.set_rng_state(state['torch'])
    if torch.cuda.is_initialized():  # a CPU run (or one resumed on the CPU) has no CUDA stream to continue
        cuda = cuda_state_to_restore(state['cuda'], torch.cuda.current_device())
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)


def _tuplify(x):
    """random.setstate wants tuples; a checkpoint round trip may hand back lists."""
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


class forked_rng(object):
    """Context: whatever is drawn inside leaves every random stream (Python, numpy, torch,
    CUDA, and the given source's) as it was before, e.g. for monitoring-only passes."""

    def __init__(self, source=None):
        self.source = source

    def __enter__(self):
        self.state = rng_state()
        self.source_state = self.source.state_dict() if self.source is not None else None
        return self

    def __exit__(self, *exc):
        set_rng_state(self.state)
        if self.source is not None:
            self.source.load_state_dict(self.source_state)
        return False


# ----------------------------------------------------------------------------------
# Digests
# ----------------------------------------------------------------------------------

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
