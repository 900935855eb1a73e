"""Set-up shared by tools/train.py, tools/test.py and the loss study's runs."""
import os.path as osp
from typing import Optional, Sequence

import torch
from mmengine.config import Config

from mmseg_pat.utils.pat_config import check_pat_applies

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def prepare_config(cfg: Config,
                   config_path: str,
                   launcher: str,
                   work_dir: Optional[str],
                   data_root: Optional[str] = None,
                   used_loaders: Sequence[str] = LOADERS) -> None:
    """Apply what both entry points do before building the runner.

    Points every loader at ``data_root`` if given, refuses missing data
    roots of the ``used_loaders`` and a PAT config on a head PAT cannot
    train, sets the launcher and the work dir (``--work-dir``, else the
    config's, else ``./work_dirs/<config name>``) and runs DDP on CPU-only
    machines over gloo. (``class_counts='train_set'`` is ClassCountsHook's
    business, so configs run the same under MMSeg's own tools.)
    """
    if data_root is not None:
        set_data_root(cfg, data_root)
    check_data_roots(cfg, used_loaders)
    check_pat_applies(cfg)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])
    if launcher != 'none' and not torch.cuda.is_available():
        use_cpu_distributed(cfg)


def _datasets(node):
    """A dataset config and those it wraps (``dataset`` / ``datasets``)."""
    if not isinstance(node, dict):
        return
    yield node
    yield from _datasets(node.get('dataset'))
    for part in node.get('datasets') or ():
        yield from _datasets(part)


def set_data_root(cfg: Config, data_root: str) -> None:
    """Point the datasets of all three loaders (through wrappers) at
    ``data_root``."""
    for loader in LOADERS:
        for dataset in _datasets((cfg.get(loader) or {}).get('dataset')):
            if 'data_root' in dataset or 'type' in dataset and not (
                    dataset.get('dataset') or dataset.get('datasets')):
                dataset['data_root'] = data_root


def check_data_roots(cfg: Config, loaders: Sequence[str] = LOADERS) -> None:
    """Refuse a missing ``data_root`` before anything is built.

    Datasets that make their own data (``GENERATED = True``, such as the
    demo's) are skipped.
    """
    from mmseg.registry import DATASETS
    for loader in loaders:
        for dataset in _datasets((cfg.get(loader) or {}).get('dataset')):
            root = dataset.get('data_root')
            kind = DATASETS.get(dataset.get('type', ''))
            if root and not getattr(kind, 'GENERATED', False) and not (
                    osp.isdir(root)):
                raise FileNotFoundError(
                    f'{loader}: data_root {root!r} does not exist. Prepare '
                    'the dataset (README, "Preparing the datasets") or point '
                    'all loaders to it with --data-root PATH.')


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
