"""PlainCheckpointHook: a run's checkpoints as plain data, and a resume
that says what went wrong (see :mod:`mmseg_pat.engine.checkpoints`)."""
from typing import Dict

from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from mmseg_pat.engine.checkpoints import check_resume, from_plain, to_plain


@HOOKS.register_module()
class PlainCheckpointHook(Hook):
    """Write checkpoints that ``torch.load(path, weights_only=True)`` reads
    (MMSeg's ``init_model``, ``MMSegInferencer``, its analysis tools and
    MMEngine's resume on torch >= 2.6), restore them exactly on
    ``--resume``, and stop a resume whose checkpoint is missing with the
    list of those in the work dir.

    ``PrevPredictionHook`` does the same for PAT runs; this hook is for
    runs without it.
    """

    priority = 'VERY_LOW'  # before_save_checkpoint: after the other hooks

    def before_run(self, runner) -> None:
        check_resume(runner, runner.logger)

    def before_save_checkpoint(self, runner, checkpoint: Dict) -> None:
        to_plain(checkpoint)

    def after_load_checkpoint(self, runner, checkpoint: Dict) -> None:
        from_plain(checkpoint)
