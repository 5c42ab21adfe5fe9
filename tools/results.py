"""Summarise run folders as Markdown tables, next to the paper's numbers.

    python results.py                       # ./checkpoint
    python results.py checkpoint/ old_runs/ --out results.md
    python results.py runs/ --seeds --baseline ref  # mean ± s.d. over seeds, arms against 'ref'

Reads what the training scripts write (and what the reference scripts wrote):
    CIFAR:      <dataset>_<r>_<mode>[_<id>]_acc.txt   'Epoch:%d   Accuracy:%.2f'
                (+ _log.jsonl for the labeled-set AUC, when present)
    Clothing1M: <id>.txt    'Validation Epoch:...' and 'Test Accuracy:%.2f'
    WebVision:  <id>_acc.txt 'Epoch:%d \\t WebVision Acc: %.2f%% (%.2f%%) \\t ImageNet Acc: ...'
    own data:   <id>_acc.txt 'Epoch:%d   Accuracy:%.2f' (Train_folder.py, a clean test or val split)
and prints one table per dataset / noise setting: best, last and mean of the last 10
epochs' test accuracy, with the paper's best / last where the paper has the cell.

With --seeds, CIFAR runs whose ids end in a seed ('<arm>_s<N>' or '<arm>_seed<N>', as
`--id ref_s$s`) are also pooled per arm: mean ± sample s.d. over the runs; with --baseline ARM,
each arm's mean of the last 10 epochs minus the baseline's, its 95% confidence interval and the
p-value of Welch's t-test (unequal variances). Arms pool over every folder given.
"""
import argparse
import glob
import json
import math
import os
import re
import statistics
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's root

from dividemix_run import paper
from dividemix_run.logs import number

CIFAR_ACC = re.compile(r'^Epoch:(\d+)   Accuracy:([\d.]+)$')
WEB_ACC = re.compile(r'^Epoch:(\d+) \t WebVision Acc: ([\d.]+)% \(([\d.]+)%\) \t ImageNet Acc: ([\d.]+)% \(([\d.]+)%\)$')
CLOTHING_TEST = re.compile(r'^Test Accuracy:([\d.]+)$')
CLOTHING_VAL = re.compile(r'^Validation Epoch:(\d+)\s+Acc1:([\d.]+)\s+Acc2:([\d.]+)$')
SEED_ID = re.compile(r'^(?:(.*)_)?(?:s|seed)(\d+)$')
NOISE_MODES = ('sym', 'asym_blocks', 'asym', 'pairflip', 'instance', 'aggre', 'worst', 'rand1', 'rand2', 'rand3',
               'noisy100')


def stats(values):
    if not values:
        return {'best': float('nan'), 'last': float('nan'), 'mean_last10': float('nan'), 'epochs': 0}
    last10 = values[-10:]
    return {'best': max(values), 'last': values[-1], 'mean_last10': sum(last10) / len(last10), 'epochs': len(values)}


def warn(message):
    print('warning: %s' % message, file=sys.stderr)


def read_lines(path):
    """The file's lines, or None (with a warning) for a file that is not UTF-8 text: no run log."""
    try:
        with open(path, encoding='utf-8') as f:
            return f.read().splitlines()
    except UnicodeDecodeError:
        warn('skipped %s: not UTF-8 text (no run log)' % path)
    except OSError as e:
        warn('skipped %s: %s' % (path, e.strerror or e))
    return None


