"""Prepare and check the large datasets before a run that lasts days.

    python tools/prepare_data.py ilsvrc12-val --val_images DIR (--solution CSV | --devkit DIR) \\
        --webvision_root ROOT [--num_class 50] [--copy]
    python tools/prepare_data.py check clothing1m ROOT
    python tools/prepare_data.py check webvision ROOT [--num_class 50]

ilsvrc12-val: WebVision is tested on the ILSVRC12 validation images of its classes, which
Train_webvision.py reads from ROOT/imagenet/val/<WebVision class index>/. From the 50,000
ILSVRC2012_val_*.JPEG files, their ground truth (Kaggle's LOC_val_solution.csv, or the devkit's
data/ILSVRC2012_validation_ground_truth.txt with its data/meta.mat, which scipy reads) and
WebVision's info/synsets.txt (line k: the synset of class k), this builds that folder for the first
--num_class classes, as symbolic links to the images (--copy: copies). Running it again changes
nothing; a missing or inconsistent input is refused (exit 2) before anything is made. The counts per
class are printed: the real set has 50 images of each class, and a class with another count is named.

check: every annotation file of a Clothing1M or WebVision root present and well-formed, its line
counts against the published sizes (Clothing1M, Xiao et al. 2015: 1,000,000 noisy training images,
14,313 clean validation and 10,526 clean test images; WebVision: what its info/ files list, and 50
ILSVRC12 images per class), labels in range, missing images counted and the first ones listed, a
sample of images decoded. Exit 0 with a summary (a size other than the published one is a warning:
a subset is legitimate), or 2 naming each problem.
"""
import argparse
import collections
import csv
import os
import re
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dataloader_webvision import missing_files  # noqa: E402 (the same in dataloader_clothing1M.py)
from dividemix_run.cli import UsageError  # noqa: E402
from dividemix_run.plan import decode_sample  # noqa: E402

VAL_NAME = re.compile(r'^ILSVRC2012_val_(\d{8})\.JPEG$')
CLOTHING_SIZES = {'noisy_train_key_list.txt': 1000000, 'clean_val_key_list.txt': 14313,
                  'clean_test_key_list.txt': 10526}
CLOTHING_CLASSES = 14
IMAGENET_PER_CLASS = 50
WEBVISION_VAL_PER_CLASS = 50  # WebVision 1.0's validation set: 50,000 images, 50 of each class


class Problem(Exception):
    """An input that cannot be used: the message names it and what to do. Exit status 2."""


def fail(message):
    print('error: %s' % message, file=sys.stderr)
    return 2


# ----------------------------------------------------------------------------------
# ilsvrc12-val
# ----------------------------------------------------------------------------------

def read_synsets(webvision_root):
    """WebVision's class index -> synset (wnid), from info/synsets.txt (line k: 'n01440764 tench, ...')."""
    path = os.path.join(webvision_root, 'info', 'synsets.txt')
    if not os.path.isfile(path):
        raise Problem('missing %s: WebVision 1.0 ships it in info/ (line k names the synset of class k); check '
                      '--webvision_root' % path)
    synsets = []
    with open(path, encoding='utf-8', errors='replace') as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            wnid = line.split()[0]
            if not re.match(r'^n\d{8}$', wnid):
                raise Problem('%s line %d starts with %r, not a WordNet synset id (n + 8 digits)' % (path, lineno, wnid))
            synsets.append(wnid)
    if len(set(synsets)) != len(synsets):
        raise Problem('%s lists a synset twice: it is damaged' % path)
    return synsets


def truth_from_solution(path):
    """image number -> synset, from LOC_val_solution.csv (ImageId,PredictionString 'n0... x y x y ...')."""
    if not os.path.isfile(path):
        raise Problem('--solution %s does not exist' % path)
    truth = {}
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or [h.strip() for h in header[:2]] != ['ImageId', 'PredictionString']:
            raise Problem('%s does not start with the header "ImageId,PredictionString" of LOC_val_solution.csv'
                          % path)
        for lineno, row in enumerate(reader, start=2):
            if len(row) < 2:
                raise Problem('%s line %d is %r; expected "ILSVRC2012_val_NNNNNNNN,nXXXXXXXX ..."' % (path, lineno, row))
            m = re.match(r'^ILSVRC2012_val_(\d{8})$', row[0].strip())
            wnid = row[1].split()[0] if row[1].split() else ''
            if not m or not re.match(r'^n\d{8}$', wnid):
                raise Problem('%s line %d is %r; expected "ILSVRC2012_val_NNNNNNNN,nXXXXXXXX ..."' % (path, lineno, row))
            truth[int(m.group(1))] = wnid
    return truth


