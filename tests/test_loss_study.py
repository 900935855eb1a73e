"""The loss study (``mmseg_pat.analysis``) and its command lines
(tools/analysis/loss_study.py, plot_study.py): a tiny study writes the
right tables and learning curves, the mean ± std aggregation is right on a
hand-made table, the runs share one count of the training set, every plot
function writes a PNG, the weight map holds PAT's weights; the studies in
depth: a leave-one-breed-out fold trains and evaluates on disjoint breeds,
the memory grid reaches the hook and CE runs once for all grids."""
import csv
import math
import os
import os.path as osp
import runpy
import shutil

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS, HOOKS

from mmseg_pat import load_config
from mmseg_pat.analysis import (breed_folds, plots, presets, run_config, runs,
                                tables, weight_plots)
from mmseg_pat.models.losses import PATLoss
from mmseg_pat.utils.class_counts import load_class_counts

from conftest import PROJECT, TINY_SHAPES


def _cli(name):
    """``main`` of ``tools/analysis/<name>.py``."""
    path = osp.join(PROJECT, 'tools', 'analysis', f'{name}.py')
    return runpy.run_path(path)['main']


CLASSES = ('background', 'square', 'disc', 'triangle')
# The demo config cut down to a tiny SegFormer on the tiny generated data.
TINY_PRESET = dict(
    config=presets.DEMO_CONFIG,
    methods=('ce', 'pat', 'broken'),
    seeds=(0, ),
    iters=4,
    generation=TINY_SHAPES,
    shrink=dict(scale=(32, 32), crop=(32, 32), batch_size=2),
    cfg_options={
        'model.backbone.embed_dims': 8,
        'model.backbone.num_layers': [1, 1, 1, 1],
        'model.decode_head.in_channels': [8, 16, 40, 64],
        'model.decode_head.channels': 16,
        'model.decode_head.num_classes': len(CLASSES),
    })
# A method that cannot be built: its run fails, the study goes on.
BROKEN = dict(type='PATLoss', curve='no-such-curve')


def _is_png(path):
    with open(path, 'rb') as f:
        return f.read(8) == b'\x89PNG\r\n\x1a\n' and osp.getsize(path) > 1000


def _read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope='module')
def tiny_study(tmp_path_factory, shapes_root):
    """Output folder of a tiny study: ce, pat and a broken method."""
    out = str(tmp_path_factory.mktemp('study'))
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(presets.PRESETS, 'tiny',
                      dict(TINY_PRESET, data_root=shapes_root))
        patch.setitem(presets.METHODS, 'broken', BROKEN)
        summary = _cli('loss_study')(
            ['--preset', 'tiny', '--out', out, '--val-interval', '2'])
    return out, summary


def test_study_writes_run_table(tiny_study):
    out, _ = tiny_study
    rows = _read_csv(osp.join(out, 'runs.csv'))
    assert [(r['method'], r['seed'], r['status']) for r in rows] == [
        ('ce', '0', 'ok'), ('pat', '0', 'ok'), ('broken', '0', 'failed')]
    columns = list(rows[0])
    for column in (*tables.RUN_COLUMNS, 'work_dir', 'checkpoint'):
        assert column in columns, column
    assert [c for c in columns if c.startswith('IoU.')] == [
        f'IoU.{c}' for c in CLASSES]
    for row in rows[:2]:
        assert 0 <= float(row['mIoU']) <= 100
        assert float(row['time_per_iter']) > 0
        assert int(row['iters']) == 4
        assert osp.isfile(row['checkpoint'])


def test_each_run_has_its_loss_hook_and_seed(tiny_study):
    out, _ = tiny_study
    by_method = {r['method']: r
                 for r in _read_csv(osp.join(out, 'runs.csv'))}
    for method, loss_type, hook in (('ce', 'CrossEntropyLoss', False),
                                    ('pat', 'PATLoss', True)):
        cfg = load_config(by_method[method]['config'])
        assert cfg.model.decode_head.loss_decode.type == loss_type
        hooks = [h['type'] for h in cfg.custom_hooks]
        assert ('PrevPredictionHook' in hooks) == hook
        assert 'LoadPixelOrigins' in [
            t['type'] for t in cfg.train_dataloader.dataset.pipeline]
        assert cfg.randomness.seed == 0
        assert cfg.train_cfg.max_iters == 4