def read_jsonl(path):
    """The records of a JSON-lines log; a damaged line (half-written when a run was killed, say) is skipped
    with a warning naming it, and the rest is read."""
    records = []
    for lineno, line in enumerate(read_lines(path) or [], start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            warn('%s line %d is not a JSON record (half-written?): skipped' % (path, lineno))
    return records


def by_epoch(path, rows):
    """rows [(epoch, value)] -> the values in epoch order, the last of each epoch where one appears more
    than once (a log appended to twice), with a warning naming them."""
    last, repeated = {}, set()
    for epoch, value in rows:
        if epoch in last:
            repeated.add(epoch)
        last[epoch] = value
    if repeated:
        shown = sorted(repeated)
        warn('%s: epoch%s %s appear%s more than once (a log appended to twice?); the last line of each is used'
             % (path, 's' if len(shown) > 1 else '', ', '.join(map(str, shown[:8])) + (', ...' if len(shown) > 8
                                                                                   else ''),
                '' if len(shown) > 1 else 's'))
    return [last[e] for e in sorted(last)]


def parse_cifar_name(filename):
    """(dataset, r, noise mode, id) from '<dataset>_<r>_<mode>[_<id>]_acc.txt', or None.
    Noise modes may contain '_' (asym_blocks), so known modes are matched first."""
    m = re.match(r'^(cifar10|cifar100|fashionmnist)_(\d\.\d)_(.+)_acc\.txt$', filename)
    if not m:
        return None
    rest = m.group(3)
    for mode in NOISE_MODES:
        if rest == mode or rest.startswith(mode + '_'):
            return m.group(1), float(m.group(2)), mode, rest[len(mode) + 1:]
    return m.group(1), float(m.group(2)), rest, ''


def last_auc(jsonl):
    if not os.path.exists(jsonl):
        return float('nan')
    aucs = []
    for rec in read_jsonl(jsonl):
        if 'auc1' in rec and 'auc2' in rec:  # null (NaN in earlier logs): no noisy or no clean sample
            aucs.append((number(rec['auc1']) + number(rec['auc2'])) / 2)
    return aucs[-1] if aucs else float('nan')


def collect(folders):
    """{group title: [row dicts]} over every run found in the folders."""
    groups = {}
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, '*.txt'))):
            name = os.path.basename(path)
            cifar = parse_cifar_name(name)
            lines = read_lines(path)
            if lines is None:
                continue
            cifar_accs = lambda: by_epoch(path, [(int(m.group(1)), float(m.group(2)))
                                                 for m in map(CIFAR_ACC.match, lines) if m])
            if cifar and any(CIFAR_ACC.match(l) for l in lines):
                dataset, r, mode, run_id = cifar
                accs = cifar_accs()
                row = dict(stats(accs), run=os.path.join(folder, name[:-len('_acc.txt')]), id=run_id,
                           auc=last_auc(path[:-len('_acc.txt')] + '_log.jsonl'))
                cell = paper.RESULTS.get((dataset, mode, r))
                row['paper'] = '%.1f / %.1f' % cell if cell else '-'
                groups.setdefault('%s, %s %.0f%%' % (dataset, mode, 100 * r), []).append(row)
            elif name.endswith('_acc.txt') and any(CIFAR_ACC.match(l) for l in lines):  # Train_folder.py runs
                accs = cifar_accs()
                groups.setdefault('own data (Train_folder.py)', []).append(dict(
                    stats(accs), run=os.path.join(folder, name[:-len('_acc.txt')]), id='', paper='-',
                    auc=last_auc(path[:-len('_acc.txt')] + '_log.jsonl')))
            elif any(WEB_ACC.match(l) for l in lines):
                res = by_epoch(path, [(int(m.group(1)), tuple(float(x) for x in m.groups()[1:]))
                                      for m in map(WEB_ACC.match, lines) if m])
                row = {'run': os.path.join(folder, name[:-len('_acc.txt')] or '(no id)')}
                for i, key in enumerate(('webvision_top1', 'webvision_top5', 'imagenet_top1', 'imagenet_top5')):
                    row[key] = stats([r[i] for r in res])
                groups.setdefault('WebVision', []).append(row)
            elif any(CLOTHING_VAL.match(l) for l in lines):
                vals = by_epoch(path, [(int(m.group(1)), m) for m in map(CLOTHING_VAL.match, lines) if m])
                tests = [float(m.group(1)) for m in map(CLOTHING_TEST.match, lines) if m]
                groups.setdefault('Clothing1M', []).append({
                    'run': os.path.join(folder, name[:-len('.txt')]), 'epochs': len(vals),
                    'best_val': max(max(float(m.group(2)), float(m.group(3))) for m in vals),
                    'test': tests[-1] if tests else float('nan')})
    return groups


