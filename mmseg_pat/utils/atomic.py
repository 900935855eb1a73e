"""Write a file whole or not at all."""
import contextlib
import os
import os.path as osp
import uuid


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
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # a unique name of our own (not mkstemp): the file gets the umask's
    # permissions, like any file the user writes
    tmp = osp.join(folder,
                   f'.{osp.basename(path)}.{uuid.uuid4().hex[:12]}.tmp')
    try:
        with open(tmp, mode.replace('w', 'x')) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
