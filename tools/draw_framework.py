"""Draw img/framework.png: the DivideMix method at a glance (needs matplotlib).

    python tools/draw_framework.py [--out img/framework.png]

Left: one epoch's co-divide (each net fits a GMM to its per-sample losses and splits
the data for the other net). Right: one training step of net A on net B's split
(co-refinement, co-guessing, MixMatch, the loss).
"""
import argparse
import os
import sys

BLUE, ORANGE, GREY, GREEN = '#2a7ab9', '#e4572e', '#5d6d7e', '#2e8b57'
LIGHT = {BLUE: '#dcebf7', ORANGE: '#fbe2da', GREY: '#eceff1', GREEN: '#dff0e6'}


def box(ax, x, y, w, h, text, color=GREY, size=9, weight='normal', fill=None):
    from matplotlib.patches import FancyBboxPatch
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle='round,pad=0.006,rounding_size=0.012',
                                fc=fill or LIGHT.get(color, 'white'), ec=color, lw=1.4))
    ax.text(x, y, text, ha='center', va='center', fontsize=size, weight=weight, color='#1b2631', linespacing=1.35)


def arrow(ax, start, end, color=GREY, style='-|>', rad=0.0, lw=1.4, label=None, label_xy=None, size=8):
    ax.annotate('', xy=end, xytext=start, arrowprops=dict(arrowstyle=style, color=color, lw=lw,
                                                          connectionstyle='arc3,rad=%s' % rad, shrinkA=2, shrinkB=2))
    if label:
        ax.text(label_xy[0], label_xy[1], label, ha='center', va='center', fontsize=size, color=color, style='italic')


def draw(out):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(13.5, 5.6))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 1.35)
    ax.set_ylim(0, 0.56)
    ax.axis('off')

    # ---------------- left: co-divide
    ax.text(0.02, 0.535, 'Every epoch: co-divide', fontsize=12, weight='bold', color='#1b2631')
    box(ax, 0.085, 0.28, 0.13, 0.12, 'noisy training\ndata $(x_i, y_i)$', GREY, 9.5)
    for row, (net, color) in enumerate((('A', BLUE), ('B', ORANGE))):
        y = 0.405 if row == 0 else 0.155
        box(ax, 0.26, y, 0.14, 0.09, 'net %s\nper-sample loss\n$\\ell_i$ = CE$(x_i, y_i)$' % net, color, 8.5)
        box(ax, 0.43, y, 0.13, 0.09, 'GMM (2 comp.)\n$w_i$ = p(clean | $\\ell_i$)', color, 8.5)
        box(ax, 0.6, y, 0.15, 0.135, '', color)  # the division of net `net`
        ax.text(0.6, y + 0.052, 'division by net %s' % net, ha='center', va='center', fontsize=8, color=color,
                weight='bold')
        box(ax, 0.6, y + 0.012, 0.125, 0.034, 'labeled $\\mathcal{X}_%s$: $w_i > \\tau$' % net, color, 8.3,
            fill='white')
        box(ax, 0.6, y - 0.037, 0.125, 0.034, 'unlabeled $\\mathcal{U}_%s$: the rest' % net, color, 8.3,
            fill='white')
        arrow(ax, (0.15, 0.28 + (0.03 if row == 0 else -0.03)), (0.19, y))
        arrow(ax, (0.33, y), (0.365, y), color)
        arrow(ax, (0.495, y), (0.525, y), color)
    # the cross: each net trains on the other's division
    box(ax, 0.81, 0.405, 0.12, 0.075, 'train net A\n(net B fixed)', BLUE, 9, 'bold')
    box(ax, 0.81, 0.155, 0.12, 0.075, 'train net B\n(net A fixed)', ORANGE, 9, 'bold')
    arrow(ax, (0.675, 0.155), (0.75, 0.39), ORANGE, lw=2.0)
    arrow(ax, (0.675, 0.405), (0.75, 0.17), BLUE, lw=2.0)
    ax.text(0.712, 0.28, 'each net learns\nfrom the other\'s\ndivision', ha='center', va='center', fontsize=8.5,
            color='#1b2631', style='italic', bbox=dict(fc='white', ec='none', pad=1.5))
    ax.text(0.43, 0.045, 'Warm-up first: a few epochs of cross-entropy on all data (+ confidence penalty for '
            'asymmetric noise)', ha='center', fontsize=8.5, color=GREY)
    ax.plot([0.89, 0.89], [0.03, 0.53], color='#b0bec5', lw=1, ls=':')

    # ---------------- right: one training step of net A
    x0, cl, cr = 0.91, 1.01, 1.225
    ax.text(x0, 0.535, 'One step of training net A on $(\\mathcal{X}_B, \\mathcal{U}_B)$', fontsize=12,
            weight='bold', color='#1b2631')
    box(ax, cl, 0.455, 0.185, 0.06, 'labeled batch from $\\mathcal{X}_B$:\n2 views $x, x\'$; label $y$; $w$', GREY, 8.5)
    box(ax, cr, 0.455, 0.185, 0.06, 'unlabeled batch from $\\mathcal{U}_B$:\n2 views $u, u\'$', GREY, 8.5)
    box(ax, cl, 0.335, 0.185, 0.095, 'co-refinement (net A)\n$\\bar p = w\\,y + (1-w)\\,\\overline{p_A}(x, x\')$\n'
        'target = sharpen$(\\bar p, T)$', BLUE, 8.3)
    box(ax, cr, 0.335, 0.185, 0.095, 'co-guessing (nets A and B)\n$\\bar q = \\overline{p_{A,B}}(u, u\')$\n'
        'target = sharpen$(\\bar q, T)$', GREEN, 8.3)
    arrow(ax, (cl, 0.425), (cl, 0.3825))
    arrow(ax, (cr, 0.425), (cr, 0.3825))
    box(ax, (cl + cr) / 2, 0.2, 0.405, 0.07, 'MixMatch: $\\lambda \\sim$ Beta$(\\alpha, \\alpha)$, '
        '$\\lambda$ = max$(\\lambda, 1-\\lambda)$; mix the 4 views\nwith a shuffled copy of themselves; '
        'one forward of net A', GREY, 8.5)
    arrow(ax, (cl, 0.2875), (cl, 0.235))
    arrow(ax, (cr, 0.2875), (cr, 0.235))
    box(ax, (cl + cr) / 2, 0.085, 0.405, 0.085, '$L = L_x + \\lambda_u L_u + L_{reg}$, then an SGD step on net A\n'
        '$L_x$ soft cross-entropy (labeled rows), $L_u$ squared error\n(unlabeled rows, $\\lambda_u$ ramped up), '
        '$L_{reg}$ uniform prior', BLUE, 8.3)
    arrow(ax, ((cl + cr) / 2, 0.165), ((cl + cr) / 2, 0.1275))
    os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
    fig.savefig(out, dpi=150, facecolor='white')
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'img',
                                                 'framework.png'), help="default: the repository's img/framework.png")
    print('wrote %s' % draw(p.parse_args(argv).out))


if __name__ == '__main__':
    main()