def fmt(x, digits=2):
    return '-' if isinstance(x, float) and math.isnan(x) else ('%.*f' % (digits, x))


def render(groups):
    out = []
    for title in sorted(groups):
        rows = groups[title]
        out.append('### %s\n' % title)
        if title == 'Clothing1M':
            out.append('| run | epochs | best val (either net) | test (ensemble of the best nets) | paper test |')
            out.append('| --- | --- | --- | --- | --- |')
            for r in rows:
                out.append('| %s | %d | %s | %s | %.2f |' % (r['run'], r['epochs'], fmt(r['best_val']),
                                                             fmt(r['test']), paper.CLOTHING1M_TEST))
        elif title == 'WebVision':
            out.append('| run | epochs | WebVision top-1 best / last | top-5 best / last | ILSVRC12 top-1 best / last '
                       '| top-5 best / last | paper (WebVision top-1 / top-5, ILSVRC12 top-1) |')
            out.append('| --- | --- | --- | --- | --- | --- | --- |')
            for r in rows:
                cells = ['%s / %s' % (fmt(r[k]['best']), fmt(r[k]['last']))
                         for k in ('webvision_top1', 'webvision_top5', 'imagenet_top1', 'imagenet_top5')]
                out.append('| %s | %d | %s | %.2f / %.2f, %.2f |' % (
                    r['run'], r['webvision_top1']['epochs'], ' | '.join(cells), paper.WEBVISION['webvision_top1'],
                    paper.WEBVISION['webvision_top5'], paper.WEBVISION['imagenet_top1']))
        else:
            out.append('| run | epochs | best | last | mean of last 10 | labeled-set AUC (last) | paper best / last |')
            out.append('| --- | --- | --- | --- | --- | --- | --- |')
            for r in rows:
                out.append('| %s | %d | %s | %s | %s | %s | %s |' % (
                    r['run'], r['epochs'], fmt(r['best']), fmt(r['last']), fmt(r['mean_last10']),
                    fmt(r['auc'], 3), r['paper']))
        out.append('')
    return '\n'.join(out)


def arm_of(run_id):
    """('ref', 7) for 'ref_s7' / 'ref_seed7'; (run_id, None) for an id without a seed."""
    m = SEED_ID.match(run_id)
    if not m:
        return run_id or '(no id)', None
    return m.group(1) or '(no id)', int(m.group(2))


def pool_arms(rows):
    """{arm: [rows]} in order of first appearance."""
    arms = {}
    for r in rows:
        arms.setdefault(arm_of(r['id'])[0], []).append(r)
    return arms


def mean_sd(values):
    """Mean and sample standard deviation (nan for one value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else float('nan')


def cifar_groups(groups):
    """The groups whose rows are CIFAR-style runs (ids, best / last / mean of last 10, AUC)."""
    return {t: rows for t, rows in groups.items() if t not in ('Clothing1M', 'WebVision')}


def welch(a, b):
    """(mean(a) - mean(b), 95% CI low, high, two-sided p) of Welch's t-test; nan where n < 2."""
    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    if len(a) < 2 or len(b) < 2 or sa == sb == 0:  # no spread to test against
        return ma - mb, float('nan'), float('nan'), float('nan')
    from scipy import stats as st  # scipy comes with scikit-learn
    with warnings.catch_warnings():  # scipy warns of precision loss when one arm's runs are identical
        warnings.simplefilter('ignore', RuntimeWarning)
        res = st.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    return ma - mb, float(ci.low), float(ci.high), float(res.pvalue)


