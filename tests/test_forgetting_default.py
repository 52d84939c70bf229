"""The one forgetting default: the dataset wrapper, the run-time setup of a
detector config, the forget-terms table and the controller's logic."""
import json
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from gslora_det import controller as ctl
from gslora_det.data import SHAPES_CLASS_NAMES, ForgetRetainCocoDataset
from gslora_det.data.forget_retain_split import (ForgetRetainSplit,
                                                 add_task_meta_keys,
                                                 clear_inner_cache)
from gslora_det.evaluation.forget_probe import class_gt, class_map
from gslora_det.forget_terms import FORGET_TERMS, check_terms
from gslora_det.forgetting_setup import (detector_train_dataset,
                                         forgetting_dataloader,
                                         per_role_batch)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FORGET = ['blue_triangle', 'orange_star']
OLD = ['green_square']


def inner_cfg(ws, pipeline=None):
    return dict(type='CocoDataset',
                data_root=osp.join(str(ws), 'data', 'shapes'),
                metainfo=dict(classes=SHAPES_CLASS_NAMES),
                ann_file='annotations/instances_train.json',
                data_prefix=dict(img='train/'),
                filter_cfg=dict(filter_empty_gt=False),
                pipeline=pipeline or [dict(type='PackDetInputs')])


def split(ws, role, **kw):
    with DefaultScope.overwrite_default_scope('mmdet'):
        args = dict(dataset=inner_cfg(ws), role=role, forget_classes=FORGET,
                    previously_forgotten=OLD, sample_ratio=None)
        args.update(kw)
        out = ForgetRetainSplit(**args)
    clear_inner_cache()
    return out


def ids(ds):
    return [ds.get_data_info(i)['img_id'] for i in range(len(ds))]


@pytest.mark.parametrize('role', ['retain', 'forget'])
@pytest.mark.parametrize('ratio', [None, 0.5])
def test_wrapper_draws_the_subclass_split(workspace, role, ratio):
    """The wrapper and ForgetRetainCocoDataset draw the same images and
    objects from the same file and settings."""
    ws = split(workspace, role, sample_ratio=ratio, forget_keeps_old=True,
               forget_keeps_retained=True)
    with DefaultScope.overwrite_default_scope('mmdet'):
        cfg = inner_cfg(workspace)
        cfg.pop('type')
        cfg.pop('filter_cfg')
        old = ForgetRetainCocoDataset(
            role=role, forget_classes=FORGET, previously_forgotten=OLD,
            sample_ratio=ratio, forget_keeps_old=True,
            forget_keeps_retained=True, **dict(cfg, pipeline=[]))
    assert ids(ws) == ids(old) and len(ws) > 0
    for i in range(len(ws)):
        a, b = ws.get_data_info(i), old.get_data_info(i)
        assert [x['bbox_label'] for x in a['instances']] == \
            [x['bbox_label'] for x in b['instances']]
        assert a['forget_role'] == role
        assert tuple(a['forget_labels']) == (2, 6, 1)  # original numbering


def test_retain_split_holds_no_forgotten_object(workspace):
    ds = split(workspace, 'retain')
    labels = {x['bbox_label'] for i in range(len(ds))
              for x in ds.get_data_info(i)['instances']}
    assert labels and not labels & {1, 2, 6}
    assert ds.metainfo['classes'] == SHAPES_CLASS_NAMES


def test_wrapper_packs_the_task_tags(workspace):
    ds = split(workspace, 'forget')
    sample = ds[0]['data_samples']
    assert sample.metainfo['forget_role'] == 'forget'
    assert tuple(sample.metainfo['forget_labels']) == (2, 6, 1)


