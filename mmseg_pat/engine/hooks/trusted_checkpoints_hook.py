"""TrustedCheckpointsHook: resume and load a run's own checkpoints on
torch >= 2.6 (see :mod:`mmseg_pat.utils.checkpoint_compat`)."""
from typing import Sequence

from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from mmseg_pat.utils.checkpoint_compat import run_folders, trust_during_load


@HOOKS.register_module()
class TrustedCheckpointsHook(Hook):
    """While the runner loads ``load_from`` or resumes, load checkpoints
    under the run's own folders (the work dir, the CheckpointHook's
    ``out_dir``) and ``trusted_dirs`` with ``weights_only=False``, as
    MMEngine 0.10 expects; everything else keeps torch's default safety.

    Args:
        trusted_dirs (Sequence[str]): More folders whose checkpoints you
            trust (e.g. another run's work dir for ``load_from``).
            Default: ().
    """

    priority = 'VERY_HIGH'

    def __init__(self, trusted_dirs: Sequence[str] = ()):
        if isinstance(trusted_dirs, str):
            trusted_dirs = [trusted_dirs]
        self.trusted_dirs = list(trusted_dirs)

    def before_run(self, runner) -> None:
        trust_during_load(runner, [*run_folders(runner), *self.trusted_dirs])
