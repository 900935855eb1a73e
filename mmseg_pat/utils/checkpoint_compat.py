"""Let MMEngine 0.10 load a run's own checkpoints on torch >= 2.6.

MMEngine 0.10.7 calls ``torch.load`` without ``weights_only``. Since torch
2.6 that means ``weights_only=True``, which refuses what MMEngine itself
writes into every checkpoint (the message hub's ``HistoryBuffer`` pickles
its statistics functions, reached through ``getattr``), so ``--resume`` and
``load_from`` of a run's own checkpoints fail with "Unsupported global".
Allow-listing ``getattr`` would open the safe loader to arbitrary calls.

Instead, while a runner loads its checkpoint (``TrustedCheckpointsHook``
and ``PrevPredictionHook`` wrap that runner's ``load_or_resume`` with
:func:`trust_during_load`), files under the trusted folders (the run's work
dir, and those a user names) are loaded with ``weights_only=False``; every
other file and URL keeps torch's default safety. Nothing changes at import,
and MMEngine's own loader is back as soon as the load ends, failed or not.
"""
import contextlib
import functools
import os
import os.path as osp
import pickle
from collections import Counter
from typing import Callable, Iterable, List, Optional

import torch
from mmengine.runner.checkpoint import CheckpointLoader

_trusted: Counter = Counter()  # folder (real path) -> runs trusting it
_replaced: Optional[Callable] = None  # MMEngine's local loader, while ours


def _is_trusted(path: str) -> bool:
    real = osp.realpath(osp.expanduser(path))
    return any(real.startswith(folder + os.sep) for folder in _trusted)


def load_checkpoint_file(filename: str, map_location=None):
    """The local-file loader while folders are trusted."""
    if _is_trusted(filename):
        path = osp.expanduser(filename)
        if not osp.isfile(path):
            raise FileNotFoundError(f'{filename} can not be found.')
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        return _replaced(filename, map_location)
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(
            f'{error}\n\nmmseg_pat: {filename} is not under a folder this '
            "run trusts (its work dir), so torch's weights_only safety "
            'applies and refused it. If you trust the file, name its folder '
            "in dict(type='TrustedCheckpointsHook', trusted_dirs=[...]) "
            '(tools/test.py trusts the CHECKPOINT it is given).') from error


def trust_checkpoints(folders: Iterable[str]) -> List[str]:
    """Load checkpoints under ``folders`` in full until released.

    Returns:
        list[str]: The folders as recorded, for :func:`release_checkpoints`.
    """
    global _replaced
    if _replaced is None:
        _replaced = CheckpointLoader._get_checkpoint_loader('')
        CheckpointLoader.register_scheme(
            prefixes='', loader=load_checkpoint_file, force=True)
    recorded = [osp.realpath(osp.expanduser(f)) for f in folders]
    _trusted.update(recorded)
    return recorded


def release_checkpoints(recorded: Iterable[str]) -> None:
    """Undo one :func:`trust_checkpoints`; the last one restores
    MMEngine's own loader."""
    global _replaced
    _trusted.subtract(recorded)
    for folder in [f for f, n in _trusted.items() if n <= 0]:
        del _trusted[folder]
    if not _trusted and _replaced is not None:
        CheckpointLoader.register_scheme(
            prefixes='', loader=_replaced, force=True)
        _replaced = None


@contextlib.contextmanager
def trusted_checkpoints(folders: Iterable[str]):
    """:func:`trust_checkpoints` for the duration of a ``with`` block."""
    recorded = trust_checkpoints(folders)
    try:
        yield
    finally:
        release_checkpoints(recorded)


def run_folders(runner) -> List[str]:
    """Where a runner writes its checkpoints: its work dir, and the
    ``out_dir`` of its CheckpointHook if one is set."""
    folders = [runner.work_dir]
    for hook in runner.hooks:
        out_dir = getattr(hook, 'out_dir', None)
        if type(hook).__name__ == 'CheckpointHook' and isinstance(
                out_dir, str):
            folders.append(out_dir)
    return folders


def trust_during_load(runner, folders: Iterable[str]) -> None:
    """Make ``runner.load_or_resume`` (``--resume``, ``load_from``) load
    checkpoints under ``folders`` in full.

    Only this runner object is touched (an attribute of the instance);
    calling it again adds folders to the same wrapper.
    """
    wrapper = runner.__dict__.get('load_or_resume')
    if not hasattr(wrapper, 'trusted_folders'):
        original = runner.load_or_resume

        @functools.wraps(original)
        def wrapper():
            with trusted_checkpoints(wrapper.trusted_folders):
                return original()

        wrapper.trusted_folders = []
        runner.load_or_resume = wrapper
    wrapper.trusted_folders.extend(folders)