def test_meta_keys_are_added_to_the_detectors_own_pack():
    pipe = [dict(type='Resize', scale=(8, 8)),
            dict(type='PackDetInputs', meta_keys=('img_id', 'img_shape'))]
    out = add_task_meta_keys(pipe)
    assert out[1]['meta_keys'] == ('img_id', 'img_shape', 'forget_role',
                                   'forget_labels')
    assert pipe[1]['meta_keys'] == ('img_id', 'img_shape')  # not in place
    default = add_task_meta_keys([dict(type='PackDetInputs')])
    assert 'scale_factor' in default[0]['meta_keys']  # mmdet's defaults kept
    with pytest.raises(ValueError, match='PackDetInputs'):
        add_task_meta_keys([dict(type='Resize', scale=(8, 8))])


def test_unknown_class_is_named(workspace):
    with pytest.raises(ValueError, match="unknown class.*'purple_cow'"):
        split(workspace, 'forget', forget_classes=['purple_cow'])


def test_detector_config_becomes_a_forgetting_dataloader():
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'shapes',
                                   'deformable-detr_r18-tiny_5e_shapes.py'))
    task = dict(forget=FORGET, old=OLD, classes=list(SHAPES_CLASS_NAMES),
                replay={})
    forgetting = dict(replay=dict(sample_ratio=0.2))
    out = forgetting_dataloader(cfg.train_dataloader, task, forgetting)
    assert out['batch_size'] == 16  # 8 + 8: half of the detector's 16 each
    assert out['batch_sampler'] == dict(type='RetainForgetBatchSampler',
                                        forget_per_batch=8)
    parts = out['dataset']['datasets']
    assert [p['role'] for p in parts] == ['retain', 'forget']
    for p in parts:
        assert p['type'] == 'ForgetRetainSplit'
        assert p['dataset']['pipeline'] == cfg.train_dataloader.dataset[
            'pipeline']  # the detector's own pipeline, untouched
        assert p['sample_ratio'] == 0.2 and p['forget_classes'] == FORGET
    assert per_role_batch(dict(batch_size=2), dict(forget_per_batch=3)) == \
        [1, 3]


def test_repeat_wrappers_are_looked_through_and_concat_refused():
    inner = dict(type='CocoDataset', ann_file='a.json')
    assert detector_train_dataset(dict(dataset=dict(
        type='RepeatDataset', times=3, dataset=inner))) == inner
    from gslora_det.config_checks import ConfigError
    with pytest.raises(ConfigError, match='ConcatDataset'):
        detector_train_dataset(dict(dataset=dict(type='ConcatDataset',
                                                 datasets=[inner])))


def test_task_configs_of_the_default_parse_and_carry_no_constant():
    for name in [f'gslora_deformable-detr_r18-tiny{v}_task{k}_shapes.py'
                 for v in ('', '-6x6') for k in (1, 2, 3)]:
        cfg = Config.fromfile(osp.join(REPO, 'configs', 'shapes', name))
        assert cfg.train_cfg.type == 'ForgetTrainLoop'
        assert cfg.model.type == 'GSLoRADeformableDETR'
        assert cfg.model.forget_cfg.terms == ('kept', 'background',
                                             'outrank')
        text = open(osp.join(REPO, 'configs', 'shapes', name)).read()
        for constant in ('beta', 'bound', 'background_weight', 'lr=',
                         'max_iters'):
            assert constant not in text


def test_forget_terms_table_and_checks():
    assert set(FORGET_TERMS) == {'kept', 'background', 'outrank', 'bounded',
                                 'ascent',
                                 'relabel'}
    check_terms(('kept', 'background'))
    with pytest.raises(ValueError, match="unknown term.*'erase'"):
        check_terms(('erase',))
    with pytest.raises(ValueError, match='use one'):
        check_terms(('kept', 'relabel'))


# -- the controller --------------------------------------------------------
CFG = ctl.controller_cfg(dict(patience=2, min_iters=0))
UNMET = dict(map=0.3, own=0.2, any=0.4, objects=10.0)
MET = dict(map=0.0, own=0.0, any=0.0, objects=10.0)


def test_multiplier_rises_while_unmet_and_is_capped():
    state = ctl.initial_state(CFG)
    for k in range(10):
        state = ctl.update(CFG, state, 25 * (k + 1), UNMET, 1.0)
    assert state['multiplier'] == CFG['max_multiplier']  # 2^10 > 64
    assert state['history'][0]['multiplier'] == 1.0
    assert state['history'][1]['multiplier'] == 2.0
    assert state['status'] == 'running'