def test_runs_share_one_count_of_the_training_set(tiny_study):
    """The study counts the training set once, into runs/class_counts/,
    and each run's config names that file instead of 'train_set'."""
    out, _ = tiny_study
    rows = _read_csv(osp.join(out, 'runs.csv'))
    paths = {r['class_counts'] for r in rows if r['status'] == 'ok'}
    assert len(paths) == 1
    path = paths.pop()
    assert osp.dirname(path) == osp.join(out, 'runs', 'class_counts')
    assert os.listdir(osp.dirname(path)) == [osp.basename(path)]
    assert sum(load_class_counts(path, len(CLASSES))) == (
        TINY_SHAPES['num_train'] * 32 * 32)
    cfg = load_config(rows[0]['config'])
    assert cfg.val_evaluator.class_counts == path


def test_train_set_counts_from_a_relative_cache_dir(shapes_root, tmp_path,
                                                    monkeypatch):
    """Every class_counts='train_set' becomes one absolute path, valid from
    any working directory; a config that asks for none is left alone."""
    cfg = load_config(presets.config_path(presets.DEMO_CONFIG))
    run_config.set_data(cfg, shapes_root, TINY_SHAPES)
    run_config.set_method(cfg, presets.METHODS['wce'])
    monkeypatch.chdir(tmp_path)
    path = run_config.set_train_set_counts(cfg,
                                           osp.join('work_dirs', 'counts'))
    assert path == str(tmp_path / 'work_dirs' / 'counts' /
                       osp.basename(path))
    assert cfg.val_evaluator.class_counts == path
    assert cfg.model.decode_head.loss_decode.class_counts == path
    assert run_config.set_train_set_counts(cfg, 'elsewhere') is None


def test_study_writes_summary_tables(tiny_study):
    out, summary = tiny_study
    rows = _read_csv(osp.join(out, 'results.csv'))
    assert [r['method'] for r in rows] == ['ce', 'pat', 'broken']
    assert rows[2]['failed'] == '1'
    for metric in tables.SUMMARY_METRICS:
        assert f'{metric}_mean' in rows[0] and f'{metric}_std' in rows[0]
    assert math.isclose(summary[1]['mIoU_mean'],
                        float(_read_csv(osp.join(out, 'runs.csv'))[1]['mIoU']))
    with open(osp.join(out, 'results.md')) as f:
        table = f.read()
    for text in ('| method | loss | runs | aAcc | mIoU |', 'tail mIoU',
                 'Δ tail mIoU vs ce', '| ce |', '| pat | `PATLoss()` | 1 |',
                 '1 (1 failed)'):
        assert text in table, text
    with open(osp.join(out, 'COMMAND.txt')) as f:
        command = f.read()
    assert '--preset tiny' in command and 'wall time' in command
    for name in ('per_class_iou.png', 'weighting_curves.png',
                 'pat_weights_example.png', 'learning_curves.png'):
        assert _is_png(osp.join(out, name)), name


def test_validating_every_n_iterations_gives_learning_curves(tiny_study):
    """--val-interval 2 of 4 iterations: two evaluations per run, in
    curves.csv (the last one is the run's result) and curves.md."""
    out, _ = tiny_study
    cfg = load_config(
        _read_csv(osp.join(out, 'runs.csv'))[0]['config'])
    assert (cfg.train_cfg.val_interval, cfg.train_cfg.max_iters) == (2, 4)
    points = _read_csv(osp.join(out, 'curves.csv'))
    assert list(points[0])[:4] == ['method', 'seed', 'variant', 'iter']
    assert [(p['method'], p['iter']) for p in points] == [
        ('ce', '2'), ('ce', '4'), ('pat', '2'), ('pat', '4')]
    runs_by_method = {r['method']: r
                      for r in _read_csv(osp.join(out, 'runs.csv'))}
    for point in points[1::2]:
        assert float(point['mIoU']) == pytest.approx(
            float(runs_by_method[point['method']]['mIoU']))
    with open(osp.join(out, 'curves.md')) as f:
        table = f.read()
    for text in ('| iteration | ce | pat | Δ pat vs ce |', '| 2 |', '| 4 |',
                 'tail mIoU'):
        assert text in table, text


def _row(method, seed, miou, tail, variant='', status='ok'):
    return dict(method=method, seed=seed, variant=variant, status=status,
                mIoU=miou, tail_mIoU=tail)


