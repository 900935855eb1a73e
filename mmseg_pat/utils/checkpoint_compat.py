"""Let MMEngine 0.10.7 load checkpoints on torch >= 2.6.

MMEngine 0.10.7 calls ``torch.load`` without ``weights_only``. Since torch
2.6 that means ``weights_only=True``, which refuses what MMEngine itself
writes into every checkpoint (the message hub's ``HistoryBuffer`` pickles
bound methods through ``getattr``), so ``--resume`` and ``load_from`` fail
with "Unsupported global". Allow-listing ``getattr`` would open the safe
loader to arbitrary calls, so instead the local-file and HTTP(S) schemes of
MMEngine's ``CheckpointLoader`` are registered again with loaders that ask
for ``weights_only=False``: the behaviour MMEngine was written for. Only
load checkpoints you trust (your own work dirs, the URLs in configs), as
with any MMEngine release before torch 2.6.
"""
import os
import os.path as osp

import torch
from mmengine.dist import get_dist_info
from mmengine.runner.checkpoint import CheckpointLoader


def load_trusted_local(filename: str, map_location=None):
    """Load a local checkpoint written by MMEngine (or any trusted file)."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def load_trusted_http(filename: str,
                      map_location=None,
                      model_dir=None,
                      progress=os.isatty(0)):
    """Download (rank 0 first) and load a trusted checkpoint URL."""

    def load():
        return torch.hub.load_state_dict_from_url(
            filename,
            model_dir=model_dir,
            map_location=map_location,
            progress=progress,
            weights_only=False)

    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = load()
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = load()
    return checkpoint


def allow_mmengine_checkpoints() -> None:
    """Register the trusted loaders for local paths and HTTP(S) URLs.

    Idempotent; changes nothing on torch versions before 2.6, where
    ``torch.load`` already defaults to ``weights_only=False``.
    """
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_trusted_local, force=True)
    CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=load_trusted_http, force=True)
