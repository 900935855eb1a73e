"""Run a Python script, such as one of MMSeg's own tools, with this
project's configs readable on both OpenMMLab stacks.

Usage::

    python -m mmseg_pat.run SCRIPT [ARGS...]
    python -m mmseg_pat.run mmseg::tools/train.py configs/pat/segformer_nyu.py

``mmseg::PATH`` names a file of MMSeg's installed package
(``mmseg/.mim/PATH``: its ``tools/train.py``, ``tools/test.py``,
``tools/analysis_tools/browse_dataset.py``, ...). The script runs in this
process as ``python SCRIPT ARGS`` would run it, within
:func:`mmseg_pat.stack.mmseg_bases_resolvable`: on the OneDL fork,
MMEngine then finds the ``mmseg::`` bases of the configs, which MMSeg's
own tools cannot read there otherwise (README, "Which OpenMMLab?"). On
upstream OpenMMLab it changes nothing.
"""
import os.path as osp
import runpy
import sys
from typing import List

from mmseg_pat.stack import mmseg_bases_resolvable

MMSEG_PREFIX = 'mmseg::'


def script_path(script: str) -> str:
    """``script``, or the file of MMSeg's package that ``mmseg::PATH``
    names."""
    if not script.startswith(MMSEG_PREFIX):
        return script
    import mmseg
    return osp.join(
        osp.dirname(mmseg.__file__), '.mim', script[len(MMSEG_PREFIX):])


def main(argv: List[str]) -> None:
    if not argv or argv[0] in ('-h', '--help'):
        sys.exit(__doc__)
    script = script_path(argv[0])
    if not osp.isfile(script):
        sys.exit(f'mmseg_pat.run: no such script: {script}')
    # as `python SCRIPT ARGS`: the script's folder first on sys.path, its
    # arguments in sys.argv
    sys.argv = [script, *argv[1:]]
    sys.path.insert(0, osp.dirname(osp.abspath(script)))
    with mmseg_bases_resolvable():
        runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    main(sys.argv[1:])
