"""What a loss study compares: the methods, the ready studies and where
their configs and data are.

The evidence study of PAT (arXiv 2404.05393; ``docs/method.md``, section
6) puts every method of :data:`METHODS` on every head of one base config.
The base configs are those shipped with the package, in
``mmseg_pat/.mim/configs`` as MMSeg ships its own (:func:`config_path`);
the data roots are the caller's: a preset's relative ``data_root`` is
relative to the working directory, and a preset that trains on a real
dataset sample finds it through ``--samples`` or ``MMSEG_PAT_SAMPLES``
(:func:`preset_data_root`).
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Union

import mmseg_pat

#: The configs shipped with the package, laid out as the project's
#: ``configs/`` (relative ``_base_`` paths included).
CONFIG_DIR = osp.join(osp.dirname(osp.abspath(mmseg_pat.__file__)), '.mim',
                      'configs')
#: The environment variable that names the folder of the real dataset
#: samples (``oxford_pet/``, ...), when ``--samples`` is not given.
SAMPLES_ENV = 'MMSEG_PAT_SAMPLES'

#: Rare-class sampling as the study uses it (DAFormer's temperature).
RARE_CLASS_SAMPLER = dict(type='RareClassSampler', temperature=0.01)

#: The compared methods: name -> settings. A setting is a loss (a dict),
#: losses added up as MMSeg adds a head's ``loss_decode`` list (a list),
#: or ``dict(loss=..., sampler=...)``: the loss(es) trained with another
#: sampler of the training images. The losses go on every head (an
#: auxiliary head's weight multiplies them). A PATLoss whose confidence is
#: 'previous' (the default) also switches PrevPredictionHook on.
METHODS = {
    'ce': dict(type='CrossEntropyLoss', use_sigmoid=False),
    'focal': dict(type='SoftmaxFocalLoss'),
    'wce': dict(type='WeightedCrossEntropyLoss', class_counts='train_set'),
    'blv': dict(type='BLVLoss', class_counts='train_set'),
    'la': dict(type='LogitAdjustedLoss', class_counts='train_set'),
    # PATLoss's defaults (curve 'ina', confidence 'previous', homogenize
    # 'none'), then one option changed at a time.
    'pat': dict(type='PATLoss'),
    'pat_inap': dict(type='PATLoss', curve='inap'),
    'pat_current': dict(type='PATLoss', confidence='current'),
    'pat_class': dict(type='PATLoss', homogenize='class'),
    'pat_sqrt': dict(type='PATLoss', homogenize='sqrt'),
    # The authors' raw form: current confidence, gradient through the
    # weight, no homogenization, no normalisation.
    'pat_authors': dict(
        type='PATLoss',
        confidence='current',
        detach_weight=False,
        homogenize='none',
        normalize='none'),
    # What users pick instead (issue 24): recall-weighted CE, effective-
    # number class weights, rare-class sampling alone and under PAT, and
    # MMSeg's own region losses as its users combine them.
    'recall': dict(type='RecallLoss'),
    'wce_en': dict(
        type='WeightedCrossEntropyLoss',
        class_counts='train_set',
        weighting='effective_number'),
    'rcs': dict(
        loss=dict(type='CrossEntropyLoss', use_sigmoid=False),
        sampler=RARE_CLASS_SAMPLER),
    'pat_rcs': dict(loss=dict(type='PATLoss'), sampler=RARE_CLASS_SAMPLER),
    # MMSeg's documented combination (loss_ce 1.0 + loss_dice 3.0), with
    # the softmax Dice of a multi-class head.
    'dice_ce': [
        dict(type='CrossEntropyLoss', loss_name='loss_ce', loss_weight=1.0),
        dict(
            type='DiceLoss',
            use_sigmoid=False,
            loss_name='loss_dice',
            loss_weight=3.0)
    ],
    # MMSeg's Lovasz-softmax over the batch (per_image=False needs
    # reduction='none' there).
    'lovasz': dict(
        type='LovaszLoss',
        loss_type='multi_class',
        per_image=False,
        reduction='none'),
}
#: The methods of issue 24 (what users would pick instead of PAT).
ALTERNATIVES = ('recall', 'rcs', 'pat_rcs', 'dice_ce', 'lovasz')

#: The demo's config, relative to :data:`CONFIG_DIR`.
DEMO_CONFIG = 'demo/segformer_long_tail_shapes_pat.py'
# Larger than the demo's 160 / 40 images, so that at imbalance ratio 100
# the rarest class still has a few instances in the validation set.
_STUDY_SHAPES = dict(num_train=800, num_val=400)

#: Variant keys the study applies itself (any other key of a variant is a
#: parameter of a generated dataset, such as ``imbalance_ratio``):
#: ``held_out_breed`` trains on the other breeds of the preset's
#: ``breeds`` and evaluates on this one
#: (:func:`~mmseg_pat.analysis.breed_folds.set_breed_fold`);
#: ``memory_grid`` is PrevPredictionHook's grid, N (N x N cells) or
#: (rows, cols) (:func:`~mmseg_pat.analysis.run_config.set_memory_grid`).
HELD_OUT_BREED = 'held_out_breed'
MEMORY_GRID = 'memory_grid'
#: The breeds of the shared Oxford-IIIT Pet sample (its PROVENANCE.md).
PET_BREEDS = ('Abyssinian', 'Bengal', 'american_bulldog')
#: Memory grids (cells a side) of the ``oxfordpet_grid`` preset.
MEMORY_GRIDS = (16, 32, 64, 128, 256)

# The real Oxford-IIIT Pet sample, SegFormer MiT-B0 from random init, at
# 128 x 128 (each photograph resized to fit 160 x 160 first).
_OXFORD_PET = dict(
    config='_base_/experiments/segformer_oxfordpet.py',
    sample='oxford_pet',
    seeds=(0, 1, 2),
    iters=200,
    shrink=dict(scale=(160, 160), crop=(128, 128), batch_size=4),
    # From random init and for a few hundred iterations, 10x the recipe's
    # learning rate (the head keeps its 10x on top).
    cfg_options={'optim_wrapper.optimizer.lr': 6e-4})
# CE, PAT's defaults and PAT's best setting on this data set.
_PAT_VS_CE = ('ce', 'pat', 'pat_sqrt')

#: Ready studies. Keys: ``config`` (relative to :data:`CONFIG_DIR`, or
#: absolute), ``data_root`` (None: the config's; relative: to the working
#: directory), ``sample`` (instead of ``data_root``: a folder of the real
#: samples, see :func:`preset_data_root`), ``methods``, ``seeds``,
#: ``iters`` (None: the config's), ``val_interval`` (validate every this
#: many iterations, for learning curves; None: once, at the end),
#: ``shrink`` (:func:`~mmseg_pat.analysis.run_config.shrink_config`
#: arguments, skipped with ``shrink=False``), ``generation`` (overrides of
#: a generated dataset's parameters), ``variants`` (one study per variant:
#: generation overrides, each in its own data root, or the keys
#: :data:`HELD_OUT_BREED` and :data:`MEMORY_GRID`), ``breeds`` (those of
#: :data:`HELD_OUT_BREED` folds), ``pool_variants`` (also tabulate all
#: variants together), ``cfg_options``, ``show_log`` (stream the training
#: logs).
PRESETS = {
    'oxfordpet':
    dict(_OXFORD_PET, methods=tuple(METHODS)),
    # Does the gain last? 5x the schedule, validated every 100 iterations.
    'oxfordpet_long':
    dict(_OXFORD_PET, methods=_PAT_VS_CE, iters=1000, val_interval=100),
    # Does it generalise to unseen kinds of images? Leave one breed out.
    'oxfordpet_breeds':
    dict(
        _OXFORD_PET,
        methods=_PAT_VS_CE + ALTERNATIVES,
        breeds=PET_BREEDS,
        variants=[{HELD_OUT_BREED: b} for b in PET_BREEDS],
        pool_variants=True),
    # Which memory resolution? CE runs once: it keeps no memory.
    'oxfordpet_grid':
    dict(
        _OXFORD_PET,
        methods=('ce', 'pat'),
        variants=[{MEMORY_GRID: g} for g in MEMORY_GRIDS]),
    'shapes':
    dict(
        config=DEMO_CONFIG,
        data_root='data/long_tail_shapes_study',
        methods=tuple(METHODS),
        seeds=(0, 1, 2),
        iters=400,
        generation=_STUDY_SHAPES),
    'shapes_imbalance':
    dict(
        config=DEMO_CONFIG,
        data_root='data/long_tail_shapes_imbalance',
        methods=('ce', 'pat', 'pat_inap', 'pat_class', 'pat_sqrt', 'blv') +
        ALTERNATIVES,
        seeds=(0, 1, 2),
        iters=400,
        generation=_STUDY_SHAPES,
        variants=[dict(imbalance_ratio=r) for r in (5.0, 25.0, 100.0)]),
    'demo':
    dict(
        config=DEMO_CONFIG,
        methods=('ce', 'pat'),
        seeds=(0, ),
        show_log=True),
}


def config_path(name: str) -> str:
    """The path of a config shipped with the package, e.g.
    ``config_path('pat/segformer_cityscapes.py')``.

    Raises:
        FileNotFoundError: If the package holds no such config.
    """
    path = osp.join(CONFIG_DIR, name)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'no config {name!r} in {CONFIG_DIR} (the configs installed '
            'with mmseg_pat)')
    return path


def samples_dir(samples: Optional[str] = None) -> Optional[str]:
    """The folder of the real dataset samples (``oxford_pet/``, ...):
    ``samples`` (``--samples``), else the one named by
    ``MMSEG_PAT_SAMPLES``; None if neither is given."""
    samples = samples or os.environ.get(SAMPLES_ENV)
    return osp.abspath(samples) if samples else None


def preset_data_root(preset: Dict,
                     data_root: Optional[str] = None,
                     samples: Optional[str] = None) -> Optional[str]:
    """The data root of a preset's runs: ``data_root`` (``--data-root``),
    else the preset's (its real sample in :func:`samples_dir`); None
    leaves the config's.

    Raises:
        FileNotFoundError: If the preset trains on a real sample that is
            not in :func:`samples_dir` and no ``data_root`` is given.
    """
    if data_root or 'sample' not in preset:
        return data_root or preset.get('data_root')
    sample = preset['sample']
    folder = samples_dir(samples)
    if folder is None:
        raise FileNotFoundError(
            f'this preset trains on the real {sample} sample: pass '
            '--data-root DIR (a data root laid out by '
            'tools/dataset_converters/) or --samples DIR, or set '
            f'{SAMPLES_ENV}=DIR to a folder that holds {sample}/')
    path = osp.join(folder, sample)
    if not osp.isdir(path):
        raise FileNotFoundError(
            f'this preset trains on the real {sample} sample, not found at '
            f'{path!r}: pass --data-root DIR (a data root laid out by '
            'tools/dataset_converters/) or --samples DIR, or set '
            f'{SAMPLES_ENV}=DIR to a folder that holds {sample}/')
    return path


def method_losses(setting: Union[Dict, List[Dict]]) -> List[Dict]:
    """The losses of a method's setting (see :data:`METHODS`)."""
    if isinstance(setting, dict) and 'loss' in setting:
        setting = setting['loss']
    return list(setting) if isinstance(setting, (list, tuple)) else [setting]


def method_sampler(setting: Union[Dict, List[Dict]]) -> Optional[Dict]:
    """The training sampler of a method's setting; None: the config's."""
    if isinstance(setting, dict) and 'loss' in setting:
        return setting.get('sampler')
    return None


def needs_memory(setting: Union[Dict, List[Dict]]) -> bool:
    """Whether a method's loss reads the confidences kept by
    PrevPredictionHook."""
    return any(
        loss['type'] == 'PATLoss'
        and loss.get('confidence', 'previous') == 'previous'
        for loss in method_losses(setting))


def _call(settings: Dict) -> str:
    args = ', '.join(f'{k}={v!r}' for k, v in settings.items() if k != 'type')
    return f'{settings["type"]}({args})'


def describe_loss(setting: Union[Dict, List[Dict]]) -> str:
    """A method's setting as it reads in a config, e.g.
    ``PATLoss(curve='inap')``, ``CrossEntropyLoss(...) + DiceLoss(...)``,
    ``CrossEntropyLoss() with RareClassSampler(temperature=0.01)``."""
    text = ' + '.join(_call(loss) for loss in method_losses(setting))
    sampler = method_sampler(setting)
    return f'{text} with {_call(sampler)}' if sampler else text