def render_arms(groups, baseline=None):
    """Mean ± s.d. per arm for every CIFAR group; with a baseline, Welch comparisons against it."""
    out = []
    for title, rows in sorted(cifar_groups(groups).items()):
        arms = pool_arms(rows)
        out.append('### %s: arms over seeds\n' % title)
        out.append('| arm | runs | seeds | epochs | best | last | mean of last 10 | labeled-set AUC (last) |')
        out.append('| --- | --- | --- | --- | --- | --- | --- | --- |')
        for arm, rows in arms.items():
            seeds = sorted(s for s in (arm_of(r['id'])[1] for r in rows) if s is not None)
            # a range here flags an unfinished (or differently configured) run pooled with the others
            e_min, e_max = min(r['epochs'] for r in rows), max(r['epochs'] for r in rows)
            cells = []
            for key, digits in (('best', 2), ('last', 2), ('mean_last10', 2), ('auc', 3)):
                vals = [r[key] for r in rows if not math.isnan(r[key])]
                m, sd = mean_sd(vals) if vals else (float('nan'), float('nan'))
                cells.append(fmt(m, digits) + ('' if math.isnan(sd) else ' ± ' + fmt(sd, digits)))
            out.append('| %s | %d | %s | %s | %s |' % (arm, len(rows), ','.join(map(str, seeds)) or '-',
                                                   e_min if e_min == e_max else '%d-%d' % (e_min, e_max), ' | '.join(cells)))
        if baseline in arms:
            base = [r['mean_last10'] for r in arms[baseline]]
            out.append('')
            out.append('| arm | runs | mean of last 10 minus %s (%d runs) | 95%% CI | Welch p |' % (baseline, len(base)))
            out.append('| --- | --- | --- | --- | --- |')
            for arm, rows in arms.items():
                if arm != baseline:
                    d, lo, hi, p = welch([r['mean_last10'] for r in rows], base)
                    out.append('| %s | %d | %+.2f | %s | %s |' % (
                        arm, len(rows), d, '-' if math.isnan(lo) else '%+.2f to %+.2f' % (lo, hi), fmt(p, 3)))
        out.append('')
    return '\n'.join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('folders', nargs='*', default=['checkpoint'], help='run folders (default ./checkpoint)')
    p.add_argument('--out', default=None, help='also write the tables to this Markdown file')
    p.add_argument('--seeds', action='store_true',
                   help="also pool CIFAR runs per arm over seeds (ids '<arm>_s<N>'): mean ± s.d.")
    p.add_argument('--baseline', default=None, metavar='ARM',
                   help='implies --seeds: compare every arm with this one (difference, 95%% CI, Welch p)')
    args = p.parse_args(argv)
    missing = [f for f in args.folders if not os.path.isdir(f)]
    if missing:
        print('error: no such folder: %s' % ', '.join(missing), file=sys.stderr)
        return 2
    groups = collect(args.folders)
    if not groups:
        print('error: no run logs (*_acc.txt, Clothing1M <id>.txt) in %s' % ', '.join(args.folders), file=sys.stderr)
        return 2
    md = render(groups)
    if args.seeds or args.baseline:
        found = {arm for rows in cifar_groups(groups).values() for arm in pool_arms(rows)}
        if args.baseline and args.baseline not in found:
            print('error: --baseline %s: no such arm; the arms found are: %s (an arm is a run id without its '
                  "'_s<seed>' suffix)" % (args.baseline, ', '.join(sorted(found)) or 'none'), file=sys.stderr)
            return 2
        md += '\n' + render_arms(groups, args.baseline)
    if args.out:  # first: a folder that cannot take it is said before the tables scroll by
        try:
            with open(args.out, 'w') as f:
                f.write(md + '\n')
        except OSError as e:
            print('error: cannot write --out %s (%s): pass a writable path' % (args.out, e.strerror or e),
                  file=sys.stderr)
            return 2
    print(md)
    return 0


if __name__ == '__main__':
    from dividemix_run.logs import quiet_streams
    with quiet_streams():  # `python results.py | head` ends quietly
        code = main()
    sys.exit(code)