def truth_from_devkit(devkit):
    """image number -> synset, from the devkit's data/ILSVRC2012_validation_ground_truth.txt (ILSVRC2012_IDs,
    one per image in order) and data/meta.mat (synsets: ILSVRC2012_ID -> WNID)."""
    data = os.path.join(devkit, 'data')
    gt, meta = os.path.join(data, 'ILSVRC2012_validation_ground_truth.txt'), os.path.join(data, 'meta.mat')
    for path in (gt, meta):
        if not os.path.isfile(path):
            raise Problem('missing %s: --devkit is the folder ILSVRC2012_devkit_t12 (data/ holds the ground truth and '
                          'meta.mat)' % path)
    try:
        import scipy.io
        synsets = scipy.io.loadmat(meta, squeeze_me=True)['synsets']
        wnid_of = {int(s['ILSVRC2012_ID']): str(s['WNID']) for s in synsets}
    except Exception as e:  # a damaged or foreign .mat
        raise Problem('cannot read the synsets of %s (%s): it is not the devkit\'s meta.mat' % (meta, e)) from None
    truth = {}
    with open(gt) as f:
        for number, line in enumerate(f, start=1):
            try:
                truth[number] = wnid_of[int(line.strip())]
            except (ValueError, KeyError):
                raise Problem('%s line %d is %r: not an ILSVRC2012_ID of %s' % (gt, number, line.strip(), meta)) \
                    from None
    return truth


def plan_ilsvrc12(val_images, truth, synsets, num_class):
    """[(source image, class index)] for the images of the first num_class classes, and the checks."""
    if not os.path.isdir(val_images):
        raise Problem('--val_images %s is not a folder' % val_images)
    images = {int(m.group(1)): name for name in os.listdir(val_images) for m in [VAL_NAME.match(name)] if m}
    if not images:
        raise Problem('%s holds no ILSVRC2012_val_NNNNNNNN.JPEG file: pass the folder of the 50,000 validation images'
                      % val_images)
    no_truth = sorted(set(images) - set(truth))
    if no_truth:
        raise Problem('%d images of %s have no ground truth (e.g. %s): the ground truth is of another set'
                      % (len(no_truth), val_images, images[no_truth[0]]))
    index = {wnid: k for k, wnid in enumerate(synsets)}
    unknown = sorted({truth[n] for n in images} - set(index))
    if unknown:
        raise Problem('%d synsets of the ground truth are not in WebVision\'s info/synsets.txt (e.g. %s): the inputs '
                      'do not belong together' % (len(unknown), unknown[0]))
    if num_class > len(synsets):
        raise Problem('--num_class %d, but info/synsets.txt lists %d classes' % (num_class, len(synsets)))
    return [(os.path.join(val_images, images[n]), index[truth[n]]) for n in sorted(images)
            if index[truth[n]] < num_class], len(images)


def ilsvrc12_val(args):
    synsets = read_synsets(args.webvision_root)
    truth = truth_from_solution(args.solution) if args.solution else truth_from_devkit(args.devkit)
    plan, found = plan_ilsvrc12(args.val_images, truth, synsets, args.num_class)
    out = os.path.join(args.webvision_root, 'imagenet', 'val')
    conflicts = []
    for src, k in plan:  # before anything is made: a file in the way that is not this image
        dst = os.path.join(out, str(k), os.path.basename(src))
        if os.path.lexists(dst) and not (os.path.exists(dst) and os.path.samefile(dst, src)) and not (
                args.copy and os.path.isfile(dst) and not os.path.islink(dst)
                and os.path.getsize(dst) == os.path.getsize(src)):
            conflicts.append(dst)
    if conflicts:
        raise Problem('%d files in %s are in the way and are not the images they should be (e.g. %s): remove them and '
                      'run this again' % (len(conflicts), out, conflicts[0]))
    made = 0
    for src, k in plan:
        dst = os.path.join(out, str(k), os.path.basename(src))
        if os.path.lexists(dst):
            continue  # already there: idempotent
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if args.copy:
            shutil.copy2(src, dst + '.tmp')
            os.replace(dst + '.tmp', dst)
        else:
            os.symlink(os.path.abspath(src), dst)
        made += 1
    counts = [0] * args.num_class
    for _, k in plan:
        counts[k] += 1
    print('| %d validation images found, %d of the first %d WebVision classes; %d %s made in %s, %d there already'
          % (found, len(plan), args.num_class, made, 'copies' if args.copy else 'links', out, len(plan) - made))
    print('| images per class: %s' % ', '.join('%d: %d' % (k, c) for k, c in enumerate(counts)))
    if found != 50000:
        print('| note: %d validation images, where ILSVRC2012 has 50,000' % found)
    odd = [(k, c) for k, c in enumerate(counts) if c != IMAGENET_PER_CLASS]
    if odd:
        print('| note: ILSVRC2012 has %d validation images of every class; these differ: %s'
              % (IMAGENET_PER_CLASS, ', '.join('class %d (%s) %d' % (k, synsets[k], c) for k, c in odd[:20])))
    return 0


