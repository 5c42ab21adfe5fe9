"""The labels DivideMix doubts: one row per training sample, most suspicious first.

What DivideMix computes every epoch and then throws away: each net's probability that a sample's
given label is clean (the loss GMM's posterior) and the two nets' prediction. report() recomputes
them for the nets as they are (without touching any random stream), and write() saves

    <stem>_label_issues.csv           rank, index, path, given label and class, each net's clean
                                      probability and their mean, the ensemble's predicted label,
                                      class and probability, flagged (mean clean probability below
                                      p_threshold); sorted by the mean clean probability, lowest first
    <stem>_label_issues_summary.txt   samples flagged per given class; the most common
                                      given -> predicted pairs among the flagged ones
"""
import collections
import csv
import os

import numpy as np
import torch

import dividemix as dm
from . import distributed
from .checkpoints import forked_rng

COLUMNS = ('rank', 'index', 'path', 'given_label', 'given_class', 'clean_prob_net1', 'clean_prob_net2',
           'clean_prob_mean', 'predicted_label', 'predicted_class', 'predicted_prob', 'flagged')


@torch.no_grad()
def ensemble_predictions(nets, batches, autocast):
    """(predicted label, its probability) per sample of eval batches (x, y, index): the mean of the
    nets' softmax, in eval mode."""
    for net in nets:
        net.eval()
    labels, probs, order = [], [], []
    for inputs, _, index in batches:
        with autocast():
            p = sum(torch.softmax(net(inputs).float(), dim=1) for net in nets) / len(nets)
        best, label = p.max(dim=1)
        labels.append(label.cpu())
        probs.append(best.cpu())
        order.append(index.cpu())
    order, labels, probs = torch.cat(order), torch.cat(labels), torch.cat(probs)
    if distributed.world_size() > 1:  # every rank predicted its shard
        device = next(nets[0].parameters()).device
        order, labels, probs = (t.cpu() for t in distributed.all_gather_rows(order.to(device), labels.to(device),
                                                                     probs.to(device)))
    out_label, out_prob = torch.empty(len(order), dtype=torch.long), torch.empty(len(order))
    out_label[order], out_prob[order] = labels, probs
    return out_label.numpy(), out_prob.numpy().astype(np.float64)


def report(nets, source, cfg, given, autocast, epoch=None):
    """The report's columns as arrays (index order): each net's clean probability, the ensemble's
    prediction. Random streams (global and the source's) are left as they were, so a run that
    writes reports trains exactly as one that does not."""
    with forked_rng(source):
        divisions = dm.co_divide(nets, source, cfg, epoch=epoch, autocast=autocast)
        predicted, predicted_prob = ensemble_predictions(nets, source.eval_batches(0), autocast)
    prob1, prob2 = divisions[0].prob, divisions[1].prob
    return {'given': np.asarray(given), 'prob1': prob1, 'prob2': prob2, 'mean': (prob1 + prob2) / 2,
            'predicted': predicted, 'predicted_prob': predicted_prob, 'p_threshold': cfg.p_threshold}


def rows(rep, paths, classes):
    """The CSV rows, most suspicious first (lowest mean clean probability; ties by index)."""
    order = np.lexsort((np.arange(len(rep['mean'])), rep['mean']))
    out = []
    for rank, i in enumerate(order, start=1):
        g, p = int(rep['given'][i]), int(rep['predicted'][i])
        out.append([rank, int(i), paths[i], g, classes[g], float(rep['prob1'][i]), float(rep['prob2'][i]),
                    float(rep['mean'][i]), p, classes[p], float(rep['predicted_prob'][i]),
                    int(rep['mean'][i] < rep['p_threshold'])])  # floats in full: the flag is reproducible
    return out


def summary(rep, classes, epoch, top=10):
    flagged = rep['mean'] < rep['p_threshold']
    n, f = len(flagged), int(flagged.sum())
    lines = ['%d training samples, %d flagged (%.1f%%): mean clean probability of the two nets below p_threshold '
             '%g (nets after epoch %s)' % (n, f, 100.0 * f / max(n, 1), rep['p_threshold'], epoch), '',
             'flagged per given class:']
    width = max(len(c) for c in classes)
    for c, name in enumerate(classes):
        total = int((rep['given'] == c).sum())
        k = int((flagged & (rep['given'] == c)).sum())
        lines.append('  %-*s  %6d of %6d  (%5.1f%%)' % (width, name, k, total, 100.0 * k / max(total, 1)))
    pairs = collections.Counter((int(g), int(p)) for g, p in zip(rep['given'][flagged], rep['predicted'][flagged]))
    lines += ['', 'most common given -> predicted among the flagged:']
    for (g, p), k in pairs.most_common(top):
        lines.append('  %s -> %s: %d%s' % (classes[g], classes[p], k, '' if g != p else ' (the nets agree with the '
                                                                                        'label, the GMM does not)'))
    if not pairs:
        lines.append('  (none flagged)')
    return '\n'.join(lines)


def write(stem, rep, paths, classes, epoch):
    """Write <stem>_label_issues.csv and <stem>_label_issues_summary.txt (each through a temporary file
    and a rename: a kill leaves the previous report whole); returns the summary text."""
    with open(stem + '_label_issues.csv.tmp', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(rows(rep, paths, classes))
    os.replace(stem + '_label_issues.csv.tmp', stem + '_label_issues.csv')
    text = summary(rep, classes, epoch)
    with open(stem + '_label_issues_summary.txt.tmp', 'w') as f:
        f.write(text + '\n')
    os.replace(stem + '_label_issues_summary.txt.tmp', stem + '_label_issues_summary.txt')
    return text
