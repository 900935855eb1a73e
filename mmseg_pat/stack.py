"""The two OpenMMLab stacks this package runs on, and what differs.

MMSegmentation 1.x comes in two families that install the same modules
(``mmcv``, ``mmengine``, ``mmseg``) under other distribution names:

- ``openmmlab``: upstream OpenMMLab (mmcv, mmengine, mmsegmentation; no
  release of MMSeg since 1.2.2);
- ``onedl``: the maintained OneDL fork (onedl-mmcv, onedl-mmengine,
  onedl-mmsegmentation).

:func:`check_stack` (run by ``import mmseg_pat``) finds which distribution
provides each module and refuses versions this package does not support,
naming the install line of each stack. :func:`load_config` bridges the one
difference that config loading meets (``mmseg::`` bases on the fork). The
other differences are bridged where they are met, each with a comment that
names it (search for "OneDL").

Nothing here changes the process at import: the checks read package
metadata and look modules up.
"""
import contextlib
import importlib.util
import warnings
from importlib import metadata
from typing import Dict, Iterator, NamedTuple, Optional, Tuple

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

MODULES = ('mmcv', 'mmengine', 'mmseg')

# stack -> module -> (distribution, supported versions). The same ranges
# are the extras of setup.cfg (tests/test_stack.py keeps them equal).
SUPPORTED: Dict[str, Dict[str, Tuple[str, str]]] = {
    # what MMSeg 1.x accepts (upstream's mmseg/__init__.py asserts the mmcv
    # and mmengine ranges)
    'openmmlab': {
        'mmcv': ('mmcv', '>=2.0.0rc4,<2.2.0'),
        'mmengine': ('mmengine', '>=0.7.0,<1.0.0'),
        'mmseg': ('mmsegmentation', '>=1.0.0,<2.0.0'),
    },
    # the fork's mmseg 1.4 asks onedl-mmengine >= 0.10.8 (and any
    # onedl-mmcv); tested with 2.3.6, 0.10.12 and 1.4.2
    'onedl': {
        'mmcv': ('onedl-mmcv', '>=2.3.0,<3.0.0'),
        'mmengine': ('onedl-mmengine', '>=0.10.8,<1.0.0'),
        'mmseg': ('onedl-mmsegmentation', '>=1.4.0,<2.0.0'),
    },
}
INSTALL_LINES = {
    'openmmlab': 'pip install "mmseg-pat[openmmlab]"   # upstream OpenMMLab',
    'onedl': 'pip install "mmseg-pat[onedl]"       # the OneDL fork',
}
# Other distributions that install the module: accepted as they are
# (mmcv-lite has no compiled ops: MMSeg 1.2.2 refuses it at import).
OTHER_PROVIDERS = {'mmcv': ('mmcv-lite', 'mmcv-full'),
                   'mmengine': ('mmengine-lite', )}


class Provider(NamedTuple):
    """The distribution that installed a module, and its stack."""
    module: str
    distribution: str
    version: str
    stack: Optional[str]  # None: a distribution SUPPORTED does not name


