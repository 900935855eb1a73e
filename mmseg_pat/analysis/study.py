"""Train configs that differ only in the loss, over seeds, and compare them.

The evidence study of PAT (arXiv 2404.05393; ``docs/method.md``, section
6): does it help the rare classes, and at what cost? :func:`run_study`
takes a preset (:data:`~.presets.PRESETS`), writes the config of every run
(:func:`~.run_config.plan_runs`), trains each in its own process
(:func:`~.training.run_one`), reads them back
(:func:`~mmseg_pat.analysis.runs.read_run`) and writes into its output
folder the tables of :mod:`~mmseg_pat.analysis.tables` (``runs.csv``,
``results.csv`` / ``.md``, ``curves.csv`` / ``.md``, ``memory_size.md``),
the plots of :func:`~mmseg_pat.analysis.plots.plot_study` and
``COMMAND.txt`` (command line, wall time, machine).

Variants make one study per setting, each paired with its own baseline:
the imbalance ratio of the generated data, the breed held out of
Oxford-IIIT Pet (:func:`~.breed_folds.set_breed_fold`), PrevPredictionHook's
grid (:func:`~.run_config.set_memory_grid`; the baseline keeps no memory
and runs once).
"""
import os
import os.path as osp
import platform
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import product
from typing import Dict, List, Optional, Sequence

from .plots import plot_study
from .presets import (HELD_OUT_BREED, MEMORY_GRID, METHODS, PRESETS,
                      preset_data_root)
from .run_config import plan_runs
from .runs import collect_curves, evaluation_report, load_runs
from .tables import (markdown_table, memory_sizes, write_curves, write_results,
                     write_runs_csv)
from .training import run_one


def write_command(path: str, command: Sequence[str], wall_s: float,
                  threads: int) -> None:
    """Write the command line, the wall time and the machine."""
    import torch
    niceness = os.nice(0)
    line = shlex.join([osp.relpath(sys.executable), *command])
    if niceness:
        line = f'nice -n {niceness} {line}'
    with open(path, 'w') as f:
        f.write(f'{line}\n\n'
                f'wall time: {wall_s:.0f} s ({wall_s / 60:.1f} min)\n'
                f'machine: {platform.machine()}, {os.cpu_count()} CPU '
                f'cores, {threads or "default"} thread(s) per run, torch '
                f'{torch.__version__}, CUDA '
                f'{"yes" if torch.cuda.is_available() else "no"}\n')


def _run_key(row: Dict) -> tuple:
    return (row.get('variant') or '', row['method'], int(row['seed']))


def merge_runs(rows: Sequence[Dict], earlier: Sequence[Dict]) -> List[Dict]:
    """The rows of this study and those of ``earlier`` runs (e.g. read
    from an earlier ``runs.csv``) of the (variant, method, seed) it did
    not train: a method re-run now replaces its earlier runs. Variants
    keep the earlier study's order, methods that of :data:`METHODS`."""
    trained = {_run_key(row) for row in rows}
    merged = list(rows) + [r for r in earlier if _run_key(r) not in trained]
    # tables list the variants in the earlier study's order (then the new
    # ones), the methods as METHODS does
    variants = list(
        dict.fromkeys(r.get('variant') or ''
                      for r in list(earlier) + list(rows)))
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(merged, key=lambda r: (variants.index(
        r.get('variant') or ''), order.get(r['method'], len(order)),
        str(r['method']), int(r['seed'])))


