"""The loss study: train configs that differ only in the loss over seeds,
read the runs back, tabulate and plot them.

By job: :mod:`.presets` (the methods, the ready studies, the configs
installed with the package), :mod:`.run_config` (each run's config, and
:mod:`.breed_folds` for leave-one-breed-out folds), :mod:`.training` (each
run trained in its own process), :mod:`.runs` (runs read back),
:mod:`.tables`, :mod:`.plots` and :mod:`.weight_plots` (what is written),
:mod:`.study` (all of it, :func:`run_study`). ``python -m
mmseg_pat.analysis.loss_study`` is the command line of :func:`run_study`;
``tools/analysis/plot_study.py`` that of :func:`plot_study`. Not imported
by ``import mmseg_pat``: it is no part of training.
"""
from .plots import (plot_gain_vs_variant, plot_learning_curves,
                    plot_per_class_iou, plot_study)
from .presets import METHODS, PRESETS, config_path
from .run_config import build_run_config, plan_runs
from .runs import (collect_curves, collect_runs, evaluation_report, load_runs,
                   mean_std, paired_gains, read_curve, read_run)
from .study import run_study
from .tables import (markdown_table, memory_sizes, summarize, write_curves,
                     write_results, write_runs_csv)
from .weight_plots import (pat_weight_maps, plot_weight_map,
                           plot_weighting_curves)

__all__ = [
    'METHODS', 'PRESETS', 'build_run_config', 'collect_curves',
    'collect_runs', 'config_path', 'evaluation_report', 'load_runs',
    'markdown_table', 'mean_std', 'memory_sizes', 'paired_gains',
    'pat_weight_maps', 'plan_runs', 'plot_gain_vs_variant',
    'plot_learning_curves', 'plot_per_class_iou', 'plot_study',
    'plot_weight_map', 'plot_weighting_curves', 'read_curve', 'read_run',
    'run_study', 'summarize', 'write_curves', 'write_results',
    'write_runs_csv'
]
