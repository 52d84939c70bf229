"""Running the sparsity sweep: models, bases, progress lines, outputs.

Every (model, setting) runs the model's full task sequence from its
pretrained base with the one forgetting default (the controller's
schedule) and the setting's group-lasso options, in
``<work-dir>/<model>/<setting slug>/``; ``run_sequence`` reuses finished
tasks and resumes an interrupted one, so the sweep continues where it
stopped. A task that reaches its step limit unmet does not stop its
sequence: it misses the bar, which is what the sweep reports.
"""
import json
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from gslora_det.benchmark.data import ensure_data
from gslora_det.benchmark.groups import task_adapter_nonzero
from gslora_det.benchmark.sparsity import (Setting, markdown, plot,
                                           setting_summary, task_row)
from gslora_det.console import LoopProgress, duration
from gslora_det.io_utils import atomic_write_text
from gslora_det.benchmark.sequences import SEQUENCES
from gslora_det.pretrain import REPO
from gslora_det.sequence import (REPORT, SequenceError, run_sequence,
                                 task_dir, task_done)

TAG = '[sparsity]'
#: The outputs' default file stem: <work-dir>/sparsity_sweep.{md,json,png}.
OUTPUT_NAME = 'sparsity_sweep'


@dataclass(frozen=True)
class ModelSpec:
    """A model of the sweep.

    Args:
        pretrain (str): Its detector config (pretrains the base).
        base (str): Its pretrained base (made once if missing).
        tasks (tuple[str]): Its task configs, in order.
        data (str): 'shapes' (generated) or 'bccd' (converted).
    """
    pretrain: str
    base: str
    tasks: Tuple[str, ...]
    data: str = 'shapes'


def _cfg(*parts: str) -> str:
    return osp.join(REPO, 'configs', *parts)


def _sequence_model(name: str, data: str = 'shapes') -> ModelSpec:
    """A built-in sequence's model, as the other benchmarks run it."""
    spec = SEQUENCES[name]
    return ModelSpec(spec['pretrain'], spec['base'], tuple(spec['tasks']),
                     data=data)


MODELS: Dict[str, ModelSpec] = {
    # 3 + 3 layers: 6 groups; the demo's base (`make demo`).
    'shapes': _sequence_model('shapes'),
    # 6 + 6 layers: 12 groups, as the R50 COCO model.
    'shapes6': ModelSpec(
        _cfg('shapes', 'deformable-detr_r18-tiny-6x6_5e_shapes.py'),
        'work_dirs/shapes6/base.pth',
        tuple(_cfg('shapes', 'gslora_deformable-detr_r18-tiny-6x6_'
                   f'task{k}_shapes.py') for k in (1, 2, 3))),
    'bccd': _sequence_model('bccd', data='bccd'),
}


def ensure_base(name: str, spec: ModelSpec) -> str:
    """The model's base checkpoint, pretrained once if missing."""
    if osp.isfile(spec.base):
        return spec.base
    from gslora_det.pretrain import pretrain_once
    return pretrain_once(spec.pretrain, osp.dirname(spec.base) or '.',
                         tag=name, what=f'the {name} base model')


def setting_dir(work_dir: str, model: str, setting: Setting) -> str:
    return osp.join(work_dir, model, setting.slug)


class SweepProgress:
    """``[sparsity] setting i/N (...), task k/M: ... (elapsed, ETA)`` lines;
    the ETA is the mean wall time of the task runs finished in this process
    times the task runs left (finished ones of earlier runs excluded).

    Args:
        settings (int): (model, setting) pairs in the sweep.
        runs_left (int): Task runs not finished yet.
    """

    def __init__(self, settings: int, runs_left: int, tag: str = TAG):
        self.settings, self.left, self.tag = settings, runs_left, tag
        self.t0, self.walls = time.time(), []

    def eta(self) -> str:
        if not self.left:
            return 'nothing left'
        if not self.walls:
            return f'ETA unknown ({self.left} task runs left)'
        mean = sum(self.walls) / len(self.walls)
        return f'ETA {duration(mean * self.left)} ({self.left} task runs left)'

    def say(self, text: str) -> str:
        line = (f'{self.tag} {text} (elapsed '
                f'{duration(time.time() - self.t0)}, {self.eta()})')
        print(line, flush=True)
        return line

    def setting(self, index: int, what: str, tasks: int) -> LoopProgress:
        """The task lines of setting ``index`` (for ``run_sequence``)."""
        return _TaskLines(self, f'setting {index}/{self.settings} ({what})',
                          tasks)


class _TaskLines(LoopProgress):
    """A sequence's task lines, prefixed with the setting, timed for the
    sweep's ETA."""

    def __init__(self, sweep: SweepProgress, prefix: str, tasks: int):
        super().__init__(tasks, 'task', sweep.tag)
        self.sweep, self.prefix = sweep, prefix

    def _task(self, index: int) -> str:
        return f'{self.prefix}, task {index}/{self.total}'

    def start(self, index: int, detail: str = '') -> str:
        self._started[index] = time.time()
        detail = detail.replace(REPO + os.sep, '')
        return self.sweep.say(f'{self._task(index)}: {detail}')

    def end(self, index: int) -> str:
        wall = time.time() - self._started.pop(index, self.t0)
        self.sweep.walls.append(wall)
        self.sweep.left = max(self.sweep.left - 1, 0)
        return self.sweep.say(f'{self._task(index)} finished in '
                              f'{duration(wall)}')

    def skip(self, index: int) -> str:
        return self.sweep.say(f'{self._task(index)} done already')


