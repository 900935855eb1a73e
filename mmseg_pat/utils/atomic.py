"""Write a file or a folder whole or not at all.

The file or folder is written under a temporary name beside its place and
renamed into place once complete; an error, Ctrl-C or (for folders) SIGTERM
removes it instead.
"""
import contextlib
import functools
import os
import os.path as osp
import shutil
import signal
import threading
import uuid
from typing import Callable, Iterator, List


def _temporary_path(path: str) -> str:
    """A new hidden name beside ``path``, in a folder that exists.

    A unique name of our own rather than ``mkstemp``/``mkdtemp``: what is
    made under it gets the umask's permissions, like any file or folder the
    user writes, instead of mkdtemp's owner-only ones.
    """
    folder, name = osp.split(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return osp.join(folder, f'.{name}.{uuid.uuid4().hex[:12]}.tmp')


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'w'):
    """Open a temporary file beside ``path``; on success it replaces
    ``path`` in one rename, on any error (Ctrl-C included) it is removed.

    Readers never see a half-written ``path``; concurrent writers each
    write their own temporary file and the last rename wins.

    Args:
        path (str): The file to write.
        mode (str): ``'w'`` (text) or ``'wb'`` (binary). Default: ``'w'``.
    """
    tmp = _temporary_path(path)
    try:
        with open(tmp, mode.replace('w', 'x')) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


# The SIGTERMs that came while a block of _sigterm_raises held the handler;
# one block at a time does, since it takes only SIGTERM's default action.
_sigterms: List[int] = []


def _exit_on_sigterm(signum: int, frame) -> None:
    _sigterms.append(signum)
    raise SystemExit(128 + signum)


def _default_sigterm_in_child() -> None:
    """Give SIGTERM its default action again in a process forked while
    :func:`_exit_on_sigterm` handles it (a worker of a pool).

    A Python handler runs between bytecodes only: a SIGTERM that came just
    before a blocking wait (a worker about to wait for its next task, while
    its pool is terminated) would leave the process waiting for ever.
    """
    if signal.getsignal(signal.SIGTERM) is _exit_on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@functools.lru_cache(maxsize=None)
def _reset_sigterm_after_fork() -> None:
    """Register :func:`_default_sigterm_in_child` once, on first use."""
    if hasattr(os, 'register_at_fork'):  # not on Windows, which never forks
        os.register_at_fork(after_in_child=_default_sigterm_in_child)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[Callable[[], None]]:
    """While the block runs, make a SIGTERM raise ``SystemExit(143)`` in the
    main thread instead of killing the process at once, so that ``finally``
    clauses run; the default action is restored afterwards.

    Nothing changes outside the main thread (where Python cannot set signal
    handlers), nor when SIGTERM is already handled or ignored: then it does
    not kill the process at once. In processes forked in the block, SIGTERM
    keeps its default action.

    Yields:
        callable: Raises ``SystemExit(143)`` if a SIGTERM came. Call it
        before committing the block's work: where the signal arrives in a
        callback whose errors Python only prints (an at-fork hook, a
        ``__del__``), the exception is lost and the block runs on.
    """

    def exit_if_terminated() -> None:
        if _sigterms:
            raise SystemExit(128 + signal.SIGTERM)

    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield exit_if_terminated
        return
    _reset_sigterm_after_fork()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield exit_if_terminated
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _sigterms.clear()


@contextlib.contextmanager
def _new_folder(beside: str) -> Iterator[str]:
    """Make a hidden, empty folder beside ``beside``; remove it, if it is
    still there, when the block ends.

    It is renamed before it is removed: a process that still writes into it
    (a worker of a pool whose parent failed) can then add no file while it
    is removed.
    """
    tmp = _temporary_path(beside)
    os.mkdir(tmp)
    try:
        yield tmp
    finally:
        removed = tmp + '.removed'
        with contextlib.suppress(FileNotFoundError):
            os.rename(tmp, removed)
            shutil.rmtree(removed, ignore_errors=True)


@contextlib.contextmanager
def temporary_folder(beside: str) -> Iterator[str]:
    """Make a hidden, empty folder beside ``beside`` and remove it when the
    block ends: normally, by an error, by Ctrl-C or by SIGTERM.

    While the block runs in the main thread, a SIGTERM that would kill the
    process raises ``SystemExit(143)`` instead, so that the folder is
    removed; the default action is restored when the block ends. Processes
    started in the block (workers of a pool) may write files into the
    folder but must not make folders there: ``os.makedirs`` would make the
    folder again after it is removed.

    Args:
        beside (str): A path; the folder is made in its parent folder,
            created if missing.

    Yields:
        str: The folder's path.
    """
    with _sigterm_raises() as exit_if_terminated, _new_folder(beside) as tmp:
        yield tmp
        exit_if_terminated()


@contextlib.contextmanager
def atomic_folder(out_dir: str, overwrite: bool = False) -> Iterator[str]:
    """Fill a temporary folder that replaces ``out_dir`` once the block
    succeeds; on any failure, SIGTERM included, it is removed and
    ``out_dir`` is left as it was.

    Readers never see a half-written ``out_dir``. The temporary folder is
    made and removed as by :func:`temporary_folder`.

    Args:
        out_dir (str): The folder to write.
        overwrite (bool): Replace an existing, non-empty ``out_dir``.
            Default: ``False``.

    Yields:
        str: The temporary folder to fill.

    Raises:
        FileExistsError: If ``out_dir`` is not empty and not ``overwrite``
            (checked before the block runs).
    """
    if not overwrite and osp.isdir(out_dir) and os.listdir(out_dir):
        raise FileExistsError(
            f'{out_dir!r} is not empty; remove it or pass --overwrite')
    with _sigterm_raises() as exit_if_terminated, _new_folder(out_dir) as tmp:
        yield tmp
        exit_if_terminated()
        if osp.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
