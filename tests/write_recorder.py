"""A test-only hook recording which images each rank wrote, per iteration.

Imported by the DDP test's config through ``custom_imports``.
"""
import json
import os.path as osp

from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class WriteRecorderHook(Hook):

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        rank = get_dist_info()[0]
        record = dict(
            iter=runner.iter,
            images=[s.sample_idx for s in data_batch['data_samples']])
        path = osp.join(runner.work_dir, f'writes_rank{rank}.jsonl')
        with open(path, 'a') as f:
            f.write(json.dumps(record) + '\n')
