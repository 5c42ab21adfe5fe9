"""Label noise: exactness against the reference procedure, rates, maps, caching, new modes."""
import json
import os
import random
import time

import numpy as np
import pytest

import dataloader_cifar as dl
from conftest import CIFARN_DIR, fine_to_coarse, make_cifar100

REFERENCE_TRANSITION = {0: 0, 2: 0, 4: 7, 7: 7, 1: 1, 9: 1, 3: 5, 5: 3, 6: 6, 8: 8}


def reference_noise(train_label, r, noise_mode, num_class, seed):
    """An independent re-derivation of the reference's procedure (SPEC section 2), written
    the slow way it was written: global `random` seeded once, list membership test."""
    random.seed(seed)
    n = len(train_label)
    idx = list(range(n))
    random.shuffle(idx)
    num_noise = int(r * n)
    noise_idx = idx[:num_noise]
    noise_label = []
    for i in range(n):
        if i in noise_idx:
            if noise_mode == 'sym':
                noise_label.append(random.randint(0, num_class - 1))
            elif noise_mode == 'asym':
                noise_label.append(REFERENCE_TRANSITION[train_label[i]])
        else:
            noise_label.append(train_label[i])
    return noise_label


@pytest.mark.parametrize('n', [1, 7, 500, 3001])
@pytest.mark.parametrize('r', [0.0, 0.2, 0.5, 0.9, 1.0])
@pytest.mark.parametrize('seed', [123, 7])
def test_sym_noise_equals_reference(n, r, seed):
    labels = np.random.RandomState(n).randint(0, 10, n).tolist()
    ours = dl.inject_noise(labels, r, 'sym', 10, rng=random.Random(seed))
    assert ours == reference_noise(labels, r, 'sym', 10, seed)


@pytest.mark.parametrize('r', [0.2, 0.4, 0.8])
def test_asym_noise_equals_reference(r):
    labels = np.random.RandomState(1).randint(0, 10, 2000).tolist()
    ours = dl.inject_noise(labels, r, 'asym', 10, rng=random.Random(123), dataset='cifar10')
    assert ours == reference_noise(labels, r, 'asym', 10, 123)


def test_global_random_module_gives_the_same_labels():
    """Copied code that seeds the global `random` (as the reference script did) gets the same noise."""
    labels = np.random.RandomState(2).randint(0, 100, 1000).tolist()
    random.seed(5)
    via_module = dl.inject_noise(labels, 0.5, 'sym', 100)
    assert via_module == dl.inject_noise(labels, 0.5, 'sym', 100, rng=random.Random(5))


def test_sym_rate_counts():
    n, r, C = 50000, 0.5, 10
    labels = np.random.RandomState(3).randint(0, C, n)
    noisy = np.array(dl.inject_noise(labels.tolist(), r, 'sym', C, rng=random.Random(123)))
    changed = np.mean(noisy != labels)
    # int(r*N) samples are re-drawn uniformly, so the real flip rate is r * (1 - 1/C) (kept quirk)
    assert abs(changed - r * (1 - 1 / C)) < 0.006
    assert changed < r


def test_asym_map_and_rate():
    n, r = 20000, 0.4
    labels = np.random.RandomState(4).randint(0, 10, n)
    noisy = np.array(dl.inject_noise(labels.tolist(), r, 'asym', 10, rng=random.Random(1), dataset='cifar10'))
    flipped = noisy != labels
    expected_map = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    for true, new in zip(labels[flipped], noisy[flipped]):
        assert expected_map[true] == new
    for c in (0, 1, 6, 7, 8):  # classes the map leaves alone never change
        assert not flipped[labels == c].any()
    # exactly int(r*N) samples were selected; those of the mapped classes flipped
    mapped = np.isin(labels, list(expected_map))
    assert abs(flipped.sum() / mapped.sum() - r) < 0.02


