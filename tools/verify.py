"""Check a merged checkpoint against its task's audit manifest.

Usage::

    python tools/verify.py work_dirs/run/task_1/merged.pth \
        work_dirs/run/task_1/manifest.json \
        [--config CFG] [--data-root data/shapes/] [--ann-file FILE] \
        [--cfg-options key=value ...] [--tolerance 1e-5] \
        [--map-tolerance 0.005] [--max-forget-map 0.05] [--skip-eval]

1. the SHA-256 of the input checkpoint, the adapter's weights and the
   merged checkpoint equal the manifest's (and those an adapter folder's
   ``adapter_config.json`` records);
2. input + adapter = merged: every tensor of the merged state dict is
   recomputed from the input checkpoint and the adapter (the merge of
   ``tools/apply_adapter.py``, with the adapter's own scaling) to within
   ``--tolerance``, with the same keys;
3. (unless ``--skip-eval``) the forgotten classes are re-evaluated on the
   test data given on the command line (the config defaults to the one the
   manifest recorded) and ``mAP_forget`` matches the manifest's within
   ``--map-tolerance`` and is at most ``--max-forget-map`` when given.

Exits 1 with one ``MISMATCH`` line per failed check, 0 with a short
"verified" summary. Checkpoints load weights-only; adapters only from
safetensors. The adapter and the input checkpoint are found through the
manifest (``--adapter`` / ``--input-checkpoint`` override); the adapter is
the task's ``adapter/`` folder or its single-file copy
``adapter.safetensors`` (the same bytes as the folder's weights).
"""
import argparse
import os
import os.path as osp
import sys
import tempfile

from mmengine.config import Config, DictAction


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('merged', help='the merged checkpoint to check')
    parser.add_argument('manifest', help="the task's manifest.json")
    parser.add_argument('--adapter', help='adapter folder or file '
                        "(default: the manifest's, next to it, else the "
                        'adapter/ folder there)')
    parser.add_argument('--input-checkpoint', help="input checkpoint "
                        "(default: the manifest's)")
    parser.add_argument('--config', help="test config (default: the config "
                        'recorded in the manifest)')
    parser.add_argument('--data-root', help='test data root to evaluate on')
    parser.add_argument('--ann-file', help='test annotation file, relative '
                        'to the data root')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--tolerance', type=float, default=1e-5,
                        help='max |merged - (input + adapter)| per weight, '
                        'absolute and relative (default 1e-5)')
    parser.add_argument('--map-tolerance', type=float, default=5e-3,
                        help='max |mAP_forget - manifest| (0-1 scale, '
                        'default 0.005)')
    parser.add_argument('--max-forget-map', type=float,
                        help='fail when the re-measured mAP_forget is above')
    parser.add_argument('--skip-eval', action='store_true',
                        help='check hashes and the merge only')
    parser.add_argument('--work-dir', help='logs of the evaluation '
                        '(default: a temporary folder)')
    return parser.parse_args()


def check_hashes(manifest: dict, paths: dict, failures: list) -> None:
    """Recompute the three SHA-256 and compare them to the manifest (an
    adapter folder: its weights file, and its config's records)."""
    from gslora_det.adapter import weights_file
    from gslora_det.checkpoint import sha256_file
    if osp.isdir(paths['adapter']):
        check_adapter_records(manifest, paths['adapter'], failures)
    for key, path in paths.items():
        path = weights_file(path) if key == 'adapter' else path
        expected = manifest['files'][key].get('sha256')
        if not osp.isfile(path):
            failures.append(f'{key} {path}: file not found')
            continue
        found = sha256_file(path)
        if found != expected:
            failures.append(f'{key} {path}: sha256 expected {expected}, '
                            f'found {found}')


def check_adapter_records(manifest: dict, folder: str,
                          failures: list) -> None:
    """An adapter folder's recorded input / merged SHA-256 are the
    manifest's (it is this task's adapter)."""
    import json
    from gslora_det.adapter import CONFIG_NAME
    try:
        with open(osp.join(folder, CONFIG_NAME)) as f:
            config = json.load(f)
    except (OSError, ValueError) as err:
        failures.append(f'adapter {folder}: unreadable config ({err})')
        return
    for key, file_key in (('base_checkpoint_sha256', 'input_checkpoint'),
                          ('merged_checkpoint_sha256', 'merged_checkpoint')):
        expected = manifest['files'][file_key].get('sha256')
        if config.get(key) and expected and config[key] != expected:
            failures.append(f'adapter {folder}: {key} {config[key]} is not '
                            f"the manifest's {file_key} sha256 {expected}")