def _runs_left(work_dir: str, plan) -> int:
    """Task runs of ``plan`` not finished yet."""
    return sum(not task_done(task_dir(setting_dir(work_dir, name, s), k))
               for name, spec, s in plan
               for k in range(1, len(spec.tasks) + 1))


def finished_reports(folder: str, tasks: int,
                     cfg_options: Sequence[str]) -> List[Dict]:
    """The reports of the leading finished tasks of a run folder, if its
    run had ``cfg_options`` (a folder of other options, which
    ``run_sequence`` refused to continue, holds no result of ours)."""
    path = osp.join(folder, 'sequence.json')
    if not osp.isfile(path):
        return []
    with open(path) as f:
        if json.load(f).get('cfg_options') != list(cfg_options):
            return []
    reports = []
    for k in range(1, tasks + 1):
        if not task_done(task_dir(folder, k)):
            break
        with open(osp.join(task_dir(folder, k), REPORT)) as f:
            reports.append(json.load(f))
    return reports


def summarise(results: List[Dict]) -> List[Dict]:
    """Fill in each result's ``summary`` (against α = 0 of its model)."""
    reference = {}
    for res in results:
        if Setting(**res['setting']).is_reference:
            reference[res['model']] = setting_summary(
                res['model'], Setting(**res['setting']), res['rows'],
                None)['h_mean']
    for res in results:
        res['summary'] = setting_summary(
            res['model'], Setting(**res['setting']), res['rows'],
            reference.get(res['model']), res['expected_tasks'])
    return results


def write_outputs(results: List[Dict], work_dir: str, info: Mapping,
                  name: str = OUTPUT_NAME) -> Dict[str, str]:
    """``<work-dir>/<name>.{md,json,png}``, each atomically."""
    prefix = osp.join(work_dir, name)
    summarise(results)
    lines = [f'- {k}: {v}' for k, v in info.items()]
    atomic_write_text(prefix + '.md', '# Sparsity sweep\n\n' +
                      markdown(results) + '\n' + '\n'.join(lines) + '\n')
    atomic_write_text(prefix + '.json', json.dumps(dict(
        units=dict(mAP='0-1', h_mean='0-1', residual='0-1'),
        settings=dict(info), results=results), indent=1))
    plot(results, prefix + '.png')
    return dict(md=prefix + '.md', json=prefix + '.json',
                png=prefix + '.png')


def run_sweep(models: Mapping[str, ModelSpec], settings: Sequence[Setting],
              work_dir: str, cfg_options: Sequence[str] = (),
              info: Optional[Mapping] = None,
              run: Callable = run_sequence,
              out_name: str = OUTPUT_NAME) -> List[Dict]:
    """Run (or finish) every model × setting; write the outputs after each.

    Args:
        models (Mapping[str, ModelSpec]): The models, by name.
        settings (Sequence[Setting]): The settings (:func:`settings_grid`).
        work_dir (str): The sweep's folder.
        cfg_options (Sequence[str]): Overrides for every task run.
        info (Mapping, optional): Written with the outputs.
        run (Callable): ``run_sequence`` (a test passes its own).
        out_name (str): The outputs' file stem in ``work_dir`` (several
            invocations with other options can share one folder of runs).

    Returns:
        list[dict]: Per (model, setting): ``model``, ``setting``, ``rows``
        (:func:`task_row` per finished task), ``error`` and ``summary``.
    """
    plan = [(name, spec, s) for name, spec in models.items() for s in settings]
    total = sum(len(spec.tasks) for _, spec, _ in plan)
    left = _runs_left(work_dir, plan)
    bases = {}
    for name, spec in models.items():
        ensure_data(spec.data)
        bases[name] = ensure_base(name, spec)
    progress = SweepProgress(len(plan), left)
    progress.say(f'{len(models)} model(s) x {len(settings)} setting(s): '
                 f'{total} task runs, {total - left} done already')
    info = dict(info or {}, bases=bases)
    results: List[Dict] = []
    for i, (name, spec, setting) in enumerate(plan, start=1):
        folder = setting_dir(work_dir, name, setting)
        lines = progress.setting(i, f'{name}, {setting.label}',
                                 len(spec.tasks))
        error, options = None, setting.cfg_options() + list(cfg_options)
        try:
            run(list(spec.tasks), bases[name], folder, cfg_options=options,
                continue_on_unmet=True, progress=lines,
                summary_title=f'sparsity sweep: {name}, {setting.label}')
        except SequenceError as err:  # e.g. a diverging task: go on
            error = str(err)
            progress.say(f'setting {i}/{len(plan)} failed: {error}')
        progress.left = _runs_left(work_dir, plan[i:])  # a failure's too
        rows = []
        for k, report in enumerate(
                finished_reports(folder, len(spec.tasks), options), start=1):
            rows.append(dict(task_row(report), adapter_nonzero=(
                task_adapter_nonzero(task_dir(folder, k)))))
        results.append(dict(model=name, setting=asdict(setting),
                            run_dir=folder, expected_tasks=len(spec.tasks),
                            rows=rows, error=error))
        write_outputs(results, work_dir,
                      dict(info, wall_min=round((time.time() - progress.t0)
                                                / 60, 1)), out_name)
    return results