def test_noise_file_written_as_reference_and_reused(cifar10_dir):
    noise_file = dl.default_noise_file(cifar10_dir, 0.5, 'sym')
    assert os.path.basename(noise_file) == '0.5_sym.json'
    data = dl.load_noisy_data('cifar10', 0.5, 'sym', cifar10_dir, noise_file, seed=123)
    assert data.created_noise
    with open(noise_file) as f:
        saved = json.load(f)
    assert isinstance(saved, list) and saved == data.noise_label.tolist()
    assert saved == reference_noise(data.train_label.tolist(), 0.5, 'sym', 10, 123)
    # an existing file is used as is, whatever the seed
    planted = [(l + 1) % 10 for l in data.train_label.tolist()]
    with open(noise_file, 'w') as f:
        json.dump(planted, f)
    again = dl.load_noisy_data('cifar10', 0.5, 'sym', cifar10_dir, noise_file, seed=999)
    assert not again.created_noise
    assert again.noise_label.tolist() == planted


@pytest.mark.parametrize('content, message', [
    ('[1, 2', 'not valid JSON'),
    ('{"a": 1}', 'JSON list of integer labels'),
    (json.dumps([0] * 17), 'has 17 labels but the training set has 200'),
    (json.dumps([0] * 199 + [10]), 'outside [0, 10)'),
])
def test_bad_noise_file_is_rejected(cifar10_dir, content, message):
    noise_file = os.path.join(cifar10_dir, 'bad.json')
    with open(noise_file, 'w') as f:
        f.write(content)
    with pytest.raises(dl.DatasetError, match=message.replace('[', r'\[').replace('(', r'\(').replace(')', r'\)')):
        dl.load_noisy_data('cifar10', 0.5, 'sym', cifar10_dir, noise_file)


# ---------------------------------------------------------------- CIFAR-100 asymmetric

def test_cifar100_asym_stays_in_superclass_and_counts(tmp_path):
    root = str(tmp_path / 'c100')
    _, fine, _ = make_cifar100(root, n_train=2000)
    data = dl.load_noisy_data('cifar100', 0.4, 'asym', root, seed=123)
    coarse = fine_to_coarse()
    flipped = data.noise_label != data.train_label
    assert flipped.sum() == int(0.4 * 2000)  # every selected sample changes class
    assert (coarse[data.noise_label] == coarse[data.train_label]).all()
    # the selected samples are exactly the reference's choice of noisy indices
    expected = set(dl.noisy_indices(2000, 0.4, random.Random(123)))
    assert set(np.nonzero(flipped)[0].tolist()) == expected
    # the map is a cycle through the 5 fine classes of each superclass, in index order
    mapping = dl.superclass_next_map(np.arange(100), coarse)
    for c in range(20):
        members = sorted(np.nonzero(coarse == c)[0].tolist())
        assert [mapping[m] for m in members] == members[1:] + members[:1]