def test_stops_after_patience_good_checks_and_lowers_on_retain_rise():
    state = ctl.update(CFG, ctl.initial_state(CFG), 25, UNMET, 1.0)
    assert state['multiplier'] == 2.0 and state['retain_ref'] == 1.0
    state = ctl.update(CFG, state, 50, MET, 1.05)  # within 10 %: good
    assert state['multiplier'] == 2.0 and state['met_streak'] == 1
    state = ctl.update(CFG, state, 75, MET, 1.5)  # retained loss up 50 %
    assert state['multiplier'] == 1.0 and state['met_streak'] == 0
    assert state['status'] == 'running'  # the retained classes recover
    state = ctl.update(CFG, state, 100, MET, 1.02)
    state = ctl.update(CFG, state, 125, MET, 1.01)
    assert state['status'] == 'met' and state['multiplier'] == 1.0


def test_unmet_with_retained_up_holds_the_multiplier_for_max_hold_checks():
    state = ctl.update(CFG, ctl.initial_state(CFG), 25, UNMET, 1.0)
    held = ctl.update(CFG, state, 50, UNMET, 1.3)
    assert held['multiplier'] == state['multiplier'] == 2.0
    assert held['history'][-1]['retain_harmed'] is True
    assert held['history'][-1]['held'] is True
    held = ctl.update(CFG, held, 75, UNMET, 1.3)
    assert held['multiplier'] == 2.0 and held['held'] == CFG['max_hold']
    # The third unmet check in a row raises anyway: no stalemate.
    raised = ctl.update(CFG, held, 100, UNMET, 1.3)
    assert raised['multiplier'] == 4.0 and raised['held'] == 0
    assert raised['history'][-1]['held'] is False
    # ...and the hold budget starts afresh.
    assert ctl.update(CFG, raised, 125, UNMET, 1.3)['multiplier'] == 4.0
    never = ctl.controller_cfg(dict(max_hold=0))
    assert ctl.update(never, state, 50, UNMET, 1.3)['multiplier'] == 4.0


def test_the_held_out_retained_map_guards_instead_of_the_loss():
    # Before the task the retained classes score 0.80 on the held-out
    # images; the tolerance is 0.01 (absolute).
    state = ctl.initial_state(CFG, retain_map_ref=0.80)
    # Unmet; the retained loss doubled but the mAP held: not harmed, raise.
    state = ctl.update(CFG, state, 25, UNMET, 1.0, retain_map=0.80)
    state = ctl.update(CFG, state, 50, UNMET, 2.0, retain_map=0.795)
    assert state['multiplier'] == 4.0
    assert state['history'][-1]['retain_harmed'] is False
    assert state['history'][-1]['retain_map'] == 0.795
    # Unmet, the mAP 2 points down (loss flat): harmed, λ held.
    state = ctl.update(CFG, state, 75, UNMET, 1.0, retain_map=0.78)
    assert state['multiplier'] == 4.0 and state['history'][-1]['held']
    # Met while still harmed: λ halves and the task goes on...
    state = ctl.update(CFG, state, 100, MET, 1.0, retain_map=0.78)
    assert state['multiplier'] == 2.0 and state['status'] == 'running'
    # ...until the retained mAP is back within the tolerance twice.
    state = ctl.update(CFG, state, 125, MET, 1.0, retain_map=0.792)
    state = ctl.update(CFG, state, 150, MET, 1.0, retain_map=0.791)
    assert state['status'] == 'met' and state['multiplier'] == 2.0
    done = ctl.finish(CFG, state, 150)
    assert 'retained mAP on held-out training images 80.0 -> 79.1 %' in \
        ctl.describe(CFG, done)