def test_summarize_hand_made_table():
    rows = [
        _row('ce', 0, 40.0, 10.0),
        _row('ce', 1, 44.0, 14.0),
        _row('pat', 0, 41.0, 20.0),
        _row('pat', 1, 41.0, math.nan),  # e.g. no tail class evaluated
        dict(method='pat', seed=2, variant='', status='failed'),
        _row('ce', 0, 10.0, 1.0, variant='imbalance_ratio=5'),
    ]
    summary = tables.summarize(rows, metrics=('mIoU', 'tail_mIoU'))
    by_key = {(s['variant'], s['method']): s for s in summary}
    ce, pat = by_key[('', 'ce')], by_key[('', 'pat')]
    assert (ce['runs'], ce['failed'], pat['runs'], pat['failed']) == (2, 0,
                                                                      3, 1)
    assert ce['mIoU_mean'] == pytest.approx(42.0)
    assert ce['mIoU_std'] == pytest.approx(math.sqrt(8.0))  # ddof=1
    assert pat['mIoU_std'] == 0.0
    assert pat['tail_mIoU_mean'] == 20.0 and pat['tail_mIoU_std'] == 0.0
    # paired by seed: mIoU 41-40 and 41-44; tail only seed 0 (20-10)
    assert pat['gain_mIoU_mean'] == pytest.approx(-1.0)
    assert pat['gain_mIoU_std'] == pytest.approx(math.sqrt(8.0))
    assert pat['gain_tail_mIoU_mean'] == pytest.approx(10.0)
    assert 'gain_mIoU_mean' not in ce
    single = by_key[('imbalance_ratio=5', 'ce')]
    assert single['mIoU_mean'] == 10.0 and single['mIoU_std'] == 0.0

    table = tables.markdown_table(summary)
    assert '| imbalance_ratio=5 | ce |' in table
    assert '42.00 ± 2.83' in table and '-1.00 ± 2.83' in table
    assert '3 (1 failed)' in table
    # one seed paired on the tail: a gain with no spread to show
    assert (pat['gain_mIoU_pairs'], pat['gain_tail_mIoU_pairs']) == (2, 1)
    assert '| 10.00 |' in table and '10.00 ±' not in table


def test_paired_gains_share_a_baseline_with_no_variant():
    """CE keeps no memory: its runs (no variant) are the baseline of every
    memory grid; pooling variants keeps the pairs by variant and seed."""
    rows = [_row('ce', 0, 40.0, 10.0), _row('ce', 1, 42.0, 12.0)]
    rows += [_row('pat', seed, 40.0 + seed + gain, 10.0 + 2 * seed + gain,
                  f'memory_grid={grid}')
             for grid, gain in ((16, 1.0), (128, 3.0)) for seed in (0, 1)]
    gains = runs.paired_gains(rows, 'ce', 'tail_mIoU')
    assert gains == {('memory_grid=16', 'pat'): (1.0, 0.0, 2),
                     ('memory_grid=128', 'pat'): (3.0, 0.0, 2)}
    folds = [_row('ce', 0, 40.0, 10.0, 'held_out_breed=a'),
             _row('pat', 0, 41.0, 14.0, 'held_out_breed=a'),
             _row('ce', 0, 30.0, 0.0, 'held_out_breed=b'),
             _row('pat', 0, 30.0, 2.0, 'held_out_breed=b')]
    pooled = {e['method']: e
              for e in tables.summarize(tables.pooled(folds))}
    assert pooled['pat']['variant'] == 'all'
    assert pooled['pat']['gain_tail_mIoU_mean'] == pytest.approx(3.0)
    assert pooled['pat']['gain_tail_mIoU_std'] == pytest.approx(math.sqrt(2))
    assert pooled['ce']['mIoU_mean'] == pytest.approx(35.0)