def check_merge(paths: dict, tolerance: float, failures: list) -> str:
    """Recompute input + adapter and compare every merged tensor."""
    import torch
    from gslora_det.adapter import AdapterError, read_adapter
    from gslora_det.apis.adapters import merge_weights
    from gslora_det.checkpoint import load_checkpoint_safely, state_dict_of
    try:
        base = state_dict_of(load_checkpoint_safely(
            paths['input_checkpoint']))
        merged = state_dict_of(load_checkpoint_safely(
            paths['merged_checkpoint']))
        tensors, config = read_adapter(paths['adapter'])
    except Exception as err:  # missing, unreadable, or not weights-only
        failures.append(f'merge: cannot load the files ({err})')
        return ''
    if config.scaling is None:
        failures.append(f'adapter {paths["adapter"]}: no "scaling" in its '
                        'metadata')
        return ''
    try:
        rebuilt = merge_weights(base, tensors, config)
    except (AdapterError, KeyError, RuntimeError) as err:
        failures.append(f'adapter {paths["adapter"]} does not fit the '
                        f'input checkpoint: {err!r}')
        return ''
    missing = sorted(set(rebuilt) - set(merged))
    extra = sorted(set(merged) - set(rebuilt))
    if missing or extra:
        failures.append(f'merged {paths["merged_checkpoint"]}: keys differ '
                        f'from input + adapter (missing {missing[:5]}, '
                        f'unexpected {extra[:5]})')
    worst, worst_key, bad = 0.0, None, []
    for key in sorted(set(rebuilt) & set(merged)):
        a, b = rebuilt[key], merged[key]
        if a.shape != b.shape:
            bad.append(f'{key} shape {tuple(b.shape)} != {tuple(a.shape)}')
            continue
        if not (a.is_floating_point() or b.is_floating_point()):
            if not torch.equal(a, b):
                bad.append(f'{key} differs')
            continue
        diff = (a.double() - b.double()).abs()
        err = float(diff.max()) if diff.numel() else 0.0
        if err > worst:
            worst, worst_key = err, key
        if not torch.allclose(b.double(), a.double(), rtol=tolerance,
                              atol=tolerance):
            bad.append(f'{key} (max |diff| {err:.3g})')
    if bad:
        failures.append(f'merged {paths["merged_checkpoint"]} != input + '
                        f'adapter (tolerance {tolerance:g}) at {len(bad)} '
                        f'tensor(s): {", ".join(bad[:3])}')
    return (f'merged = input + adapter ({len(merged)} tensors, max |diff| '
            f'{worst:.2g}' + (f' at {worst_key}' if worst_key else '') + ')')


def check_forgetting(args, manifest: dict, failures: list) -> str:
    """Re-evaluate ``mAP_forget`` and compare it to the manifest."""
    from gslora_det.config_checks import ConfigError
    from gslora_det.evaluation.evaluate import (prepare_forgetting_test,
                                                run_test, set_test_data,
                                                strip_prefix)
    if args.config:
        cfg = Config.fromfile(args.config)
    elif manifest.get('config_text'):
        cfg = Config.fromstring(manifest['config_text'], '.py')
    else:
        sys.exit('error: the manifest holds no config text; pass --config')
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    set_test_data(cfg, args.data_root, args.ann_file)
    cfg.load_from = args.merged
    cfg.resume = False
    classes = manifest['classes']
    with tempfile.TemporaryDirectory() as tmp:
        cfg.work_dir = args.work_dir or tmp
        try:
            prepare_forgetting_test(cfg, classes['forget'],
                                    classes['previously_forgotten'])
        except ConfigError as err:
            sys.exit(f'error: {err}')
        metrics = strip_prefix(run_test(cfg)[0])
    found = metrics.get('mAP_forget')
    expected = manifest['metrics']['after'].get('mAP_forget')
    if found is None:
        failures.append('mAP_forget: the test data hold no object of the '
                        f'forgotten classes {classes["forget"]}')
        return ''
    if expected is not None and abs(found - expected) > args.map_tolerance:
        failures.append(f'mAP_forget: expected {expected:.4f} (manifest), '
                        f'found {found:.4f} (tolerance '
                        f'{args.map_tolerance:g})')
    if args.max_forget_map is not None and found > args.max_forget_map:
        failures.append(f'mAP_forget: found {found:.4f}, above '
                        f'--max-forget-map {args.max_forget_map:g}')
    res = metrics.get('residual_any@0.3')
    shown = '–' if expected is None else f'{expected:.4f}'
    return (f'mAP_forget {found:.4f} (manifest {shown})' +
            ('' if res is None else f', residual any@0.3 {res:.3f}'))


def main():
    args = parse_args()
    from gslora_det.report.manifest import manifest_file, read_manifest
    try:
        manifest = read_manifest(args.manifest)
    except (OSError, ValueError) as err:
        sys.exit(f'error: {err}')
    adapter = args.adapter or manifest_file(manifest, 'adapter',
                                            args.manifest)
    from gslora_det.adapter import ADAPTER_DIR
    folder = osp.join(osp.dirname(osp.abspath(args.manifest)), ADAPTER_DIR)
    if not args.adapter and not osp.isfile(adapter) and osp.isdir(folder):
        adapter = folder  # the single-file copy was not kept
    paths = dict(
        input_checkpoint=args.input_checkpoint or manifest_file(
            manifest, 'input_checkpoint', args.manifest),
        adapter=adapter, merged_checkpoint=args.merged)
    failures = []
    check_hashes(manifest, paths, failures)
    done = ['3 sha256 match' if not failures else '']
    method_cfg = (manifest.get('settings') or {}).get('method_cfg') or {}
    if method_cfg.get('use_lora', True):
        done.append(check_merge(paths, args.tolerance, failures))
    else:  # a full fine-tuning baseline: its adapter file is empty
        done.append(f'method {manifest["settings"].get("method")!r} trains '
                    'the weights directly, so merged = input + adapter does '
                    'not apply')
    if not args.skip_eval:
        done.append(check_forgetting(args, manifest, failures))
    if failures:
        for line in failures:
            print(f'MISMATCH: {line}', file=sys.stderr)
        sys.exit(1)
    print(f'verified: task {manifest["task"]} '
          f'({", ".join(manifest["classes"]["forget"])} forgotten): ' +
          '; '.join(d for d in done if d))


if __name__ == '__main__':
    os.environ.setdefault('LOCAL_RANK', '0')
    main()
