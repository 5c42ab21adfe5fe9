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
import tempfile

import numpy as np
import torch

from cli import UsageError

FORMAT = 2  # 1: before the redesign (Clothing1M/WebVision carried the next epoch's division)


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
    """Every global random stream a run draws from, in a form torch.load(weights_only=True) reads."""
    np_state = np.random.get_state(legacy=False)
    return {
        'python': random.getstate(),
        'numpy': {'bit_generator': np_state['bit_generator'],
                  'key': torch.from_numpy(np_state['state']['key'].astype(np.int64)),
                  'pos': int(np_state['state']['pos']), 'has_gauss': int(np_state['has_gauss']),
                  'gauss': float(np_state['gauss'])},
        'torch': torch.get_rng_state(),
        'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    random.setstate(_tuplify(state['python']))
    n = state['numpy']
    np.random.set_state({'bit_generator': n['bit_generator'],
                         'state': {'key': n['key'].numpy().astype(np.uint32), 'pos': n['pos']},
                         'has_gauss': n['has_gauss'], 'gauss': n['gauss']})
    torch.set_rng_state(state['torch'])
    if torch.cuda.is_available() and state['cuda']:
        torch.cuda.set_rng_state_all(state['cuda'])


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