def test_memory_grid_reaches_the_hook_and_ce_runs_once(shapes_root,
                                                       tmp_path):
    preset = dict(TINY_PRESET, data_root=shapes_root, seeds=(0, 1))
    planned = run_config.plan_runs(preset, str(tmp_path), ['ce', 'pat'],
                                   variants=[{presets.MEMORY_GRID: 16},
                                             {presets.MEMORY_GRID: 64}])
    assert [r['label'] for r in planned] == [
        'ce/seed0', 'memory_grid=16/pat/seed0', 'ce/seed1',
        'memory_grid=16/pat/seed1', 'memory_grid=64/pat/seed0',
        'memory_grid=64/pat/seed1']
    assert planned[0]['work_dir'] == str(tmp_path / 'ce' / 'seed0')
    for run in planned:
        cfg = load_config(run['config_path'])
        hooks = [h for h in cfg.custom_hooks
                 if h['type'] == 'PrevPredictionHook']
        if run['method'] == 'ce':
            assert hooks == []
            with pytest.raises(ValueError, match='no PrevPredictionHook'):
                run_config.set_memory_grid(cfg, 16)
            continue
        grid = int(run['variant'].split('=')[1])
        hook = HOOKS.build(hooks[0])
        assert hook.grid == (grid, grid)
        # the other hooks of the config and the data are untouched
        assert cfg.train_dataloader.dataset.data_root == shapes_root
    assert presets.PRESETS['oxfordpet_grid']['variants'] == [
        {presets.MEMORY_GRID: g} for g in (16, 32, 64, 128, 256)]


def test_memory_sizes_are_rows_times_cols_bytes_per_image():
    table = tables.memory_sizes([16, 128])
    # Cityscapes: 2975 images x 128 x 256 cells, one byte each
    assert f'128 x 256: {2975 * 128 * 256 / 2**20:.1f} MiB' in table
    assert f'16 x 16: {3680 * 16 * 16 / 2**20:.1f} MiB' in table
    assert table.count('\n') == 4


def _split(path):
    with open(path) as f:
        return [line.strip() for line in f]


def test_leave_one_breed_out_folds_are_disjoint_by_breed(
        oxford_pet_root, tmp_path):
    """Each fold trains on the other listed breeds (not on a breed outside
    the preset's, here beagle) and evaluates on every image of the held
    out one, from both official lists; the split lists are the run's own,
    the shared data root is not written to."""
    preset = presets.PRESETS['oxfordpet_breeds']
    before = sorted(os.listdir(osp.join(oxford_pet_root, 'annotations')))
    planned = run_config.plan_runs(preset, str(tmp_path), ['ce'], [0],
                                   data_root=oxford_pet_root)
    assert [r['variant'] for r in planned] == [
        f'held_out_breed={b}' for b in presets.PET_BREEDS]
    for run in planned:
        held_out = run['variant'].split('=')[1]
        cfg = load_config(run['config_path'])
        train = _split(cfg.train_dataloader.dataset.ann_file)
        test = _split(cfg.val_dataloader.dataset.ann_file)
        assert cfg.test_dataloader.dataset.ann_file == (
            cfg.val_dataloader.dataset.ann_file)
        assert osp.dirname(cfg.train_dataloader.dataset.ann_file) == osp.join(
            run['work_dir'], 'split')
        train_breeds = {breed_folds.breed_of(n) for n in train}
        assert {breed_folds.breed_of(n) for n in test} == {held_out}
        assert train_breeds == set(presets.PET_BREEDS) - {held_out}
        assert len(test) == {'Abyssinian': 2, 'Bengal': 2,
                             'american_bulldog': 1}[held_out]
        # the dataset reads the run's lists from the shared data root
        with DefaultScope.overwrite_default_scope('mmseg'):
            dataset = DATASETS.build(cfg.val_dataloader.dataset)
        assert [
            osp.basename(dataset.get_data_info(i)['img_path'])
            for i in range(len(dataset))
        ] == [f'{n}.jpg' for n in test]
    assert sorted(os.listdir(osp.join(oxford_pet_root, 'annotations'))) == (
        before)
    with pytest.raises(ValueError, match="'beagle' is not one of"):
        breed_folds.write_breed_fold(oxford_pet_root, 'beagle',
                                     presets.PET_BREEDS,
                                     str(tmp_path / 'beagle'))


