"""Write a checkpoint for release: weights and meta only, as plain data.

Like MMSeg's ``tools/model_converters/publish_model.py``: the optimizer,
schedulers and message hub are dropped, and the file name gets the first 8
hex digits of its SHA-256. The result loads with
``torch.load(path, weights_only=True)``, so ``mmseg.apis.init_model`` and
MMSeg's tools read it on any torch. The project's own runs already write
plain checkpoints (``PlainCheckpointHook``, ``PrevPredictionHook``); use this
for a release, or to convert an older checkpoint you trust (it is read with
``weights_only=False``, which can run code hidden in the file: only for
files you made or trust).

Example: ``python tools/publish_checkpoint.py work_dirs/run/iter_8000.pth
segformer_cityscapes_pat.pth``
"""
import argparse
import hashlib
import os
import os.path as osp
import sys

import torch


def publish(src: str, dst: str) -> str:
    """Write the weights and meta of ``src`` to ``dst`` with its hash in
    the name; returns the path written."""
    from mmseg_pat.engine.checkpoints import to_plain
    checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    if 'state_dict' not in checkpoint:
        raise ValueError(f'{src} has no state_dict: not an MMEngine '
                         'checkpoint')
    published = {'meta': checkpoint.get('meta', {}),
                 'state_dict': checkpoint['state_dict']}
    to_plain(published)
    torch.save(published, dst)
    with open(dst, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:8]
    stem = dst[:-4] if dst.endswith('.pth') else dst
    final = f'{stem}-{digest}.pth'
    os.replace(dst, final)
    torch.load(final, map_location='cpu', weights_only=True)  # the promise
    return final


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('in_file', help='checkpoint to publish')
    parser.add_argument('out_file', help='output file (.pth)')
    args = parser.parse_args()
    if not osp.isfile(args.in_file):
        sys.exit(f'file not found: {args.in_file}')
    print(publish(args.in_file, args.out_file))


if __name__ == '__main__':
    main()
