"""The loss study: train configs that differ only in the loss over seeds,
read the runs back, tabulate and plot them.

``tools/analysis/loss_study.py`` and ``tools/analysis/plot_study.py`` are
the command lines of :func:`run_study` and :func:`plot_study`. Not imported
by ``import mmseg_pat``: it is no part of training.
"""
from .plots import (plot_gain_vs_variant, plot_learning_curves,
                    plot_per_class_iou, plot_study)
from .runs import (collect_curves, collect_runs, evaluation_report, load_runs,
                   mean_std, paired_gains, read_curve, read_run)
from .study import (METHODS, PRESETS, build_run_config, markdown_table,
                    memory_sizes, plan_runs, run_study, summarize,
                    write_curves, write_results, write_runs_csv)
from .weight_plots import (pat_weight_maps, plot_weight_map,
                           plot_weighting_curves)

__all__ = [
    'METHODS', 'PRESETS', 'build_run_config', 'collect_curves',
    'collect_runs', 'evaluation_report', 'load_runs', 'markdown_table',
    'mean_std', 'memory_sizes', 'paired_gains', 'pat_weight_maps',
    'plan_runs', 'plot_gain_vs_variant', 'plot_learning_curves',
    'plot_per_class_iou', 'plot_study', 'plot_weight_map',
    'plot_weighting_curves', 'read_curve', 'read_run', 'run_study',
    'summarize', 'write_curves', 'write_results', 'write_runs_csv'
]
