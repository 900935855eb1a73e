"""One training run per folder: a lock file naming its owner."""
import contextlib
import json
import os
import os.path as osp
import socket
import threading
import time
import uuid
from typing import Dict, Optional

LOCK_FILE = 'lock.json'


class DirectoryInUseError(RuntimeError):
    """Another live training run owns the folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class DirectoryLock:
    """Marks ``directory`` as written by one training run.

    The lock file holds the owner's host, pid, run id and start time. The
    ranks and nodes of one run share a run id, so a folder that several of
    them see (one node's ranks, nodes on a shared file system) has one
    owner and is not refused to the others.

    A lock whose owner has ended is taken over: on the owner's host when
    its pid is gone; from another host (a job requeued on another node of a
    shared file system) when its heartbeat has stopped. The owner touches
    the lock file every ``heartbeat_s`` seconds from a background thread;
    a lock from another host is watched for ``2.5 * heartbeat_s`` and taken
    over if its modification time did not change (no comparison between
    the clocks of two hosts).

    Args:
        directory (str): The folder to lock.
        run_id (str): Identifies the run, the same on all its ranks (e.g.
            MMEngine's ``runner.experiment_name``).
        heartbeat_s (float): Seconds between two touches of the lock file by
            its owner. Default: 30.
    """

    def __init__(self, directory: str, run_id: str, heartbeat_s: float = 30.0):
        if not heartbeat_s > 0:
            raise ValueError(f'heartbeat_s must be > 0, got {heartbeat_s}')
        self.directory = directory
        self.path = osp.join(directory, LOCK_FILE)
        self.run_id = run_id
        self.heartbeat_s = heartbeat_s
        self.owned = False
        self._stop_beating: Optional[threading.Event] = None

    def _read(self) -> Optional[Dict]:
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: treated as held by an unknown run

    def _describe(self, owner: Dict) -> str:
        return (f"the training run {owner.get('run', '?')!r} (pid "
                f"{owner.get('pid', '?')} on host {owner.get('host', '?')}, "
                f"since {owner.get('started', '?')})")

    def acquire(self, logger=None) -> bool:
        """Take the lock for this run.

        Returns:
            bool: True if this process now owns the folder, False if
            another process of the same run does.

        Raises:
            DirectoryInUseError: If a live process of another run owns it.
        """
        os.makedirs(self.directory, exist_ok=True)
        content = dict(host=socket.gethostname(), pid=os.getpid(),
                       run=self.run_id,
                       started=time.strftime('%Y-%m-%d %H:%M:%S'))
        tmp = f'{self.path}.{uuid.uuid4().hex[:12]}.tmp'
        with open(tmp, 'w') as f:
            json.dump(content, f)
        try:
            for _ in range(2):
                try:
                    # link() creates the lock with its content in one step,
                    # or fails if it exists: no reader sees it half written
                    os.link(tmp, self.path)
                    self.owned = True
                    self._start_heartbeat()
                    return True
                except FileExistsError:
                    owner = self._read()
                if owner is None:
                    continue  # released meanwhile: try again
                if owner.get('run') == self.run_id:
                    return False
                if self._has_ended(owner, content['host'], logger):
                    if logger is not None:
                        logger.warning(
                            f'{self.path}: taking over from '
                            f'{self._describe(owner)}, which has ended')
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.path)
                    continue
                raise DirectoryInUseError(
                    f'{self.directory} is in use by {self._describe(owner)}. '
                    'Two training runs must not share a prediction memory: '
                    'give this run another work dir (--work-dir) or '
                    'PrevPredictionHook(memory_dir=...). If that run has '
                    f'ended, delete {self.path}.')
            raise DirectoryInUseError(
                f'could not take the lock {self.path}; retry, or delete it '
                'if no training run uses this folder')
        finally:
            os.remove(tmp)

    def _has_ended(self, owner: Dict, host: str, logger) -> bool:
        """Whether the lock's owner has ended: its pid is gone (same host)
        or its heartbeat has stopped (another host)."""
        pid = owner.get('pid')
        if owner.get('host') == host and isinstance(pid, int):
            return pid == os.getpid() or not _pid_alive(pid)
        wait = 2.5 * self.heartbeat_s
        if logger is not None:
            logger.info(f'{self.path}: held by {self._describe(owner)}; '
                        f'watching its heartbeat for {wait:.0f} s')
        try:
            before = os.stat(self.path).st_mtime_ns
            time.sleep(wait)
            return (os.stat(self.path).st_mtime_ns == before
                    and self._read() == owner)
        except FileNotFoundError:
            return True  # released meanwhile

    def _start_heartbeat(self) -> None:
        stop = self._stop_beating = threading.Event()

        def beat():
            while not stop.wait(self.heartbeat_s):
                with contextlib.suppress(OSError):
                    os.utime(self.path)

        threading.Thread(
            target=beat, name='DirectoryLock heartbeat', daemon=True).start()

    def release(self) -> None:
        """Remove the lock if this process owns it."""
        if not self.owned:
            return
        self._stop_beating.set()
        owner = self._read()
        if owner and owner.get('run') == self.run_id and owner.get(
                'pid') == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        self.owned = False
