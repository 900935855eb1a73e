"""Train a segmentor with MMEngine's runner (MMSeg's arguments).

Example: ``python tools/train.py configs/pat/segformer_cityscapes.py``
"""
import argparse
import logging
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

# Run from a checkout without installing: make ``import mmseg_pat`` work.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args():
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        action='store_true',
        default=False,
        help='resume from the latest checkpoint in the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value, e.g. '
        'train_cfg.max_iters=100')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def use_cpu_distributed(cfg):
    """DDP on CPU-only machines (gloo). mmengine 0.10.7's launcher calls
    ``torch.cuda.set_device`` unconditionally, so the process group is made
    here and the runner finds it ready; DDP gets no ``device_ids``."""
    import torch.distributed as dist
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)


def main():
    args = parse_args()
    if not osp.isfile(args.config):
        sys.exit(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        optim_type = cfg.optim_wrapper.type
        if optim_type == 'AmpOptimWrapper':
            print_log(
                'AMP training is already enabled in your config.',
                logger='current',
                level=logging.WARNING)
        else:
            if optim_type != 'OptimWrapper':
                sys.exit('--amp is only supported with OptimWrapper, got '
                         f'{optim_type}')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    cfg.resume = args.resume
    if args.launcher != 'none' and not torch.cuda.is_available():
        use_cpu_distributed(cfg)

    import mmseg_pat  # noqa: F401  (registers modules, checkpoint compat)
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