def test_set_method_and_iterations():
    cfg = load_config(
        osp.join(PROJECT, 'configs/_base_/experiments/upernet_oxfordpet.py'))
    run_config.set_method(cfg, presets.METHODS['pat_inap'])
    assert cfg.model.decode_head.loss_decode == dict(
        type='PATLoss', curve='inap', loss_weight=1.0)
    assert cfg.model.auxiliary_head.loss_decode.loss_weight == 0.4
    hooks = [h['type'] for h in cfg.custom_hooks]
    assert hooks.count('PrevPredictionHook') == 1
    others = [h for h in hooks if h != 'PrevPredictionHook']
    run_config.set_method(cfg, presets.METHODS['pat_current'])
    assert [h['type'] for h in cfg.custom_hooks] == others

    cfg = load_config(
        osp.join(PROJECT, 'configs/_base_/experiments/segformer_oxfordpet.py'))
    run_config.set_iterations(cfg, 400)  # warm-up 1500 of 40000 iterations
    assert [(s.begin, s.end) for s in cfg.param_scheduler] == [(0, 15),
                                                               (15, 400)]
    assert cfg.train_cfg.max_iters == cfg.train_cfg.val_interval == 400
    with pytest.raises(ValueError, match='iters must be >= 1'):
        run_config.set_iterations(cfg, 0)
    run_config.set_iterations(cfg, 1000, val_interval=100)
    assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval) == (1000,
                                                                     100)
    with pytest.raises(ValueError, match='val_interval must be >= 1'):
        run_config.set_iterations(cfg, 1000, val_interval=0)


def test_set_method_with_loss_lists_and_a_sampler():
    """dice_ce puts MMSeg's loss list on every head (an auxiliary head's
    weight multiplies each), rcs / pat_rcs the rare-class sampler on the
    training loader; the table names all of it."""
    path = osp.join(PROJECT,
                    'configs/_base_/experiments/upernet_oxfordpet.py')
    cfg = load_config(path)
    sampler = cfg.train_dataloader.sampler
    run_config.set_method(cfg, presets.METHODS['dice_ce'])
    assert [(loss['type'], loss['loss_weight'])
            for loss in cfg.model.decode_head.loss_decode] == [
                ('CrossEntropyLoss', 1.0), ('DiceLoss', 3.0)]
    aux = cfg.model.auxiliary_head.loss_decode
    assert [loss['loss_weight'] for loss in aux] == pytest.approx([0.4, 1.2])
    assert cfg.train_dataloader.sampler == sampler  # the config's
    assert not any(h['type'] == 'PrevPredictionHook'
                   for h in cfg.custom_hooks)

    for method, loss in (('rcs', 'CrossEntropyLoss'), ('pat_rcs',
                                                       'PATLoss')):
        cfg = load_config(path)
        run_config.set_method(cfg, presets.METHODS[method])
        assert cfg.train_dataloader.sampler['type'] == 'RareClassSampler'
        assert cfg.model.decode_head.loss_decode['type'] == loss
        has_hook = any(h['type'] == 'PrevPredictionHook'
                       for h in cfg.custom_hooks)
        assert has_hook == (method == 'pat_rcs')
    assert presets.describe_loss(presets.METHODS['dice_ce']) == (
        "CrossEntropyLoss(loss_name='loss_ce', loss_weight=1.0) + "
        "DiceLoss(use_sigmoid=False, loss_name='loss_dice', "
        'loss_weight=3.0)')
    assert presets.describe_loss(presets.METHODS['pat_rcs']) == (
        "PATLoss() with RareClassSampler(temperature=0.01)")


def test_oxfordpet_preset_without_the_sample_says_what_to_pass(
        tmp_path, monkeypatch):
    monkeypatch.setenv('MMSEG_PAT_SAMPLES', str(tmp_path / 'no_samples'))
    out = tmp_path / 'out'
    with pytest.raises(
            SystemExit,
            match=r"--preset oxfordpet: .* sample, not found at '.*"
            r"no_samples/oxford_pet': pass --data-root DIR .* set "
            r'MMSEG_PAT_SAMPLES=DIR to a folder that holds oxford_pet/'):
        _cli('loss_study')(['--preset', 'oxfordpet', '--out', str(out)])
    assert not out.exists()


def test_oxfordpet_preset_data_root(oxford_pet_root, tmp_path, monkeypatch):
    """The sample in MMSEG_PAT_SAMPLES, or the folder of --data-root."""
    samples = tmp_path / 'samples'
    samples.mkdir()
    os.symlink(oxford_pet_root, samples / 'oxford_pet')
    for env, given, data_root in (
        (str(samples), None, str(samples / 'oxford_pet')),
        (str(tmp_path / 'none'), oxford_pet_root, oxford_pet_root),
    ):
        monkeypatch.setenv('MMSEG_PAT_SAMPLES', env)
        planned = run_config.plan_runs(
            presets.PRESETS['oxfordpet'],
            str(tmp_path / 'runs'),
            methods=['ce'],
            seeds=[0],
            data_root=given)
        cfg = load_config(planned[0]['config_path'])
        for loader in ('train_dataloader', 'val_dataloader'):
            assert cfg[loader].dataset.data_root == data_root


