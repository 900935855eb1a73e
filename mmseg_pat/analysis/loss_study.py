"""Train configs that differ only in the loss, over seeds, and compare them.

The command line of :func:`mmseg_pat.analysis.run_study`, run from any
folder where the package is installed (``tools/analysis/loss_study.py``
in the project is this)::

    python -m mmseg_pat.analysis.loss_study --preset shapes --out study

The presets (:mod:`mmseg_pat.analysis.presets`) use the configs installed
with the package and fit two CPU cores; what is written into ``--out`` is
said in :mod:`mmseg_pat.analysis.study`. The ``shapes`` presets generate
their data under ``data/`` in the working directory. The ``oxfordpet``
presets train on the real Oxford-IIIT Pet sample, ``oxford_pet/`` in the
folder given with ``--samples`` or named by ``MMSEG_PAT_SAMPLES``, or on
the data root given with ``--data-root``. ``--data-root``, ``--iters``,
``--no-shrink`` and ``--cfg-options`` scale them up, e.g. on a GPU with the
full Oxford-IIIT Pet::

    python -m mmseg_pat.analysis.loss_study --preset oxfordpet \\
        --data-root data/oxford_pet --no-shrink --iters 40000 \\
        --threads 0 --out work_dirs/study_oxfordpet

The studies in depth (issue 13) are presets too: ``oxfordpet_long`` (a 5x
longer schedule validated every 100 iterations: learning curves),
``oxfordpet_breeds`` (leave one breed out: train on two breeds, evaluate
on the third) and ``oxfordpet_grid`` (PrevPredictionHook's grid, 16 to 256
cells a side); ``--val-interval``, ``--held-out-breeds`` and
``--memory-grids`` give any preset the same variants.

Pretrained weights stay off (nothing downloads); ``--cfg-options
model.backbone.init_cfg.type=Pretrained
model.backbone.init_cfg.checkpoint=URL`` turns them back on.
"""
import argparse
import sys
from typing import Dict, List, Optional, Sequence

from mmengine.config import DictAction

from .presets import METHODS, PRESETS, SAMPLES_ENV, preset_data_root
from .study import run_study


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The options of :func:`run_study`, from the command line."""
    parser = argparse.ArgumentParser(
        description='Train configs that differ only in the loss over '
        'several seeds and compare them (tables and plots)')
    parser.add_argument('--preset', choices=list(PRESETS), required=True)
    parser.add_argument(
        '--methods',
        nargs='+',
        help=f'methods to compare (default: the preset\'s); from '
        f'{", ".join(METHODS)}')
    parser.add_argument('--seeds', nargs='+', type=int)
    parser.add_argument(
        '--iters', type=int, help='training iterations of every run')
    parser.add_argument(
        '--val-interval',
        type=int,
        help='validate every N iterations: learning curves (curves.csv, '
        'curves.md, learning_curves.png); default: the preset\'s, else '
        'once at the end')
    parser.add_argument(
        '--out', required=True, help='folder of the tables and plots')
    parser.add_argument(
        '--work-dir', help='folder of the runs (default: OUT/runs)')
    parser.add_argument(
        '--data-root',
        help='dataset root for every loader (default: the preset\'s; for '
        'oxfordpet, oxford_pet/ in --samples)')
    parser.add_argument(
        '--samples',
        metavar='DIR',
        help='folder of the real dataset samples (oxford_pet/, ...) of the '
        f'oxfordpet presets (default: ${SAMPLES_ENV})')
    parser.add_argument(
        '--no-shrink',
        dest='shrink',
        action='store_false',
        help='keep the config\'s image sizes, batch size and workers')
    parser.add_argument(
        '--imbalance-ratios',
        nargs='+',
        type=float,
        help='one study per imbalance ratio of the generated data')
    parser.add_argument(
        '--held-out-breeds',
        nargs='+',
        metavar='BREED',
        help='Oxford-IIIT Pet: one fold per breed, trained on the other '
        'breeds (those of the preset, else all) and evaluated on this one')
    parser.add_argument(
        '--memory-grids',
        nargs='+',
        type=int,
        metavar='N',
        help='one study per PrevPredictionHook grid of N x N cells; methods '
        'without the memory run once')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of every run, key=value')
    parser.add_argument(
        '--baseline',
        default='ce',
        help='method the gains are measured from (default: ce)')
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='CPU threads per run; 0 leaves torch\'s default (default: 1)')
    parser.add_argument(
        '--jobs', type=int, default=1, help='runs trained at once')
    parser.add_argument(
        '--skip-existing',
        action='store_true',
        help='read back runs whose work dir holds an evaluation instead of '
        'training them again')
    parser.add_argument(
        '--add-runs',
        nargs='+',
        metavar='RUNS_CSV',
        help='runs.csv of earlier studies: their runs of methods, seeds and '
        'variants not trained now join the tables and plots')
    parser.add_argument(
        '--show-log',
        action='store_true',
        help='stream the training logs (default for the demo)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict]:
    """Run the study; the summary rows."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        preset_data_root(PRESETS[args.preset], args.data_root, args.samples)
    except FileNotFoundError as err:
        sys.exit(f'error: --preset {args.preset}: {err}')
    # each option is the run_study argument of the same name
    return run_study(
        **vars(args), command=['-m', 'mmseg_pat.analysis.loss_study', *argv])


if __name__ == '__main__':
    main()