def _version(distribution: str) -> Optional[str]:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _module_found(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def providers(module: str) -> list:
    """Every installed distribution known to install ``module``."""
    found = []
    for stack, modules in SUPPORTED.items():
        version = _version(modules[module][0])
        if version is not None:
            found.append(Provider(module, modules[module][0], version, stack))
    for distribution in OTHER_PROVIDERS.get(module, ()):
        version = _version(distribution)
        if version is not None:
            found.append(Provider(module, distribution, version, None))
    return found


def _problem(message: str) -> ImportError:
    lines = '\n'.join(f'    {line}' for line in INSTALL_LINES.values())
    return ImportError(
        f'mmseg_pat: {message}\nmmseg-pat runs on either OpenMMLab stack, '
        f'one per environment:\n{lines}\n(torch first, your CPU or CUDA '
        'build; the README, "Which OpenMMLab?", says how to get mmcv with '
        'its compiled ops.)')


def check_stack() -> str:
    """Check that one supported stack provides mmcv, mmengine and mmseg.

    Returns:
        str: The stack: ``'openmmlab'`` or ``'onedl'``; ``'unknown'`` when
        the modules come from no known distribution (a source checkout on
        ``sys.path``), which is not checked.

    Raises:
        ImportError: A module is missing, installed by distributions of
            both families, or in a version outside :data:`SUPPORTED`.
    """
    stacks = set()
    for module in MODULES:
        found = providers(module)
        if len(found) > 1:
            names = ', '.join(f'{p.distribution} {p.version}' for p in found)
            raise _problem(
                f'{names} are all installed and write the same {module}/ '
                'folder. Keep one family: pip uninstall the others, then '
                'reinstall the one you keep.')
        if not found:
            if not _module_found(module):
                raise _problem(f'{module} is not installed.')
            continue
        provider, = found
        if provider.stack is None:
            continue
        distribution, versions = SUPPORTED[provider.stack][module]
        try:
            supported = Version(provider.version) in SpecifierSet(
                versions, prereleases=True)
        except InvalidVersion:
            supported = False
        if not supported:
            raise _problem(
                f'{distribution} {provider.version} is installed; this '
                f'version of mmseg-pat supports {distribution}{versions}.')
        stacks.add(provider.stack)
    if len(stacks) > 1:
        names = ', '.join(
            f'{p.distribution} {p.version}' for m in MODULES
            for p in providers(m))
        raise _problem(f'{names}: a mix of both families. Install one.')
    stack = stacks.pop() if stacks else 'unknown'
    # The fork's mmseg imports mmcv.ops only where a model needs them
    # (upstream's at import), so an mmcv built without torch at hand
    # (in pip's build isolation) is found only when such a model is built.
    if stack == 'onedl' and not _module_found('mmcv._ext'):
        warnings.warn(
            'mmseg_pat: onedl-mmcv has no compiled ops (mmcv._ext), so MMSeg '
            'models that use mmcv.ops (PointRend, CCNet, PSANet, ...) fail '
            'to build. Install it with torch at hand: pip install '
            '--no-build-isolation onedl-mmcv (README, "Which OpenMMLab?").')
    return stack


def _mmseg_distribution() -> Optional[str]:
    found = providers('mmseg')
    return found[0].distribution if len(found) == 1 else None


@contextlib.contextmanager
def mmseg_bases_resolvable() -> Iterator[None]:
    """Within this block, MMEngine finds ``mmseg::`` config paths on both
    stacks.

    OneDL difference bridged here: MMEngine resolves ``_base_ =
    ['mmseg::_base_/...']`` through ``MODULE2PACKAGE['mmseg']``, the
    distribution name ``'mmsegmentation'``; with onedl-mmengine 0.10.12 and
    the fork installed, ``is_installed`` finds neither a distribution nor a
    module of that name, and the config fails with ``ModuleNotFoundError:
    mmsegmentation is not installed``. For this block only, the entry names
    the distribution that installed ``mmseg`` here (onedl-mmsegmentation),
    and MMEngine reads MMSeg's configs from that package
    (``mmseg/.mim/configs``) as it does upstream. Where the entry already
    names an installed distribution (upstream), nothing is touched.
    """
    from mmengine.config import utils as config_utils
    module2package = config_utils.MODULE2PACKAGE
    named = module2package.get('mmseg')
    installed = _mmseg_distribution()
    if installed is None or named is None or _version(named) is not None:
        yield
        return
    module2package['mmseg'] = installed
    try:
        yield
    finally:
        module2package['mmseg'] = named


def load_config(filename: str, **kwargs):
    """``mmengine.Config.fromfile`` that reads ``mmseg::`` bases on both
    stacks (see :func:`mmseg_bases_resolvable`).

    Args:
        filename (str): The config file.
        **kwargs: Passed to ``Config.fromfile``.

    Returns:
        mmengine.config.Config: The config.
    """
    from mmengine.config import Config
    with mmseg_bases_resolvable():
        return Config.fromfile(filename, **kwargs)