def test_a_task_met_but_not_recovering_stops_after_max_recovery():
    cfg = ctl.controller_cfg(dict(max_recovery=3))
    state = ctl.initial_state(cfg, retain_map_ref=0.80)
    state = ctl.update(cfg, state, 25, UNMET, 1.0, retain_map=0.70)
    # Met, harmed; met and good once (streak 1 < patience 2); harmed again.
    for it, got in ((50, 0.75), (75, 0.795)):
        state = ctl.update(cfg, state, it, MET, 1.0, retain_map=got)
        assert state['status'] == 'running'
    state = ctl.update(cfg, state, 100, MET, 1.0, retain_map=0.78)
    assert state['status'] == 'met' and state['met_run'] == 3
    assert state['retain_recovered'] is False
    line = ctl.describe(cfg, ctl.finish(cfg, state, 100))
    assert 'NOT back within the tolerance after 3 checks' in line
    # An unmet check starts the run afresh.
    state = ctl.update(cfg, ctl.initial_state(cfg, 0.8), 25, MET, 1.0,
                       retain_map=0.7)
    state = ctl.update(cfg, state, 50, UNMET, 1.0, retain_map=0.7)
    assert state['met_run'] == 0


def test_without_a_retained_map_the_loss_still_guards():
    assert ctl.retain_harmed(CFG, dict(retain_ref=1.0, retain_map_ref=0.8),
                             1.2, None)
    assert not ctl.retain_harmed(CFG, dict(retain_ref=1.0), 1.05, None)
    # A state saved before the map guard existed has no retain_map_ref.
    assert ctl.retain_harmed(CFG, dict(retain_ref=1.0), 1.2, 0.1)
    with pytest.raises(ValueError, match='retain_map_tolerance'):
        ctl.controller_cfg(dict(retain_map_tolerance=1.5))


def _toy_split(role):
    """A split of 60 toy images; image k holds class k % 3 (and class a on
    every 5th image); class c is forgotten, 25 % of each role drawn."""
    from mmengine.dataset import BaseDataset

    from gslora_det.data.forget_retain_split import ForgetRetainSplit

    class Toy(BaseDataset):
        METAINFO = dict(classes=('a', 'b', 'c'))

        def load_data_list(self):
            return [dict(img_path=f'{k}.png', img_id=k, instances=[
                dict(bbox=[0, 0, 4, 4], bbox_label=k % 3, ignore_flag=0)] + (
                [dict(bbox=[5, 5, 9, 9], bbox_label=0, ignore_flag=0)]
                if k % 5 == 0 else [])) for k in range(60)]

    return ForgetRetainSplit(Toy(pipeline=[], serialize_data=False),
                             role=role, forget_classes=['c'],
                             sample_ratio=0.25)


def test_forget_probe_takes_held_out_images_first_then_replay():
    from gslora_det.hooks.forget_controller_hook import _forget_probe_infos
    split = _toy_split('forget')  # 20 images hold c: 5 drawn, 15 held out
    infos, held = _forget_probe_infos(split, 18)
    replay = [i['img_path'] for i in split.data_list]
    assert held == 15 and len(infos) == 18
    assert not {i['img_path'] for i in infos[:15]} & set(replay)
    assert [i['img_path'] for i in infos[15:]] == replay[:3]
    # Every probe image holds a forgotten object; the held-out ones only
    # those (the replay's keep their retained objects as positives).
    assert all(any(i['bbox_label'] == 2 for i in info['instances'])
               for info in infos)
    assert all(i['bbox_label'] == 2 for info in infos[:15]
               for i in info['instances'])
    infos, held = _forget_probe_infos(split, 4)  # enough held out
    assert held == 4 and len(infos) == 4


def test_held_out_retain_images_are_never_replay_images():
    split = _toy_split('retain')
    held = split.held_out_infos(10, seed=0)
    replay = {i['img_path'] for i in split.data_list}
    assert len(held) == 10 and not replay & {i['img_path'] for i in held}
    # Retained objects only (the held-out images' c objects are not GT).
    assert all(ins['bbox_label'] in (0, 1) for i in held
               for ins in i['instances'])
    assert held == split.held_out_infos(10, seed=0)  # the same every time
    # 60 images, 44 with a retained object, 11 replay: 33 held out at most.
    assert len(split.held_out_infos(1000)) == 44 - len(replay)