def test_samples_from_the_option_else_the_environment(
        oxford_pet_root, tmp_path, monkeypatch):
    """No samples folder is guessed: --samples, else MMSEG_PAT_SAMPLES,
    else an error that says what to pass."""
    monkeypatch.delenv('MMSEG_PAT_SAMPLES', raising=False)
    preset = presets.PRESETS['oxfordpet']
    with pytest.raises(
            FileNotFoundError,
            match=r'real oxford_pet sample: pass --data-root DIR .* or '
            r'--samples DIR, or set MMSEG_PAT_SAMPLES=DIR'):
        presets.preset_data_root(preset)
    samples = tmp_path / 'samples'
    samples.mkdir()
    os.symlink(oxford_pet_root, samples / 'oxford_pet')
    monkeypatch.setenv('MMSEG_PAT_SAMPLES', str(tmp_path / 'none'))
    assert presets.preset_data_root(preset, samples=str(samples)) == str(
        samples / 'oxford_pet')


def _files(root):
    """The bytes of each file under ``root``, by relative path."""
    files = {}
    for folder, _, names in os.walk(root, followlinks=True):
        for name in names:
            with open(osp.join(folder, name), 'rb') as f:
                files[osp.relpath(osp.join(folder, name), root)] = f.read()
    return files


def test_package_ships_the_projects_configs():
    """The presets' configs are those installed with the package
    (mmseg_pat/.mim/configs, as MMSeg's own): the checkout's configs/,
    file for file, relative _base_ paths included."""
    shipped = _files(presets.CONFIG_DIR)
    assert shipped == _files(osp.join(PROJECT, 'configs'))
    assert len([p for p in shipped if p.split(os.sep)[0] in (
        'pat', 'ce', 'blv')]) == 27
    cfg = load_config(presets.config_path('pat/upernet_nyu.py'))
    assert cfg.model.auxiliary_head.loss_decode.type == 'PATLoss'
    with pytest.raises(FileNotFoundError, match="no config 'pat/none.py'"):
        presets.config_path('pat/none.py')


def test_read_run_after_the_work_dir_moved(tiny_study, tmp_path):
    """A moved work dir still finds its checkpoint, and a class-counts path
    that was relative to the training's working directory is found above
    the work dir."""
    out, _ = tiny_study
    ce = next(r for r in _read_csv(osp.join(out, 'runs.csv'))
              if r['method'] == 'ce')
    moved = str(tmp_path / 'project' / 'work_dirs' / 'ce')
    shutil.copytree(ce['work_dir'], moved)
    name = osp.basename(ce['checkpoint'])
    with open(osp.join(moved, 'last_checkpoint'), 'w') as f:
        f.write(f'/no/such/old/place/{name}')
    relative = osp.join('work_dirs', 'counts.json')
    shutil.copy(ce['class_counts'], tmp_path / 'project' / relative)
    config = runs.read_run(moved)['config']
    with open(config) as f:
        text = f.read()
    with open(config, 'w') as f:
        f.write(text.replace(ce['class_counts'], relative))
    cwd = os.getcwd()
    os.chdir(tmp_path)  # where the relative path does not resolve
    try:
        run = runs.read_run(moved)
    finally:
        os.chdir(cwd)
    assert run['checkpoint'] == osp.join(moved, name)
    assert run['class_counts'] == str(tmp_path / 'project' / relative)


def test_plot_functions_write_png(tiny_study, tmp_path):
    out, _ = tiny_study
    rows = runs.load_runs(osp.join(out, 'runs.csv'))
    ce, pat = rows[0], rows[1]
    paths = [
        plots.plot_per_class_iou(rows, str(tmp_path / 'iou.png'),
                                 ce['class_counts']),
        weight_plots.plot_weighting_curves(str(tmp_path / 'curves.png')),
        weight_plots.plot_weight_map(
            runs.read_run(ce['work_dir']),
            runs.read_run(pat['work_dir']),
            str(tmp_path / 'weights.png'),
            image_index=0),
        plots.plot_gain_vs_variant([
            _row(method, seed, 40.0 + seed + gain * ratio, gain * ratio,
                 f'imbalance_ratio={ratio}')
            for ratio in (5, 25) for seed in (0, 1)
            for method, gain in (('ce', 0), ('pat', 1))
        ], str(tmp_path / 'gain.png')),
        plots.plot_gain_vs_variant([
            _row(method, seed, 40.0 + seed + gain, gain,
                 f'held_out_breed={breed}')
            for breed in ('Bengal', 'american_bulldog') for seed in (0, 1)
            for method, gain in (('ce', 0), ('pat', 1), ('pat_sqrt', 2))
        ], str(tmp_path / 'gain_by_breed.png')),
        plots.plot_learning_curves([
            dict(_row(method, seed, 30.0 + step / 10 + gain, gain),
                 iter=step)
            for step in (100, 200, 300) for seed in (0, 1, 2)
            for method, gain in (('ce', 0), ('pat', seed))
        ], str(tmp_path / 'curves.png')),
    ]
    for path in paths:
        assert _is_png(path), path


