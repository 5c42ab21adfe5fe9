"""tools/prepare_data.py: the ILSVRC12 validation images sorted for WebVision, and the checks of a
Clothing1M or WebVision root, on tiny fakes in the exact formats."""
import os

import numpy as np
import pytest

import prepare_data
from conftest import make_clothing1m, make_webvision
from tiny_data import write_jpeg

# WebVision's info/synsets.txt begins with ImageNet's synsets in this order (line k: class k)
SYNSETS = ['n01440764 tench, Tinca tinca', 'n01443537 goldfish, Carassius auratus',
           'n01484850 great white shark, white shark', 'n01491361 tiger shark, Galeocerdo cuvieri']
# image number -> class index (of SYNSETS); 10 images, the first three classes only
TRUTH = {1: 2, 2: 0, 3: 1, 4: 0, 5: 1, 6: 0, 7: 2, 8: 1, 9: 0, 10: 3}


def tree(root):
    """Every path under root with its kind and content: what a refused or repeated run must not change."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = ('link', os.readlink(path))
            elif os.path.isfile(path):
                out[rel] = ('file', open(path, 'rb').read())
            else:
                out[rel] = ('dir',)
    return out


@pytest.fixture
def ilsvrc(tmp_path):
    """(val images folder, LOC_val_solution.csv, devkit folder, WebVision root with info/synsets.txt)."""
    rng = np.random.RandomState(0)
    val = tmp_path / 'ILSVRC2012_img_val'
    for n, k in TRUTH.items():
        write_jpeg(str(val / ('ILSVRC2012_val_%08d.JPEG' % n)), k, rng)
    (val / 'README.txt').write_text('not an image of the set\n')
    wnid = [s.split()[0] for s in SYNSETS]
    solution = tmp_path / 'LOC_val_solution.csv'
    solution.write_text('ImageId,PredictionString\n' + ''.join(
        'ILSVRC2012_val_%08d,%s 12 30 200 180 %s 5 5 60 60 \n' % (n, wnid[k], wnid[k]) for n, k in TRUTH.items()))
    # the devkit: ILSVRC2012_IDs (1-based, not WebVision's order) per image, and meta.mat mapping them to WNIDs
    import scipy.io
    ids = {wnid[k]: 100 + 7 * k for k in range(len(wnid))}
    devkit = tmp_path / 'ILSVRC2012_devkit_t12'
    (devkit / 'data').mkdir(parents=True)
    (devkit / 'data' / 'ILSVRC2012_validation_ground_truth.txt').write_text(
        ''.join('%d\n' % ids[wnid[TRUTH[n]]] for n in sorted(TRUTH)))
    synsets = np.zeros((len(wnid),), dtype=[('ILSVRC2012_ID', 'O'), ('WNID', 'O'), ('words', 'O')])
    for k, w in enumerate(wnid):
        synsets[k] = (ids[w], w, SYNSETS[k].split(' ', 1)[1])
    scipy.io.savemat(str(devkit / 'data' / 'meta.mat'), {'synsets': synsets})
    web = tmp_path / 'webvision'
    (web / 'info').mkdir(parents=True)
    (web / 'info' / 'synsets.txt').write_text('\n'.join(SYNSETS) + '\n')
    return val, solution, devkit, web


def sort_val(capsys, *argv):
    code = prepare_data.main(['ilsvrc12-val'] + [str(a) for a in argv])
    return code, capsys.readouterr()


def expected_folders(num_class):
    return {str(k): sorted('ILSVRC2012_val_%08d.JPEG' % n for n, c in TRUTH.items() if c == k)
            for k in range(num_class)}


def folders(web):
    out = os.path.join(str(web), 'imagenet', 'val')
    return {k: sorted(os.listdir(os.path.join(out, k))) for k in sorted(os.listdir(out))}


@pytest.mark.parametrize('truth', ['solution', 'devkit'])
def test_ilsvrc12_val_sorts_the_first_classes_by_webvision_index_and_is_idempotent(ilsvrc, capsys, truth):
    val, solution, devkit, web = ilsvrc
    flag = ['--solution', solution] if truth == 'solution' else ['--devkit', devkit]
    code, out = sort_val(capsys, '--val_images', val, *flag, '--webvision_root', web, '--num_class', 3)
    assert code == 0, out.err
    assert folders(web) == expected_folders(3)  # class 3's image (number 10) is not among the first 3
    link = os.path.join(str(web), 'imagenet', 'val', '2', 'ILSVRC2012_val_00000001.JPEG')
    assert os.path.islink(link) and os.path.samefile(link, str(val / 'ILSVRC2012_val_00000001.JPEG'))
    assert '| 10 validation images found, 9 of the first 3 WebVision classes; 9 links made' in out.out
    assert '| images per class: 0: 4, 1: 3, 2: 2' in out.out
    assert 'note: 10 validation images, where ILSVRC2012 has 50,000' in out.out
    assert 'class 0 (n01440764) 4, class 1 (n01443537) 3, class 2 (n01484850) 2' in out.out
    before = tree(str(web))
    code, out = sort_val(capsys, '--val_images', val, *flag, '--webvision_root', web, '--num_class', 3)
    assert code == 0 and '0 links made' in out.out and '9 there already' in out.out
    assert tree(str(web)) == before


def test_ilsvrc12_val_copies_with_copy_and_the_loader_reads_them(ilsvrc, capsys):
    val, solution, _, web = ilsvrc
    code, out = sort_val(capsys, '--val_images', val, '--solution', solution, '--webvision_root', web,
                         '--num_class', 2, '--copy')
    assert code == 0, out.err
    assert folders(web) == expected_folders(2) and '7 copies made' in out.out
    copy = os.path.join(str(web), 'imagenet', 'val', '0', 'ILSVRC2012_val_00000002.JPEG')
    assert not os.path.islink(copy)
    assert open(copy, 'rb').read() == (val / 'ILSVRC2012_val_00000002.JPEG').read_bytes()
    import dataloader_webvision as wv
    ds = wv.imagenet_dataset(str(web), None, 2)
    assert sorted(c for c, _ in ds.val_data) == [0] * 4 + [1] * 3


def refused(capsys, web, argv, message):
    before = tree(str(web))
    code, out = sort_val(capsys, *argv)
    assert code == 2, out
    assert message in out.err, out.err
    assert tree(str(web)) == before  # nothing made before the refusal
    return out.err


def test_ilsvrc12_val_refuses_missing_or_inconsistent_inputs_before_making_anything(ilsvrc, capsys, tmp_path):
    val, solution, devkit, web = ilsvrc
    base = ['--val_images', val, '--webvision_root', web]
    refused(capsys, web, base + ['--solution', tmp_path / 'nope.csv'], '--solution %s does not exist'
            % (tmp_path / 'nope.csv'))
    refused(capsys, web, ['--val_images', tmp_path, '--solution', solution, '--webvision_root', web],
            'holds no ILSVRC2012_val_NNNNNNNN.JPEG file')
    # ground truth of another set: an image without a line
    lines = solution.read_text().splitlines()
    short = tmp_path / 'short.csv'
    short.write_text('\n'.join(l for l in lines if 'val_00000004' not in l) + '\n')
    refused(capsys, web, base + ['--solution', short], '1 images of %s have no ground truth (e.g. '
            'ILSVRC2012_val_00000004.JPEG)' % val)
    bad = tmp_path / 'bad.csv'
    bad.write_text('id,label\n')
    refused(capsys, web, base + ['--solution', bad], 'does not start with the header "ImageId,PredictionString"')
    damaged = tmp_path / 'damaged.csv'
    damaged.write_text(lines[0] + '\nILSVRC2012_val_00000001\n')
    refused(capsys, web, base + ['--solution', damaged], 'line 2 is')
    # a synset WebVision does not have: the inputs do not belong together
    other = tmp_path / 'other.csv'
    other.write_text(solution.read_text().replace('n01440764', 'n09999999'))
    refused(capsys, web, base + ['--solution', other], "synsets of the ground truth are not in WebVision's "
            "info/synsets.txt (e.g. n09999999)")
    refused(capsys, web, base + ['--solution', solution, '--num_class', 5],
            '--num_class 5, but info/synsets.txt lists 4 classes')
    refused(capsys, web, base + ['--devkit', tmp_path], 'missing %s' % os.path.join(
        str(tmp_path), 'data', 'ILSVRC2012_validation_ground_truth.txt'))
    (devkit / 'data' / 'meta.mat').write_bytes(b'not a mat file')
    refused(capsys, web, base + ['--devkit', devkit], "it is not the devkit's meta.mat")
    os.remove(str(web / 'info' / 'synsets.txt'))
    refused(capsys, web, base + ['--solution', solution], 'missing %s' % os.path.join(str(web), 'info',
                                                                                       'synsets.txt'))


def test_ilsvrc12_val_refuses_a_file_in_the_way(ilsvrc, capsys):
    val, solution, _, web = ilsvrc
    in_the_way = web / 'imagenet' / 'val' / '0' / 'ILSVRC2012_val_00000002.JPEG'
    in_the_way.parent.mkdir(parents=True)
    in_the_way.write_bytes(b'another image')
    refused(capsys, web, ['--val_images', val, '--solution', solution, '--webvision_root', web, '--num_class', 3],
            '1 files in %s are in the way' % os.path.join(str(web), 'imagenet', 'val'))


# ---------------------------------------------------------------- check

def check(capsys, *argv):
    code = prepare_data.main(['check'] + [str(a) for a in argv])
    return code, capsys.readouterr()


def test_check_clothing1m_passes_a_good_root_with_size_warnings(tmp_path, capsys):
    root = tmp_path / 'Clothing1M'
    make_clothing1m(str(root))
    code, out = check(capsys, 'clothing1m', root)
    assert code == 0, out.err
    assert '| noisy_train_key_list.txt: 42 images listed, 42 present (published: 1000000)' in out.out
    assert 'warning: clean_val_key_list.txt lists 6 images, the published set 14313: a subset?' in out.out
    assert 'sampled images decoded' in out.out and '%s: ready (3 warning(s))' % root in out.out


def test_check_clothing1m_names_every_problem(tmp_path, capsys):
    root = tmp_path / 'Clothing1M'
    keys = make_clothing1m(str(root))
    os.remove(str(root / keys[0][len('images/'):]))  # a listed image missing
    with open(str(root / 'noisy_label_kv.txt'), 'a') as f:
        f.write('images/0/00/x.jpg 14\nimages/0/00/y.jpg\n')  # label out of range; malformed line
    os.remove(str(root / 'clean_test_key_list.txt'))
    victim = root / 'val' / '0.jpg'
    victim.write_bytes(b'\xff\xd8 broken')  # cannot be decoded
    code, out = check(capsys, 'clothing1m', root, '--sample', 1000)
    assert code == 2
    err = out.err
    assert '1 of the 42 images listed in %s are missing: %s' % (root / 'noisy_train_key_list.txt',
                                                               root / keys[0][len('images/'):]) in err
    assert 'noisy_label_kv.txt has 1 labels outside 0..13: line 43 label 14' in err
    assert "noisy_label_kv.txt has 1 malformed lines: line 44 'images/0/00/y.jpg'" in err
    assert 'missing %s' % (root / 'clean_test_key_list.txt') in err
    assert 'sampled images do not decode: %s (' % victim in err
    assert '5 problem(s) in %s: fix them before a run' % root in err


def test_check_webvision_passes_a_good_root_and_names_every_problem(tmp_path, capsys):
    root = tmp_path / 'webvision'
    train, val = make_webvision(str(root), num_class=3, per_class=2, n_val=1, n_imagenet=2)
    (root / 'info' / 'synsets.txt').write_text('\n'.join(SYNSETS) + '\n')
    code, out = check(capsys, 'webvision', root, '--num_class', 3)
    assert code == 0, out.err
    assert '| train_filelist_google.txt: 8 images listed, 6 of classes 0..2, 6 of them present' in out.out
    assert '| imagenet/val: 6 images in 3 class folders' in out.out
    assert 'warning: ILSVRC12 has 50 validation images per class; 3 classes differ (e.g. class 0: 2)' in out.out
    assert "warning: WebVision's validation set has 50 images per class; in val_filelist.txt 3 of classes 0..2 " \
           "differ (e.g. class 0: 1)" in out.out
    os.remove(str(root / train[0].split()[0]))
    with open(str(root / 'info' / 'val_filelist.txt'), 'a') as f:
        f.write('val_x.jpg 1000\n')
    for name in os.listdir(str(root / 'imagenet' / 'val' / '2')):
        os.remove(str(root / 'imagenet' / 'val' / '2' / name))
    code, out = check(capsys, 'webvision', root, '--num_class', 3)
    assert code == 2
    assert '1 of the 6 images listed in %s are missing: %s' % (root / 'info' / 'train_filelist_google.txt',
                                                              root / train[0].split()[0]) in out.err
    assert "val_filelist.txt has 1 labels outside 0..999: line 5 label 1000" in out.err
    assert '1 of the 3 ILSVRC12 validation folders %s are missing or empty (classes 2): build them with ' \
           'tools/prepare_data.py ilsvrc12-val' % (root / 'imagenet' / 'val') in out.err
    code, out = check(capsys, 'webvision', tmp_path / 'nowhere')
    assert code == 2 and '%s is not a folder' % (tmp_path / 'nowhere') in out.err
