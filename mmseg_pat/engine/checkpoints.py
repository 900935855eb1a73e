"""Checkpoints as plain data, and a resume that says what went wrong.

Since torch 2.6, ``torch.load`` reads only plain data by default
(``weights_only=True``): tensors, numbers, strings, lists, tuples, dicts.
MMEngine 0.10 writes the message hub's ``HistoryBuffer`` objects (NumPy
arrays inside) into every checkpoint, so MMSeg's ``init_model``,
``MMSegInferencer``, its analysis tools and MMEngine's own ``--resume``
refuse the file ("Unsupported global"). :func:`to_plain` turns those
buffers into dicts of lists before a checkpoint is written, and
:func:`from_plain` turns them back when it is read, before MMEngine restores
the message hub, so resuming restores every history exactly.

:func:`check_resume` runs before MMEngine resumes: it follows a work dir
that was copied elsewhere, and stops a resume whose checkpoint is gone with
the list of those that are there.
"""
import glob
import os.path as osp
from typing import Dict, List, Optional

import numpy as np
from mmengine.logging import HistoryBuffer

#: Marks a HistoryBuffer stored as plain data.
PLAIN_BUFFER = 'mmseg_pat.HistoryBuffer'


def _plain_numbers(node):
    """``node`` with NumPy scalars and arrays (such as the message hub's
    ``eta``) made Python numbers and lists, at any depth."""
    if isinstance(node, (np.generic, np.ndarray)):
        return node.tolist()
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _plain_numbers(value)
    elif isinstance(node, list):
        node[:] = [_plain_numbers(value) for value in node]
    return node


def to_plain(checkpoint: Dict) -> None:
    """Replace the message hub's HistoryBuffers by plain dicts, and NumPy
    numbers in its runtime info and the meta by Python's, in place."""
    for key in ('meta', 'message_hub'):
        if isinstance(checkpoint.get(key), dict):
            _plain_numbers(checkpoint[key])
    scalars = checkpoint.get('message_hub', {}).get('log_scalars', {})
    for key, value in scalars.items():
        if isinstance(value, HistoryBuffer):
            logs, counts = value.data
            scalars[key] = {
                'type': PLAIN_BUFFER,
                'log_history': logs.tolist(),
                'count_history': counts.tolist(),
                'max_length': value.max_length,
            }


def from_plain(checkpoint: Dict) -> None:
    """Undo :func:`to_plain`, in place (checkpoints without plain buffers
    are left as they are)."""
    scalars = checkpoint.get('message_hub', {}).get('log_scalars', {})
    for key, value in scalars.items():
        if isinstance(value, dict) and value.get('type') == PLAIN_BUFFER:
            scalars[key] = HistoryBuffer(value['log_history'],
                                         value['count_history'],
                                         value['max_length'])


def _checkpoints_in(folder: str) -> List[str]:
    return sorted(glob.glob(osp.join(folder, '*.pth')), key=osp.getmtime)


def _missing(path: str, work_dir: str) -> FileNotFoundError:
    found = _checkpoints_in(work_dir)
    listing = ('\n  ' + '\n  '.join(found)) if found else ' none'
    hint = (f'\nResume from one of them with --resume {found[-1]} (MMSeg\'s '
            "tools/train.py: --cfg-options load_from=PATH resume=True)"
            if found else '\nStart without --resume, or name a checkpoint.')
    return FileNotFoundError(
        f'cannot resume: the checkpoint {path} does not exist. Checkpoints '
        f'in the work dir {work_dir}:{listing}{hint}')


def check_resume(runner, logger=None) -> Optional[str]:
    """Check, before MMEngine resumes, that the checkpoint it will take is
    there, and follow a work dir that was copied or moved.

    MMEngine resumes ``load_from`` when given, else the file named in the
    work dir's ``last_checkpoint`` (an absolute path). A work dir copied
    elsewhere still names the original's files: when a file of that name
    is in this work dir, ``last_checkpoint`` is pointed at it (and the log
    says so), so the copy resumes from its own checkpoint.

    Returns:
        str | None: The checkpoint that will be resumed, None when the run
        does not resume or finds nothing to resume (MMEngine then starts
        from scratch).

    Raises:
        FileNotFoundError: If the checkpoint to resume does not exist,
            listing the checkpoints of the work dir and the option to use.
    """
    cfg = runner.cfg
    if not cfg.get('resume'):
        return None
    work_dir = osp.abspath(runner.work_dir)
    load_from = cfg.get('load_from')
    if load_from:
        if '://' in load_from or osp.isfile(load_from):
            return load_from
        raise _missing(load_from, work_dir)
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        named = f.read().strip()
    local = osp.join(work_dir, osp.basename(named))
    if osp.abspath(named) != local and osp.isfile(local):
        with open(pointer, 'w') as f:
            f.write(local)
        if logger is not None:
            logger.warning(
                f'{pointer} named {named}, outside this work dir (copied or '
                f'moved from elsewhere); resuming from the copy here, '
                f'{local}.')
        return local
    if not osp.isfile(named):
        raise _missing(named, work_dir)
    return named
