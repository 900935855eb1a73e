"""Train configs that differ only in the loss, over seeds, and compare them.

The command line of ``python -m mmseg_pat.analysis.loss_study`` (its
options and presets: ``mmseg_pat/analysis/loss_study.py``), e.g.::

    python tools/analysis/loss_study.py --preset demo --out work_dirs/demo
"""
from mmseg_pat.analysis.loss_study import main

if __name__ == '__main__':
    main()
