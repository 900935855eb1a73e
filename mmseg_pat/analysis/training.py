"""Train the runs of a loss study, each in its own process, and read them
back.

Each run is trained by ``python -m mmseg_pat.analysis.training CONFIG
--work-dir DIR`` (:func:`train`: the set-up of ``tools/train.py``, then
MMEngine's runner): runs are isolated, and easy to spread over GPUs or
cores. The child process imports ``mmseg_pat`` as the study's does (the
installed package, or the one on ``PYTHONPATH``): no checkout is needed.
"""
import argparse
import math
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, Optional, Sequence

from mmseg_pat.stack import load_config

from .runs import read_run

#: The module whose ``main`` trains a run in a child process.
ENTRY_POINT = 'mmseg_pat.analysis.training'
#: The log of a run's training process, in its work dir.
TRAIN_LOG = 'train_stdout.log'


def train(config_path: str, work_dir: str) -> None:
    """Train the config at ``config_path`` in ``work_dir`` with MMEngine's
    runner, after :func:`~mmseg_pat.utils.launch.prepare_config`."""
    from mmengine.runner import Runner

    from mmseg_pat.utils.launch import prepare_config

    cfg = load_config(config_path)
    prepare_config(cfg, config_path, 'none', work_dir)
    Runner.from_cfg(cfg).train()


def train_in_subprocess(config_path: str, work_dir: str, threads: int,
                        show_log: bool) -> int:
    """Train one run with :func:`train` in a new Python process; its exit
    code. Its output goes to ``<work_dir>/train_stdout.log`` unless
    ``show_log``."""
    env = dict(os.environ)
    if threads > 0:
        # One thread per run: on a shared machine, a second OpenMP thread
        # that waits for a busy core slows every operation down many times.
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [
        sys.executable, '-m', ENTRY_POINT, config_path, '--work-dir', work_dir
    ]
    if show_log:
        return subprocess.call(command, env=env)
    with open(osp.join(work_dir, TRAIN_LOG), 'w') as log:
        return subprocess.call(
            command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _log_tail(work_dir: str, lines: int = 15) -> str:
    """The last lines of a run's training log, to say why it failed."""
    path = osp.join(work_dir, TRAIN_LOG)
    if not osp.isfile(path):
        return ''
    with open(path) as f:
        return ''.join(f.readlines()[-lines:])


def _has_evaluation(work_dir: str) -> bool:
    """Whether a work dir holds a finished, evaluated run."""
    try:
        read_run(work_dir)
    except (FileNotFoundError, ValueError):
        return False
    return True


def run_one(run: Dict, threads: int, show_log: bool,
            skip_existing: bool) -> Dict:
    """Train (unless done and ``skip_existing``) and read back one run.

    Returns:
        dict: The run's row: ``method``, ``seed``, ``variant``, ``status``
        (``'ok'``, ``'diverged'`` when the last training loss is not
        finite, or ``'failed'`` when the training exits with an error or
        leaves no evaluation) and the metrics of
        :func:`~mmseg_pat.analysis.runs.read_run`.
    """
    row = dict(method=run['method'], seed=run['seed'], variant=run['variant'])
    work_dir = run['work_dir']
    error = None
    if not (skip_existing and _has_evaluation(work_dir)):
        start = time.time()
        code = train_in_subprocess(run['config_path'], work_dir, threads,
                                   show_log)
        print(f'[{run["label"]}] finished in {time.time() - start:.0f} s '
              f'(exit code {code})', flush=True)
        if code != 0:  # the work dir may hold an older run's results
            error = f'training exited with code {code}'
    if error is None:
        try:
            result = read_run(work_dir)
        except (FileNotFoundError, ValueError) as exception:
            error = str(exception)
    if error is not None:
        print(f'[{run["label"]}] FAILED: {error}\n{_log_tail(work_dir)}',
              flush=True)
        return dict(row, status='failed', work_dir=work_dir)
    status = 'ok' if math.isfinite(result['final_loss']) else 'diverged'
    return dict(row, status=status, **result)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Train the run named on the command line (:func:`train`)."""
    parser = argparse.ArgumentParser(
        description='Train one run of a loss study (its config.py)')
    parser.add_argument('config', help='the run\'s config file')
    parser.add_argument(
        '--work-dir', required=True, help='the run\'s work dir')
    args = parser.parse_args(argv)
    train(args.config, args.work_dir)


if __name__ == '__main__':
    main()
