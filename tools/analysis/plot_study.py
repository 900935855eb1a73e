"""Plot the results of a loss study, or of any runs.

Works on the per-run table ``runs.csv`` written by ``loss_study.py`` or on
any work dirs of ``tools/train.py`` (each evaluated at the end by
``LongTailIoUMetric``), so users plot their own runs::

    python tools/analysis/plot_study.py work_dirs/demo/runs.csv --out plots
    python tools/analysis/plot_study.py ce=work_dirs/ce pat=work_dirs/pat \\
        --out plots

The plots are those of :func:`mmseg_pat.analysis.plot_study`
(``mmseg_pat/analysis/plots.py``). The learning curves come from the
``curves.csv`` beside a ``runs.csv``, else from the work dirs.
"""
import argparse
import os.path as osp
from typing import List, Optional, Sequence

from mmseg_pat.analysis import collect_runs, load_runs, plot_study


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    parser = argparse.ArgumentParser(
        description='Plot the results of a loss study or of any runs')
    parser.add_argument(
        'inputs',
        nargs='+',
        help='runs.csv of loss_study.py, or work dirs as [NAME=]WORK_DIR')
    parser.add_argument('--out', required=True, help='folder of the PNGs')
    parser.add_argument('--baseline', default='ce')
    parser.add_argument('--pat', default='pat', help='the PAT method')
    args = parser.parse_args(argv)
    curves = [
        osp.join(osp.dirname(item), 'curves.csv') for item in args.inputs
        if item.endswith('.csv')
    ]
    curves = [row for path in curves if osp.isfile(path)
              for row in load_runs(path)]
    paths = plot_study(
        collect_runs(args.inputs), args.out, args.baseline, args.pat,
        curves or None)
    for path in paths:
        print(path)
    return paths


if __name__ == '__main__':
    main()
