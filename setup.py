"""Packaging for gslora_det (GS-LoRA continual forgetting for MMDetection 3.x).

Install with ``make install`` (runs ``tools/install_env.sh``), which builds mmcv
with its ops against the pinned torch and then runs
``pip install -e . --no-deps --no-build-isolation``.

``install_requires`` deliberately leaves out torch, torchvision and mmcv: they
must come as a matching, compiled set (see ``requirements/runtime.txt`` and
``tools/install_env.sh``), and a plain ``pip install`` must never replace them.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent

# Installed by tools/install_env.sh, never through install_requires.
_MANAGED = {'torch', 'torchvision', 'mmcv'}


def parse_requirements(fname: str, exclude: frozenset = frozenset()) -> list:
    """Read requirement specifiers from a pip requirements file.

    Args:
        fname (str): Path relative to the repository root.
        exclude (frozenset): Project names (lower case) to leave out.
            Defaults to an empty set.

    Returns:
        list: Requirement strings, comments and ``-r``/``-c`` lines removed.
    """
    reqs = []
    for line in (HERE / fname).read_text().splitlines():
        line = line.split(' #', 1)[0].strip()
        if not line or line.startswith(('#', '-')):
            continue
        name = re.split(r'[\s<>=!~;\[@]', line, maxsplit=1)[0].lower()
        if name not in exclude:
            reqs.append(line)
    return reqs


setup(
    name='gslora_det',
    version='0.1.0',
    description='GS-LoRA continual forgetting for MMDetection 3.x detectors',
    python_requires='>=3.10',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'configs.*',
                                    'tools', 'tools.*')),
    include_package_data=True,
    install_requires=parse_requirements('requirements/runtime.txt',
                                        exclude=frozenset(_MANAGED)),
    extras_require={'tests': parse_requirements('requirements/tests.txt')},
    zip_safe=False,
)