def test_state_saved_before_max_hold_existed_still_updates():
    state = ctl.update(CFG, ctl.initial_state(CFG), 25, UNMET, 1.0)
    del state['held']
    assert ctl.update(CFG, state, 50, UNMET, 1.3)['held'] == 1


def test_unmet_check_resets_the_streak_and_finish_reports_the_limit():
    state = ctl.update(CFG, ctl.initial_state(CFG), 25, MET, 1.0)
    state = ctl.update(CFG, state, 50, UNMET, 1.0)
    assert state['met_streak'] == 0 and state['status'] == 'running'
    done = ctl.finish(CFG, state, 60)
    assert done['status'] == 'limit_reached' and done['steps'] == 60
    line = ctl.describe(CFG, done)
    assert 'NOT met after 60 steps' in line
    # It held once and was lost: the hint names the retained tolerance.
    assert 'held at 1 of 2 checks' in line and 'retain_map_tolerance' in line
    never = ctl.finish(CFG, ctl.update(CFG, ctl.initial_state(CFG), 25,
                                       UNMET, 1.0), 30)
    assert 'retain_map_tolerance' not in ctl.describe(CFG, never)
    assert 'Raise train_cfg.max_iters' in ctl.describe(CFG, never)
    assert ctl.finish(CFG, ctl.update(CFG, state, 60, MET, 1.0),
                      60)['status'] == 'met'


def test_min_iters_delays_the_stop():
    cfg = ctl.controller_cfg(dict(patience=1, min_iters=100))
    state = ctl.update(cfg, ctl.initial_state(cfg), 50, MET, 1.0)
    assert state['status'] == 'running'
    assert ctl.update(cfg, state, 100, MET, 1.0)['status'] == 'met'


def test_the_group_lasso_sets_the_earliest_stop():
    from types import SimpleNamespace

    from gslora_det.detectors.settings import DEFAULT_GROUP_LASSO_CFG
    from gslora_det.group_lasso import earliest_stop
    from gslora_det.hooks.forget_controller_hook import ForgetControllerHook
    gl = dict(DEFAULT_GROUP_LASSO_CFG, alpha=0.03, warmup_iters=100,
              sparsify_iters=100)
    assert earliest_stop(gl, enabled=True) == 200
    assert earliest_stop(gl, enabled=False) == 0  # plain LoRA
    assert earliest_stop(dict(gl, alpha=0.0), enabled=True) == 0
    assert earliest_stop(dict(gl, sparsify_iters=0), enabled=True) == 0

    lines = []
    model = SimpleNamespace(group_lasso_cfg=gl,
                            method_cfg=dict(group_lasso=True))
    runner = SimpleNamespace(model=model, max_iters=150, logger=SimpleNamespace(
        info=lines.append))
    hook = ForgetControllerHook()
    hook.cfg = ctl.controller_cfg(dict(min_iters=50))
    hook._sparsify_floor(runner)
    assert hook.cfg['min_iters'] == 200
    assert 'no early stop before step 200' in lines[0]
    assert 'beyond the step limit 150' in lines[0]
    # A larger min_iters of the controller's own stays.
    hook.cfg = ctl.controller_cfg(dict(min_iters=300))
    hook._sparsify_floor(runner)
    assert hook.cfg['min_iters'] == 300 and len(lines) == 1


def test_controller_settings_are_checked():
    with pytest.raises(ValueError, match='unknown key'):
        ctl.controller_cfg(dict(target=0.1))
    with pytest.raises(ValueError, match='raise_factor'):
        ctl.controller_cfg(dict(raise_factor=0.5))