# ----------------------------------------------------------------------------------
# check
# ----------------------------------------------------------------------------------

class Report(object):
    """Problems (exit 2) and warnings, collected over the whole root, then printed together."""

    def __init__(self):
        self.problems, self.warnings, self.lines = [], [], []

    def missing_images(self, paths, list_path, show=5):
        missing = missing_files(paths)
        if missing:
            self.problems.append('%d of the %d images listed in %s are missing: %s%s' % (
                len(missing), len(paths), list_path, ', '.join(missing[:show]), ', ...' if len(missing) > show else ''))
        return len(paths) - len(missing)

    def decode(self, paths, sample):
        """Decode a fixed sample of paths (what --dry_run decodes); failures are a problem naming them."""
        try:
            return decode_sample(paths, sample)
        except UsageError as e:
            self.problems.append(str(e))
            return min(sample, len(paths))

    def read(self, path, with_label, parse_key, label_range=None, show=5):
        """The list's (keys, labels) with its malformed lines and labels out of range reported."""
        if not os.path.isfile(path):
            self.problems.append('missing %s' % path)
            return [], []
        keys, labels, bad, out_of_range = [], [], [], []
        with open(path, encoding='utf-8', errors='replace') as f:
            for lineno, line in enumerate(f, start=1):
                entry = line.split()
                if not entry:
                    continue
                key = parse_key(entry[0]) if len(entry) == (2 if with_label else 1) else None
                label = None
                if key is not None and with_label:
                    try:
                        label = int(entry[1])
                    except ValueError:
                        key = None
                if key is None:
                    bad.append('line %d %r' % (lineno, line.strip()[:80]))
                    continue
                if with_label and label_range is not None and not 0 <= label < label_range:
                    out_of_range.append('line %d label %d' % (lineno, label))
                keys.append(key)
                labels.append(label)
        if bad:
            self.problems.append('%s has %d malformed lines: %s%s' % (path, len(bad), '; '.join(bad[:show]),
                                                                       '; ...' if len(bad) > show else ''))
        if out_of_range:
            self.problems.append('%s has %d labels outside 0..%d: %s%s' % (
                path, len(out_of_range), label_range - 1, '; '.join(out_of_range[:show]),
                '; ...' if len(out_of_range) > show else ''))
        return keys, labels


def check_clothing1m(root, sample):
    r = Report()
    parse = lambda key: os.path.join(root, key[len('images/'):]) if key.startswith('images/') else None
    kv = {}
    for name in ('noisy_label_kv.txt', 'clean_label_kv.txt'):
        keys, labels = r.read(os.path.join(root, name), True, parse, CLOTHING_CLASSES)
        kv[name] = dict(zip(keys, labels))
        r.lines.append('%s: %d labelled images' % (name, len(keys)))
    decodable = []
    for name, labels_from in (('noisy_train_key_list.txt', 'noisy_label_kv.txt'),
                              ('clean_val_key_list.txt', 'clean_label_kv.txt'),
                              ('clean_test_key_list.txt', 'clean_label_kv.txt')):
        path = os.path.join(root, name)
        keys, _ = r.read(path, False, parse)
        if os.path.isfile(path) and not keys:
            r.problems.append('%s lists no image' % path)
        unlabeled = [k for k in keys if k not in kv[labels_from]]
        if unlabeled and kv[labels_from]:
            r.problems.append('%d keys of %s have no label in %s (first: %s)' % (len(unlabeled), name, labels_from,
                                                                                unlabeled[0]))
        present = r.missing_images(keys, path) if keys else 0
        published = CLOTHING_SIZES[name]
        r.lines.append('%s: %d images listed, %d present (published: %d)' % (name, len(keys), present, published))
        if keys and len(keys) != published:
            r.warnings.append('%s lists %d images, the published set %d: a subset?' % (name, len(keys), published))
        decodable += keys[:10000]
    if decodable:
        r.lines.append('%d sampled images decoded' % r.decode([p for p in decodable if os.path.exists(p)], sample))
    return r


