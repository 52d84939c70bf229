"""Merge a task's adapter into a checkpoint, or take it out again.

Usage::

    python tools/apply_adapter.py BASE.pth ADAPTER_DIR -o MERGED.pth [--force]
    python tools/apply_adapter.py MERGED.pth ADAPTER_DIR --unmerge \
        -o BASE_AGAIN.pth [--force]

``ADAPTER_DIR`` is a task's ``adapter/`` folder (``adapter_config.json`` +
``adapter_model.safetensors``; an older single ``adapter.safetensors``
works too). Merging adds ``scaling · B A`` to each adapted layer, as the
task's own merge did, so ``MERGED.pth`` equals the task's ``merged.pth``
within float tolerance; ``--unmerge`` subtracts it again. The layers of a
group whose update is exactly zero (the adapter's ``zero_groups``, which
it does not store) are skipped and keep their weights bit for bit; the
output says which groups were merged and which skipped.

Refused, with the reason:

* a checkpoint whose SHA-256 is not the one the adapter records (the
  task's input for a merge, its merged checkpoint for ``--unmerge``;
  without a record the check is skipped with a warning) -- ``--force``
  goes on anyway;
* a checkpoint whose adapted layers are missing or of another shape, or
  that still holds LoRA tensors (a training checkpoint) -- never forced,
  there is no such merge;
* an output path that is the input checkpoint.

The checkpoint is loaded weights-only; the output is a plain checkpoint
(``meta`` + ``state_dict``, no optimiser state), written atomically.
"""
import argparse
import os.path as osp
import sys
import warnings


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='base checkpoint (merged one '
                        'with --unmerge)')
    parser.add_argument('adapter', help='adapter folder (or a single '
                        'adapter .safetensors file)')
    parser.add_argument('-o', '--out', required=True,
                        help='output checkpoint (never the input)')
    parser.add_argument('--unmerge', action='store_true',
                        help='subtract the adapter from a merged checkpoint')
    parser.add_argument('--force', action='store_true',
                        help='go on when the checkpoint SHA-256 is not the '
                        "adapter's")
    return parser.parse_args(argv)


def _same_file(a: str, b: str) -> bool:
    if osp.exists(a) and osp.exists(b):
        return osp.samefile(a, b)
    return osp.realpath(a) == osp.realpath(b)


def main(argv=None):
    args = parse_args(argv)
    if _same_file(args.out, args.checkpoint):
        sys.exit(f'error: the output {args.out} is the input checkpoint; '
                 'write elsewhere (the input is never overwritten)')
    from gslora_det.adapter import AdapterError, read_adapter
    from gslora_det.apis.adapters import merge_checkpoint
    from gslora_det.checkpoint import save_checkpoint_atomic, sha256_file
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            result = merge_checkpoint(args.checkpoint, args.adapter,
                                      unmerge=args.unmerge, force=args.force)
            _, config = read_adapter(args.adapter)
    except (AdapterError, FileNotFoundError, RuntimeError) as err:
        sys.exit(f'error: {err}')
    for item in caught:
        if issubclass(item.category, UserWarning):
            print(f'warning: {item.message}', file=sys.stderr)
    save_checkpoint_atomic(result, args.out)
    action = 'unmerged from' if args.unmerge else 'merged into'
    record = result['meta']['gslora_adapter']
    print(f'{len(config.layers)} LoRA layers (task {config.task_index}, '
          f'forget {config.forget_classes}) {action} {args.checkpoint}; '
          f'groups {action.split()[0]}: {_names(record["merged_groups"])}; '
          'exactly zero, skipped (weights untouched): '
          f'{_names(record["skipped_zero_groups"])}; wrote {args.out} '
          f'(sha256 {sha256_file(args.out)})')


def _names(groups) -> str:
    """Group names, comma-separated, or 'none'."""
    return ', '.join(groups) if groups else 'none'


if __name__ == '__main__':
    main()