def test_probe_map_and_residual_on_a_hand_case():
    infos = [dict(instances=[
        dict(bbox=[0, 0, 10, 10], bbox_label=2, ignore_flag=0),
        dict(bbox=[20, 20, 30, 30], bbox_label=0, ignore_flag=0)])]
    gt = class_gt(infos, [2])
    assert gt[0][0].tolist() == [[0, 0, 10, 10]] and gt[0][1].tolist() == [2]
    exact = {0: (np.array([[0., 0, 10, 10]]), np.array([0.9]),
                 np.array([2]))}
    assert class_map(gt, exact, [2]) == pytest.approx(1.0)
    relabelled = {0: (np.array([[0., 0, 10, 10]]), np.array([0.9]),
                      np.array([3]))}
    assert class_map(gt, relabelled, [2]) == 0.0
    assert class_map(gt, {}, [2]) == 0.0


def test_bar_against_hand_values():
    from gslora_det.benchmark.bar import check_bar
    rep = dict(mAP_forget_after=0.01, mAP_old_after=None,
               mAP_retain_before=0.80, mAP_retain_after=0.78,
               residual_after={'residual_num_gt': 200,
                               'residual_own@0.3': 0.005,
                               'residual_any@0.3': 0.02})
    assert check_bar(rep)['met']
    rep['mAP_retain_after'] = 0.76  # drop 0.04 > 0.03
    rep['residual_after']['residual_any@0.3'] = 0.03
    out = check_bar(rep)
    assert not out['met'] and len(out['failed']) == 2
    assert out['retain_drop'] == pytest.approx(0.04)
    # 30 forgotten objects: one of them (3.3 %) may still be boxed.
    few = dict(rep, mAP_retain_after=0.80, residual_after={
        'residual_num_gt': 30, 'residual_own@0.3': 1 / 30,
        'residual_any@0.3': 1 / 30})
    assert check_bar(few)['met']
    few['residual_after']['residual_any@0.3'] = 2 / 30
    assert check_bar(few)['failed'] == ['any 0.0667 > 0.0333']


def test_bar_row_says_when_the_retained_classes_were_not_back():
    from conftest import load_script
    bar = load_script('benchmarks/forgetting_bar.py')
    rep = dict(task=3, forget_classes=['red_circle'], train_time_s=60.0,
               mAP_forget_after=0.0, mAP_old_after=0.0,
               mAP_retain_before=0.85, mAP_retain_after=0.854,
               residual_after={'residual_num_gt': 100, 'residual_own@0.3': 0,
                               'residual_any@0.3': 0},
               controller=dict(status='met', steps=275,
                               retain_recovered=False))
    spec = dict(fixed_steps=300)
    row = bar.row('shapes', spec, rep)
    assert row['controller'] == 'met (retained not back)'
    assert row['bar'] == 'met' and row['steps'] == 275
    rep['controller']['retain_recovered'] = True
    assert bar.row('shapes', spec, rep)['controller'] == 'met'


def test_a_retrained_model_is_measured_against_the_same_bar():
    from gslora_det.benchmark.bar import check_bar, retrained_report

    def run(model, attack, **metrics):
        return dict(model=model, attack=attack, k=None, metrics=metrics)
    report = dict(settings=dict(score_thr=0.3), runs=[
        run('base', 'none', mAP_forget=0.70, mAP_retain=0.80),
        run('retrained', 'none', mAP_forget=0.0, mAP_retain=0.79,
            residual_num_gt=40, **{'residual_own@0.3': 0.0,
                                   'residual_any@0.3': 0.05}),
        # An attacked run of the retrained model is not its bar row.
        run('retrained', 'k_shot', mAP_forget=0.30, mAP_retain=0.70)])
    pseudo = retrained_report(report)
    assert pseudo['mAP_forget_after'] == 0.0
    assert pseudo['mAP_retain_before'] == 0.80
    out = check_bar(pseudo)
    assert out['retain_drop'] == pytest.approx(0.01)
    # 2 of 40 objects still boxed as another class: 5 % > 2 %.
    assert out['failed'] == ['any 0.0500 > 0.0250']
    assert retrained_report(dict(report, runs=report['runs'][:1])) is None