@pytest.mark.parametrize('curve', ['ina', 'inap'])
@pytest.mark.parametrize('homogenize, power', [('none', 0.0), ('class', 1.0),
                                               ('sqrt', 0.5)])
def test_weight_maps_are_pats_weights(curve, homogenize, power):
    """beta = exp(kappa (1 - q)) / 2 of the true class's softmax q, and
    w = beta / n_k ** p over its mean on the valid pixels (float64)."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 5, generator=generator) * 2
    label = torch.randint(0, 3, (4, 5), generator=generator)
    label[label == 2] = 0  # class 2 absent
    label[0, :2] = 255
    valid = (label != 255).numpy()
    index = torch.where(label == 255, 0, label).numpy()
    q = np.take_along_axis(
        logits.double().softmax(0).numpy(), index[None], 0)[0]
    kappa = dict(ina=3.0, inap=1.0)[curve]
    beta = np.exp(kappa * (1 - q)) / 2
    counts = np.bincount(index[valid], minlength=3)
    weight = np.where(valid, beta / counts[index]**power, 0)
    weight /= weight[valid].mean()

    got_beta, got_weight = weight_plots.pat_weight_maps(
        logits, label, PATLoss(curve=curve, homogenize=homogenize))
    np.testing.assert_allclose(got_beta.numpy()[valid], beta[valid],
                               rtol=1e-5)
    np.testing.assert_allclose(got_weight.numpy(), weight, rtol=1e-5,
                               atol=1e-7)


def test_plot_cli_on_work_dirs(tiny_study, tmp_path, capsys):
    out, _ = tiny_study
    rows = _read_csv(osp.join(out, 'runs.csv'))
    paths = _cli('plot_study')([
        f'ce={rows[0]["work_dir"]}', f'pat={rows[1]["work_dir"]}', '--out',
        str(tmp_path)
    ])
    assert {osp.basename(p) for p in paths} == {
        'per_class_iou.png', 'weighting_curves.png',
        'pat_weights_example.png', 'learning_curves.png'
    }
    assert all(_is_png(p) for p in paths)
    assert str(tmp_path) in capsys.readouterr().out
    report = runs.evaluation_report(rows[1]['work_dir'])
    assert report.startswith('per class results:')
    assert '|  tail |' in report and 'mIoU' in report.splitlines()[-1]


def test_merge_runs_replaces_what_was_trained_again():
    """Earlier runs join the tables unless trained again now; methods are
    listed as METHODS lists them, variants as they came."""
    from mmseg_pat.analysis.study import merge_runs
    now = [dict(method='recall', seed=0, variant='v=1', mIoU=1.0),
           dict(method='ce', seed=0, variant='v=1', mIoU=2.0)]
    earlier = [dict(method='ce', seed=0, variant='v=1', mIoU=9.0),
               dict(method='ce', seed=1, variant='v=1', mIoU=3.0),
               dict(method='pat', seed=0, variant='v=2', mIoU=4.0),
               dict(method='pat', seed=0, variant='v=1', mIoU=5.0)]
    merged = merge_runs(now, earlier)
    assert [(r['variant'], r['method'], r['seed'], r['mIoU'])
            for r in merged] == [('v=1', 'ce', 0, 2.0), ('v=1', 'ce', 1, 3.0),
                                 ('v=1', 'pat', 0, 5.0),
                                 ('v=1', 'recall', 0, 1.0),
                                 ('v=2', 'pat', 0, 4.0)]
    # the earlier study's variant order comes first
    merged = merge_runs(now, [dict(method='ce', seed=0, variant='v=0')])
    assert [r['variant'] for r in merged] == ['v=0', 'v=1', 'v=1']
