"""Set-up shared by tools/train.py and tools/test.py."""
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config


def prepare_config(cfg: Config, config_path: str, launcher: str,
                   work_dir: Optional[str]) -> None:
    """Apply what both entry points do before building the runner.

    Sets the launcher and the work dir (``--work-dir``, else the config's,
    else ``./work_dirs/<config name>``), runs DDP on CPU-only machines over
    gloo, and fills in ``class_counts='train_set'``.
    """
    from mmseg_pat.datasets import resolve_class_counts
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])
    if launcher != 'none' and not torch.cuda.is_available():
        use_cpu_distributed(cfg)
    resolve_class_counts(cfg, cfg.work_dir)


def use_cpu_distributed(cfg: Config) -> None:
    """DDP on CPU-only machines (gloo).

    mmengine 0.10.7's launcher calls ``torch.cuda.set_device``
    unconditionally, so the process group is made here (from torchrun's
    environment) and the runner finds it ready; DDP gets no ``device_ids``.
    SyncBN layers need GPUs: use ``BN`` in such configs.
    """
    import torch.distributed as dist
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)