def check_webvision(root, num_class, sample):
    r = Report()
    info = os.path.join(root, 'info')
    # the lists Train_webvision.py reads (the reference trains on the Google subset; the Flickr one is not used)
    lists = [('train_filelist_google.txt', root), ('val_filelist.txt', os.path.join(root, 'val_images_256'))]
    decodable = []
    for name, base in lists:
        path = os.path.join(info, name)
        keys, labels = r.read(path, True, lambda key: key, 1000)
        if os.path.isfile(path) and not keys:
            r.problems.append('%s lists no image' % path)
        used = [os.path.join(base, k) for k, label in zip(keys, labels) if label is not None and label < num_class]
        present = r.missing_images(used, path) if used else 0
        r.lines.append('%s: %d images listed, %d of classes 0..%d, %d of them present'
                       % (name, len(keys), len(used), num_class - 1, present))
        if keys and not used:
            r.problems.append('%s lists no image of classes 0..%d: check --num_class' % (path, num_class - 1))
        if name == 'val_filelist.txt' and used:  # the published validation set: 50 images of every class
            per_class = collections.Counter(label for label in labels if label is not None and label < num_class)
            odd = [(k, per_class[k]) for k in range(num_class) if per_class[k] != WEBVISION_VAL_PER_CLASS]
            if odd:
                r.warnings.append('WebVision\'s validation set has %d images per class; in %s %d of classes 0..%d '
                                  'differ (e.g. class %d: %d)' % (WEBVISION_VAL_PER_CLASS, name, len(odd),
                                                                  num_class - 1, odd[0][0], odd[0][1]))
        decodable += [p for p in used[:10000] if os.path.exists(p)]
    synsets = os.path.join(info, 'synsets.txt')
    if os.path.isfile(synsets):
        try:
            r.lines.append('info/synsets.txt: %d classes' % len(read_synsets(root)))
        except Problem as e:
            r.problems.append(str(e))
    else:
        r.warnings.append('no info/synsets.txt: tools/prepare_data.py ilsvrc12-val needs it to sort the ILSVRC12 '
                          'validation images')
    val = os.path.join(root, 'imagenet', 'val')
    counts = []
    for k in range(num_class):
        folder = os.path.join(val, str(k))
        images = sorted(f for f in os.listdir(folder) if not f.startswith('.')) if os.path.isdir(folder) else []
        counts.append(len(images))
        decodable += [os.path.join(folder, f) for f in images[:2]]
    empty = [k for k, c in enumerate(counts) if not c]
    if empty:
        r.problems.append('%d of the %d ILSVRC12 validation folders %s are missing or empty (classes %s): build them '
                          'with tools/prepare_data.py ilsvrc12-val' % (len(empty), num_class, val,
                                                                      ', '.join(map(str, empty[:10]))))
    odd = [(k, c) for k, c in enumerate(counts) if c and c != IMAGENET_PER_CLASS]
    r.lines.append('imagenet/val: %d images in %d class folders' % (sum(counts), num_class - len(empty)))
    if odd:
        r.warnings.append('ILSVRC12 has %d validation images per class; %d classes differ (e.g. class %d: %d)'
                          % (IMAGENET_PER_CLASS, len(odd), odd[0][0], odd[0][1]))
    if decodable:
        r.lines.append('%d sampled images decoded' % r.decode(decodable, sample))
    return r


def check(args):
    if not os.path.isdir(args.root):
        raise Problem('%s is not a folder' % args.root)
    report = check_clothing1m(args.root, args.sample) if args.dataset == 'clothing1m' else \
        check_webvision(args.root, args.num_class, args.sample)
    for line in report.lines:
        print('| %s' % line)
    for w in report.warnings:
        print('| warning: %s' % w)
    for p in report.problems:
        print('error: %s' % p, file=sys.stderr)
    if report.problems:
        print('%d problem(s) in %s: fix them before a run' % (len(report.problems), args.root), file=sys.stderr)
        return 2
    print('| %s: ready (%d warning(s))' % (args.root, len(report.warnings)))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    v = sub.add_parser('ilsvrc12-val', help='sort the ILSVRC12 validation images into WebVision\'s imagenet/val/<k>/')
    v.add_argument('--val_images', required=True, help='the folder of the ILSVRC2012_val_*.JPEG files')
    truth = v.add_mutually_exclusive_group(required=True)
    truth.add_argument('--solution', help="Kaggle's LOC_val_solution.csv")
    truth.add_argument('--devkit', help='the devkit folder ILSVRC2012_devkit_t12 (data/meta.mat and the ground truth)')
    v.add_argument('--webvision_root', required=True, help='the WebVision root (its info/synsets.txt)')
    v.add_argument('--num_class', type=int, default=50, help='the first N WebVision classes (default 50)')
    v.add_argument('--copy', action='store_true', help='copy the images instead of linking them')
    c = sub.add_parser('check', help='check a Clothing1M or WebVision root')
    c.add_argument('dataset', choices=['clothing1m', 'webvision'])
    c.add_argument('root')
    c.add_argument('--num_class', type=int, default=50, help='WebVision: the first N classes (default 50)')
    c.add_argument('--sample', type=int, default=32, help='images decoded (default 32)')
    args = p.parse_args(argv)
    if getattr(args, 'num_class', 1) < 1:
        return fail('--num_class %d: give 1 or more' % args.num_class)
    try:
        return ilsvrc12_val(args) if args.cmd == 'ilsvrc12-val' else check(args)
    except Problem as e:
        return fail(str(e))


if __name__ == '__main__':
    sys.exit(main())