def test_cifar100_variants():
    labels = np.arange(100).repeat(20)
    blocks = np.array(dl.inject_noise(labels.tolist(), 1.0, 'asym_blocks', 100, rng=random.Random(0)))
    assert ((blocks // 5) == (labels // 5)).all() and (blocks != labels).all()
    assert blocks[labels == 4][0] == 0 and blocks[labels == 7][0] == 8
    pair = np.array(dl.inject_noise(labels.tolist(), 1.0, 'pairflip', 100, rng=random.Random(0)))
    assert (pair == (labels + 1) % 100).all()


# ---------------------------------------------------------------- instance-dependent

def test_instance_noise_rate_determinism_and_no_self_flip():
    n, C, r = 50000, 10, 0.4
    rng = np.random.RandomState(0)
    labels = rng.randint(0, C, n)
    images = rng.randint(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    info = dl.DATASETS['cifar10']
    t0 = time.time()
    noisy = np.array(dl.instance_noise(images, labels, r, C, 123, info['mean'], info['std']))
    elapsed = time.time() - t0
    assert elapsed < 60, 'instance noise on 50,000 images took %.1f s' % elapsed
    assert abs(np.mean(noisy != labels) - r) < 0.02
    # determinism on a subset (the full set once is enough for the time and the rate)
    few = [np.array(dl.instance_noise(images[:5000], labels[:5000], r, C, seed, info['mean'], info['std']))
           for seed in (123, 123, 124)]
    assert (few[0] == few[1]).all() and (few[0] != few[2]).any()

    P = dl.instance_flip_probs(images[:2000], labels[:2000], r, C, np.random.default_rng(5), info['mean'], info['std'])
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-9)
    q = 1 - P[np.arange(2000), labels[:2000]]
    assert ((q >= 0) & (q <= 1)).all() and abs(q.mean() - r) < 0.02
    off = P.copy()
    off[np.arange(2000), labels[:2000]] = 0
    # all flip mass goes to other classes: it sums to q_i, none of it back to the true class
    np.testing.assert_allclose(off.sum(1), q, atol=1e-9)


def test_instance_noise_file_name_has_seed(cifar10_dir):
    f = dl.default_noise_file(cifar10_dir, 0.2, 'instance', seed=7)
    assert os.path.basename(f) == '0.2_instance_seed7.json'
    data = dl.load_noisy_data('cifar10', 0.2, 'instance', cifar10_dir, f, seed=7)
    assert os.path.exists(f) and data.created_noise


# ---------------------------------------------------------------- CIFAR-N

def cifarn_file(name):
    path = os.path.join(CIFARN_DIR, name)
    if not os.path.exists(path):
        pytest.skip('CIFAR-N files not found at %s (the shared data folder is absent)' % CIFARN_DIR)
    return path


def load_cifarn_raw(path):
    import torch
    with torch.serialization.safe_globals(dl._numpy_safe_globals()):
        return torch.load(path, weights_only=True)


def write_label_only_cifar(root, dataset, labels):
    """A real-format CIFAR folder whose training labels are `labels` (blank images: only the
    labels matter for these tests, and 50,000 blank images are quick to write)."""
    import pickle
    os.makedirs(root, exist_ok=True)
    labels = np.asarray(labels)
    blank = lambda n: np.zeros((n, 3072), dtype=np.uint8)
    if dataset == 'cifar10':
        per = len(labels) // 5
        for b in range(5):
            with open(os.path.join(root, 'data_batch_%d' % (b + 1)), 'wb') as f:
                pickle.dump({'data': blank(per), 'labels': labels[b * per:(b + 1) * per].tolist()}, f)
        with open(os.path.join(root, 'test_batch'), 'wb') as f:
            pickle.dump({'data': blank(10), 'labels': [0] * 10}, f)
    else:
        with open(os.path.join(root, 'train'), 'wb') as f:
            pickle.dump({'data': blank(len(labels)), 'fine_labels': labels.tolist(),
                         'coarse_labels': fine_to_coarse()[labels].tolist()}, f)
        with open(os.path.join(root, 'test'), 'wb') as f:
            pickle.dump({'data': blank(10), 'fine_labels': [0] * 10, 'coarse_labels': [0] * 10}, f)


@pytest.fixture(scope='module')
def cifar10n_root(tmp_path_factory):
    path = cifarn_file('CIFAR-10_human.pt')
    root = str(tmp_path_factory.mktemp('c10n'))
    write_label_only_cifar(root, 'cifar10', load_cifarn_raw(path)['clean_label'])
    return root


@pytest.mark.parametrize('mode, key, rate', [('aggre', 'aggre_label', 9.01), ('worst', 'worse_label', 40.21),
                                             ('rand1', 'random_label1', 17.23), ('rand2', 'random_label2', 18.12),
                                             ('rand3', 'random_label3', 17.64)])
def test_cifar10n_labels_and_rates(cifar10n_root, mode, key, rate):
    path = cifarn_file('CIFAR-10_human.pt')
    data = dl.load_noisy_data('cifar10', 0.0, mode, cifar10n_root, '', cifarn_file=path)
    assert data.noise_label.tolist() == np.asarray(load_cifarn_raw(path)[key]).tolist()
    assert round(100 * data.noise_rate, 2) == rate


def test_cifar100n_labels_and_rate(tmp_path):
    path = cifarn_file('CIFAR-100_human.pt')
    raw = load_cifarn_raw(path)
    root = str(tmp_path / 'c100')
    write_label_only_cifar(root, 'cifar100', raw['clean_label'])
    data = dl.load_noisy_data('cifar100', 0.0, 'noisy100', root, '', cifarn_file=path)
    assert data.noise_label.tolist() == np.asarray(raw['noisy_label']).tolist()
    assert round(100 * data.noise_rate, 2) == 40.20


def test_cifarn_mode_needs_its_dataset(cifar10n_root):
    with pytest.raises(dl.DatasetError, match='CIFAR-100 label set|cifar100 label set'):
        dl.load_noisy_data('cifar10', 0.0, 'noisy100', cifar10n_root, '', cifarn_file=cifarn_file('CIFAR-100_human.pt'))


def test_cifarn_subset_takes_matching_rows(cifar10n_root):
    path = cifarn_file('CIFAR-10_human.pt')
    data = dl.load_noisy_data('cifar10', 0.0, 'worst', cifar10n_root, '', cifarn_file=path, train_subset=1000)
    raw = load_cifarn_raw(path)
    keep = np.sort(np.random.RandomState(0).permutation(50000)[:1000])
    assert data.noise_label.tolist() == np.asarray(raw['worse_label'])[keep].tolist()


def test_cifarn_mismatches_are_explained():
    path = cifarn_file('CIFAR-10_human.pt')
    clean = np.asarray(load_cifarn_raw(path)['clean_label'])
    with pytest.raises(dl.DatasetError, match='holds 50000 labels but the training set has 49999'):
        dl.load_cifarn(path, 'aggre', clean[:-1])
    with pytest.raises(dl.DatasetError, match='same labels in another order'):
        dl.load_cifarn(path, 'aggre', clean[::-1])
    with pytest.raises(dl.DatasetError, match='another dataset'):
        dl.load_cifarn(path, 'aggre', np.random.RandomState(0).randint(0, 100, 50000))
    shifted = clean.copy()
    shifted[:1000] = (shifted[:1000] + 1) % 10
    with pytest.raises(dl.DatasetError, match=r'2\.0% of its clean labels differ'):
        dl.load_cifarn(path, 'aggre', shifted)
    with pytest.raises(dl.DatasetError, match='not found'):
        dl.load_cifarn('/nonexistent/CIFAR-10_human.pt', 'aggre', clean)


def test_cifarn_file_that_would_run_code_is_refused(tmp_path):
    """weights_only loading: a pickle carrying an arbitrary callable is refused, not executed."""
    import pickle

    class Evil(object):
        def __reduce__(self):
            return (os.system, ('touch %s' % (tmp_path / 'pwned'),))

    path = str(tmp_path / 'CIFAR-10_human.pt')
    with open(path, 'wb') as f:
        pickle.dump({'clean_label': Evil()}, f)
    with pytest.raises(dl.DatasetError, match='cannot read CIFAR-N file'):
        dl.load_cifarn(path, 'aggre', np.zeros(10, dtype=np.int64))
    assert not (tmp_path / 'pwned').exists()


def test_cifarn_through_train_cifar(cifar10n_root, tmp_path, capsys):
    """--noise_mode worst end to end: realised rate printed and recorded, the nearest paper setting chosen."""
    import Train_cifar
    from dividemix_run import cli
    ck = str(tmp_path / 'ck')
    cli.run_main(Train_cifar.main, [
        '--data_path', cifar10n_root, '--noise_mode', 'worst', '--cifarn_file', cifarn_file('CIFAR-10_human.pt'),
        '--train_subset', '300', '--test_subset', '10', '--num_epochs', '0', '--width', '4', '--batch_size', '16',
        '--noise_file', str(tmp_path / 'worst.json'), '--checkpoint_dir', ck])
    out = capsys.readouterr().out
    assert 'noise: worst, human labels ->' in out
    assert '--lambda_u 0: nearest paper setting by noise rate: cifar10 asym 40%' in out
    settings = json.load(open(os.path.join(ck, 'cifar10_0.5_worst_settings.json')))
    assert settings['conf_penalty'] == 'on' and 0.3 < settings['noise_rate'] < 0.5