def test_controller_plot_marks_held_checks(tmp_path):
    from gslora_det.report.controller_plot import (controller_figure,
                                                   plot_controller)
    state = ctl.update(CFG, ctl.initial_state(CFG), 25, UNMET, 1.0)
    state = ctl.update(CFG, state, 50, UNMET, 1.3)  # held
    state = ctl.finish(CFG, state, 50)
    section = dict(status=state['status'], steps=state['steps'],
                   trajectory=state['history'], settings=CFG)
    fig = controller_figure(section)
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    labels = [t.get_text() for lg in legends if lg for t in lg.get_texts()]
    assert 'held: unmet, retained harmed' in labels
    # λ and the retained guard (two y axes) share one legend, outside both
    # axes, so that neither hides the other's curve.
    assert len(fig.legends) == 1
    assert {'multiplier λ (before the check)',
            'retained loss'} <= {t.get_text()
                                 for t in fig.legends[0].get_texts()}
    assert osp.getsize(plot_controller(section, str(tmp_path / 'c.png')))


def test_controller_plot_shows_the_held_out_retained_map():
    from gslora_det.report.controller_plot import controller_figure
    state = ctl.initial_state(CFG, retain_map_ref=0.8)
    state = ctl.update(CFG, state, 25, UNMET, 1.0, retain_map=0.6)
    state = ctl.update(CFG, state, 50, MET, 1.0, retain_map=0.79)
    section = dict(status='running', steps=50, settings=CFG,
                   retain_map_ref=0.8, trajectory=state['history'])
    axes = controller_figure(section).axes
    twin = [ax for ax in axes if 'held-out' in ax.get_ylabel()]
    assert len(twin) == 1
    assert list(twin[0].lines[0].get_ydata()) == pytest.approx([60, 79])
    # Its value before the task (solid) and the tolerated fall (dashed).
    assert [ln.get_ydata()[0] for ln in twin[0].lines[1:]] == \
        pytest.approx([80, 79])
    # Without the held-out probe (an old report): the retained loss.
    section.pop('retain_map_ref')
    assert any(ax.get_ylabel() == 'retained loss'
               for ax in controller_figure(section).axes)


def test_bar_reads_a_named_run_with_the_options_it_was_started_with(
        tmp_path):
    from conftest import load_script
    bar = load_script('benchmarks/forgetting_bar.py')
    run = tmp_path / 'sweep_run'
    run.mkdir()
    opts = ['model.group_lasso_cfg.alpha=0.03',
            'forgetting.controller.min_iters=200']
    (run / 'sequence.json').write_text(json.dumps(dict(cfg_options=opts)))
    # named and started elsewhere: its own options, also when restated
    assert bar.sequence_options('shapes', str(run), [], True) == opts
    assert bar.sequence_options('shapes', str(run), opts, True) == opts
    # not named (the benchmark's own folder) or not started: as given
    assert bar.sequence_options('shapes', str(run), ['a=1'], False) == \
        ['a=1']
    assert bar.sequence_options('shapes', str(tmp_path / 'new'), ['a=1'],
                                True) == ['a=1']
    with pytest.raises(SystemExit, match='drop --cfg-options'):
        bar.sequence_options('shapes', str(run), ['a=1'], True)
    rep = dict(task=1, forget_classes=['red_circle'], train_time_s=60.0,
               mAP_forget_after=0.0, mAP_old_after=None,
               mAP_retain_before=0.85, mAP_retain_after=0.85,
               residual_after={'residual_num_gt': 100,
                               'residual_own@0.3': 0, 'residual_any@0.3': 0},
               controller=dict(status='met', steps=350))
    rows = [dict(bar.row('shapes', dict(fixed_steps=300), rep),
                 options=opts),
            dict(bar.row('chess', dict(fixed_steps=None), rep), options=[])]
    md = bar.markdown(rows)
    assert ('shapes ran with --cfg-options '
            '`model.group_lasso_cfg.alpha=0.03` '
            '`forgetting.controller.min_iters=200`') in md
    assert 'chess ran with' not in md
