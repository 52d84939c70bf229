"""The benchmarks' data, prepared once: the generated shapes set and the
real photo sets converted from ``../shared/data`` (never committed)."""

#: Where the real photo sets' originals are read from.
SHARED_DATA = '../shared/data'


def ensure_data(kind: str) -> None:
    """Generate ``data/shapes``, or convert ``data/bccd`` / ``data/chess``,
    unless already there.

    Args:
        kind (str): ``'shapes'`` (also any shapes variant), ``'bccd'`` or
            ``'chess'``.
    """
    if kind == 'bccd':
        from gslora_det.data.bccd import bccd_converted, convert_bccd
        if not bccd_converted('data/bccd'):
            convert_bccd(f'{SHARED_DATA}/bccd', 'data/bccd')
    elif kind == 'chess':
        from gslora_det.data.chess import convert_chess
        convert_chess(f'{SHARED_DATA}/chess', 'data/chess')  # skips if done
    else:
        from gslora_det.data.shapes import (generate_shapes_dataset,
                                            shapes_dataset_ready)
        if not shapes_dataset_ready('data/shapes'):
            generate_shapes_dataset('data/shapes')
