"""Multi-process training on machines without CUDA (gloo backend).

mmengine's launchers assume GPUs: ``init_dist`` calls
``torch.cuda.set_device(local_rank)`` before it creates the process group,
and the Runner's default DDP wrapper passes ``device_ids=[LOCAL_RANK]``;
both fail on a CPU-only machine (``nccl`` needs CUDA anyway). When CUDA is
absent, :func:`setup_cpu_distributed` switches ``env_cfg.dist_cfg.backend``
to ``gloo``, creates the process group itself (the Runner skips
``init_dist`` when one exists) and wraps the model in DDP without
``device_ids``. With CUDA it does nothing: the config's backend is used.
"""
import datetime
import os
import subprocess

import torch
import torch.distributed as dist


class LaunchError(RuntimeError):
    """A launcher environment that cannot start, with the fix."""


_HOW = dict(pytorch='torchrun / tools/dist_train.sh',
            slurm='srun / tools/slurm_train.sh', mpi='mpirun')


def _require(names, launcher: str) -> None:
    missing = [n for n in names if n not in os.environ]
    if missing:
        raise LaunchError(
            f'--launcher {launcher} needs the environment variable(s) '
            f'{", ".join(missing)}; start the command through '
            f'{_HOW[launcher]}, or drop --launcher for one process')


def _set_env_from_launcher(launcher: str) -> None:
    """Fill RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT the
    way mmengine's ``_init_dist_slurm`` / ``_init_dist_mpi`` do."""
    env = os.environ
    if launcher == 'pytorch':
        _require(['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'],
                 launcher)
        return
    if launcher == 'slurm':
        _require(['SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'],
                 launcher)
        env['RANK'] = env['SLURM_PROCID']
        env['WORLD_SIZE'] = env['SLURM_NTASKS']
        env['LOCAL_RANK'] = env.get('SLURM_LOCALID', '0')
        if 'MASTER_ADDR' not in env:
            env['MASTER_ADDR'] = subprocess.getoutput(
                f'scontrol show hostname {env["SLURM_NODELIST"]} | head -n1')
    elif launcher == 'mpi':
        _require(['OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE',
                  'MASTER_ADDR'], launcher)
        env['RANK'] = env['OMPI_COMM_WORLD_RANK']
        env['WORLD_SIZE'] = env['OMPI_COMM_WORLD_SIZE']
        env['LOCAL_RANK'] = env.get('OMPI_COMM_WORLD_LOCAL_RANK', '0')
    else:
        raise LaunchError(f'unknown launcher {launcher!r}; use none, '
                          'pytorch, slurm or mpi')
    env.setdefault('MASTER_PORT', '29500')  # torch's default port


def setup_cpu_distributed(cfg, launcher: str) -> bool:
    """Prepare a config (and the process group) for gloo training on CPU.

    Args:
        cfg (mmengine.Config): The training config; ``env_cfg`` and
            ``model_wrapper_cfg`` are updated in place.
        launcher (str): ``none``, ``pytorch``, ``slurm`` or ``mpi``.

    Returns:
        bool: True when the CPU path was taken (no CUDA, a launcher given).
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    env_cfg = dict(cfg.get('env_cfg') or {})
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    dist_cfg['backend'] = 'gloo'  # nccl needs CUDA
    env_cfg['dist_cfg'] = dist_cfg
    cfg.env_cfg = env_cfg

    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False)))
    if wrapper.get('type', 'MMDistributedDataParallel') == \
            'MMDistributedDataParallel':
        wrapper['device_ids'] = None  # a CPU module takes no device ids
    cfg.model_wrapper_cfg = wrapper

    if not dist.is_initialized():
        _set_env_from_launcher(launcher)
        kwargs = {}
        if dist_cfg.get('timeout') is not None:
            kwargs['timeout'] = datetime.timedelta(
                seconds=dist_cfg['timeout'])
        dist.init_process_group(backend='gloo',
                                rank=int(os.environ['RANK']),
                                world_size=int(os.environ['WORLD_SIZE']),
                                **kwargs)
    return True


def tensors_digest(tensors) -> str:
    """SHA-256 of a dict of tensors (names, dtypes, shapes and bytes)."""
    import hashlib
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f'{name}:{t.dtype}:{tuple(t.shape)}'.encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel()
                      else b'')
    return digest.hexdigest()


def check_ranks_agree(tensors) -> str:
    """Every rank holds the same ``tensors`` (e.g. the LoRA weights).

    DDP keeps them equal by averaging gradients; a rank that skipped a step
    or drew another batch count would not, and rank 0 would then write its
    own weights as the task's result. Logs the digest and the world size.

    Returns:
        str: The common SHA-256.

    Raises:
        RuntimeError: the ranks disagree (the message lists the digests).
    """
    from mmengine.dist import all_gather_object, get_rank, get_world_size
    from mmengine.logging import print_log
    digest = tensors_digest(tensors)
    world = get_world_size()
    if world > 1:
        digests = all_gather_object(digest)
        if len(set(digests)) > 1:
            raise RuntimeError(
                'the ranks hold different LoRA weights at the end of the '
                f'task (sha256 per rank: {[d[:12] for d in digests]}): the '
                'processes went out of step. Nothing was written.')
    print_log(f'LoRA weights sha256 {digest[:16]} on rank {get_rank()} '
              f'(identical on all {world} ranks)', logger='current')
    return digest