def run_study(preset: str,
              out: str,
              work_dir: Optional[str] = None,
              methods: Optional[Sequence[str]] = None,
              seeds: Optional[Sequence[int]] = None,
              imbalance_ratios: Optional[Sequence[float]] = None,
              held_out_breeds: Optional[Sequence[str]] = None,
              memory_grids: Optional[Sequence[int]] = None,
              data_root: Optional[str] = None,
              samples: Optional[str] = None,
              iters: Optional[int] = None,
              val_interval: Optional[int] = None,
              shrink: bool = True,
              cfg_options: Optional[Dict] = None,
              baseline: str = 'ce',
              threads: int = 1,
              jobs: int = 1,
              skip_existing: bool = False,
              add_runs: Optional[Sequence[str]] = None,
              show_log: bool = False,
              command: Optional[Sequence[str]] = None) -> List[Dict]:
    """Run a study: plan, train, read back, tabulate and plot.

    Args:
        preset (str): A key of :data:`~.presets.PRESETS`.
        out (str): Folder of the tables, plots and ``COMMAND.txt``.
        work_dir (str, optional): Folder of the runs. Default: ``out/runs``.
        methods, seeds: Default: None (the preset's).
        imbalance_ratios (Sequence[float], optional): One study per
            imbalance ratio of the generated data.
        held_out_breeds (Sequence[str], optional): One leave-one-breed-out
            fold per breed (:data:`~.presets.HELD_OUT_BREED`).
        memory_grids (Sequence[int], optional): One study per
            PrevPredictionHook grid, N x N cells
            (:data:`~.presets.MEMORY_GRID`).
            Given together, these three make one study per combination;
            none given: the preset's variants.
        data_root, samples, iters, val_interval, shrink, cfg_options: See
            :func:`~.run_config.build_run_config`.
        baseline (str): Method the gains are measured from. Default: 'ce'.
        threads (int): CPU threads per run; 0 leaves torch's default.
            Default: 1.
        jobs (int): Runs trained at once. Default: 1.
        skip_existing (bool): Read back the runs whose work dir holds an
            evaluation instead of training them again. Default: False.
        add_runs (Sequence[str], optional): ``runs.csv`` files of earlier
            studies; their rows of (variant, method, seed) not trained
            now join the tables and plots (:func:`merge_runs`).
            Default: None.
        show_log (bool): Stream the training logs (the ``demo`` preset
            always does). Default: False.
        command (Sequence[str], optional): The command line recorded in
            ``COMMAND.txt``. Default: None (``sys.argv``).

    Returns:
        list[dict]: The summary rows (:func:`~.tables.summarize`).

    Raises:
        FileNotFoundError: If the preset's real sample is missing (before
            anything is written; see :func:`~.presets.preset_data_root`).
    """
    start = time.time()
    settings = PRESETS[preset]
    preset_data_root(settings, data_root, samples)
    os.makedirs(out, exist_ok=True)
    axes = {
        key: values
        for key, values in (('imbalance_ratio', imbalance_ratios),
                            (HELD_OUT_BREED, held_out_breeds),
                            (MEMORY_GRID, memory_grids)) if values
    }
    variants = [dict(zip(axes, values)) for values in product(*axes.values())
                ] if axes else None
    runs = plan_runs(
        settings,
        work_dir or osp.join(out, 'runs'),
        methods,
        seeds,
        variants,
        data_root=data_root,
        samples=samples,
        shrink=shrink,
        cfg_options=cfg_options,
        iters=iters,
        val_interval=val_interval)
    show_log = show_log or settings.get('show_log', False)
    print(f'{len(runs)} runs of preset {preset!r}', flush=True)

    def train(run):
        return run_one(run, threads, show_log, skip_existing)

    with ThreadPoolExecutor(max(jobs, 1)) as pool:
        rows = list(pool.map(train, runs))
    if add_runs:
        rows = merge_runs(rows, [r for p in add_runs for r in load_runs(p)])

    write_runs_csv(osp.join(out, 'runs.csv'), rows)
    summary = write_results(out, rows, preset, baseline,
                            settings.get('pool_variants', False))
    curves = collect_curves(rows)
    if curves:
        write_curves(out, curves, baseline)
    grids = sorted({
        v[MEMORY_GRID]
        for v in variants or settings.get('variants') or ()
        if isinstance(v.get(MEMORY_GRID), int)
    })
    if grids:
        with open(osp.join(out, 'memory_size.md'), 'w') as f:
            f.write(memory_sizes(grids))
    plots = plot_study(rows, out, baseline=baseline, curves=curves)
    write_command(
        osp.join(out, 'COMMAND.txt'), sys.argv if command is None else
        command, time.time() - start, threads)
    print('\n' + markdown_table(summary, baseline))
    print(f'results: {osp.join(out, "results.md")}')
    if show_log:
        last = rows[-1]
        print(f'\nevaluation of {last["method"]} (seed {last["seed"]}):\n'
              f'{evaluation_report(last["work_dir"])}\n')
    for path in plots:
        print(f'plot: {path}')
    return summary
