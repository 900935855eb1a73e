"""Evaluate a checkpoint with MMEngine's runner (MMSeg's arguments).

Example: ``python tools/test.py configs/pat/segformer_cityscapes.py
work_dirs/segformer_cityscapes/iter_160000.pth``
"""
import argparse
import os
import os.path as osp
import pickle
import sys

from mmengine.config import DictAction
from mmengine.runner import Runner

from mmseg_pat import load_config


def parse_args():
    parser = argparse.ArgumentParser(description='Evaluate a segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument(
        '--out', help='folder to write the predicted label maps to')
    parser.add_argument(
        '--show-dir', help='folder to write painted predictions to')
    parser.add_argument(
        '--data-root',
        help='the dataset folder, for the train, val and test loaders')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--tta', action='store_true', help='test time aug')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_fitting_checkpoint(runner, checkpoint: str, config: str) -> None:
    """Load the weights, refusing a checkpoint that does not fit the model.

    MMEngine loads ``load_from`` non-strictly: a checkpoint of another
    model (another num_classes, say) would leave layers at random and still
    report an mIoU. torch >= 2.6 reads plain data only: the project's runs
    write plain checkpoints; an older file is refused, saying how to
    convert it.
    """
    try:
        runner.load_checkpoint(checkpoint, strict=True)
    except pickle.UnpicklingError as error:
        sys.exit(f'{checkpoint} is not plain data, which torch >= 2.6 '
                 f'refuses to load ({str(error).splitlines()[0]}). If you '
                 'trust the file, convert it once with: python '
                 f'tools/publish_checkpoint.py {checkpoint} OUT.pth')
    except RuntimeError as error:
        sys.exit(f'{checkpoint} does not fit the model of {config}:\n'
                 f'{error}\nEvaluate it with the config it was trained '
                 'with (same num_classes, backbone and heads).')


def main():
    args = parse_args()
    for path in (args.config, args.checkpoint):
        if not osp.isfile(path):
            sys.exit(f'file not found: {path}')
    cfg = load_config(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.load_from = args.checkpoint
    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    if args.show_dir is not None:
        visualization = cfg.default_hooks.visualization
        visualization['draw'] = True
        visualization['interval'] = 1
        cfg.visualizer['save_dir'] = args.show_dir
    if args.tta:
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model

    # evaluation needs the test set only: the class counts come from the
    # checkpoint (ClassCountsHook)
    from mmseg_pat.utils.launch import prepare_config
    prepare_config(cfg, args.config, args.launcher, args.work_dir,
                   args.data_root, used_loaders=['test_dataloader'])
    runner = Runner.from_cfg(cfg)
    load_fitting_checkpoint(runner, args.checkpoint, args.config)
    runner.test()


if __name__ == '__main__':
    main()
