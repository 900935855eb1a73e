"""Count the pixels of each class in a config's dataset and save them.

The JSON written here is what the long-tail losses (``BLVLoss``,
``LogitAdjustedLoss``, ``WeightedCrossEntropyLoss``) and
``LongTailIoUMetric`` take as ``class_counts``. Labels are counted as the
dataset's ``LoadAnnotations`` loads them.

Example::

    python tools/analysis/class_statistics.py \\
        configs/pat/segformer_cityscapes.py --out work_dirs/cs_counts.json
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import DictAction
from mmseg.registry import DATASETS
from mmseg.utils import register_all_modules
from prettytable import PrettyTable

# importing mmseg_pat registers the project's datasets
from mmseg_pat import load_config
from mmseg_pat.datasets.class_statistics import (FREQUENCY_GROUPS,
                                                 class_pixel_counts,
                                                 save_class_counts)

SPLITS = ('train', 'val', 'test')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Count the pixels of each class in a dataset')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--split',
        choices=SPLITS,
        default='train',
        help='whose dataloader\'s dataset to count (default: train)')
    parser.add_argument(
        '--out',
        help='JSON file to write (default: '
        'work_dirs/<config name>/class_counts_<split>.json)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value, e.g. '
        'train_dataloader.dataset.data_root=data/cityscapes')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    """Count, write the JSON and print a table; return what was written."""
    args = parse_args(argv)
    if not osp.isfile(args.config):
        sys.exit(f'config file not found: {args.config}')
    cfg = load_config(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    loader = f'{args.split}_dataloader'
    if cfg.get(loader) is None:
        sys.exit(f'{args.config} has no {loader}')
    out = args.out or osp.join(
        'work_dirs',
        osp.splitext(osp.basename(args.config))[0],
        f'class_counts_{args.split}.json')

    # Unscoped type names (LoadAnnotations, ...) resolve to MMSeg's.
    register_all_modules(init_default_scope=True)
    dataset = DATASETS.build(cfg[loader].dataset)
    classes = dataset.metainfo['classes']
    content = save_class_counts(out, class_pixel_counts(dataset), classes)

    group_of = {
        index: group
        for group in FREQUENCY_GROUPS for index in content['groups'][group]
    }
    table = PrettyTable()
    table.field_names = ['Index', 'Class', 'Group', 'Pixels', 'Frequency %']
    for index, name in enumerate(classes):
        table.add_row([
            index, name, group_of[index], content['counts'][index],
            round(content['frequencies'][index] * 100, 4)
        ])
    print(table.get_string())
    print(f'class counts of the {args.split} split written to {out}')
    return content


if __name__ == '__main__':
    main()
