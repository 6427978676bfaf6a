"""Fail early, with a fix, when the installed stack cannot run the plugin."""

REBUILD_HINT = ('Rebuild mmcv with its ops: `MMCV_WITH_OPS=1 pip install '
                '--no-build-isolation --force-reinstall --no-deps mmcv==2.1.0` '
                '(torch, wheel, ninja and setuptools<82 installed first), or run '
                '`make setup` in the vkd-mmdet checkout.')


class EnvironmentProblem(ImportError):
    """The Python environment lacks a working piece of the pinned stack."""


def check_environment() -> None:
    """Raise :class:`EnvironmentProblem` naming what is broken and how to fix it."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise EnvironmentProblem(
            f'vkd_mmdet needs PyTorch: {exc}. Install it first, e.g. '
            f'`pip install torch==2.13.0` (CPU) or your CUDA build.') from exc
    try:
        import mmcv
    except ImportError as exc:
        raise EnvironmentProblem(f'vkd_mmdet needs mmcv 2.x with its ops: {exc}. '
                                 f'{REBUILD_HINT}') from exc
    try:
        import mmcv.ops  # noqa: F401
    except (ImportError, OSError) as exc:
        raise EnvironmentProblem(
            f'mmcv {mmcv.__version__} is installed without working compiled ops '
            f'(`import mmcv.ops` failed: {exc}). MMDetection needs them (NMS, '
            f'RoIAlign, ...). {REBUILD_HINT}') from exc
    try:
        import pkg_resources  # noqa: F401
    except ImportError as exc:
        raise EnvironmentProblem(
            'setuptools >= 82 removed pkg_resources, which mmengine needs to resolve '
            "`_base_ = 'mmdet::...'` configs. Run `pip install "
            "'setuptools>=77.0.3,<82'`.") from exc
    try:
        import mmdet  # noqa: F401  (asserts its mmcv/mmengine version ranges)
    except AssertionError as exc:
        raise EnvironmentProblem(f'MMDetection rejects the installed versions: {exc}. '
                                 f'vkd-mmdet is tested with mmcv 2.1.0, mmengine '
                                 f'0.10.7, mmdet 3.3.0.') from exc
    except ImportError as exc:
        raise EnvironmentProblem(f'vkd_mmdet needs mmdet 3.x: {exc}. '
                                 f'`pip install mmdet==3.3.0`.') from exc
