"""Import MMRazor 1.0.0 on torch 2.13 (benchmarks only, never in the plugin).

MMRazor 1.0.0 fails at import on current torch: its quantization code touches
``torch.nn.quantized._reference`` and ``torch.ao`` names that are gone, through
placeholders that raise at import. Distillation does not need any of it, so the
quantization subpackages are replaced by inert stand-ins before the first import.
Needs ``ordered-set`` and ``joblib`` (requirements/bench.txt).
"""
import sys
import types

QUANTIZATION_PACKAGES = (
    'mmrazor.structures.quantization',
    'mmrazor.structures.quantization.backend_config',
    'mmrazor.models.quantizers',
    'mmrazor.models.fake_quants',
    'mmrazor.models.observers',
    'mmrazor.models.algorithms.quantization',
    'mmrazor.engine.runner.quantization_loops',
)


def _inert_names(module: str):
    def getattr_(attr: str):
        if attr.startswith('__'):
            raise AttributeError(attr)
        return type(attr, (), {'__module__': module})
    return getattr_


def import_mmrazor():
    """Stub MMRazor's quantization subpackages, import it, register its modules."""
    for name in QUANTIZATION_PACKAGES:
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.__path__ = []
            stub.__all__ = []
            # `from <stub> import Name` gets an inert class that is never used
            stub.__getattr__ = _inert_names(name)
            sys.modules[name] = stub
    import mmrazor  # noqa: F401
    import mmrazor.models  # noqa: F401
    from mmrazor.utils import register_all_modules
    register_all_modules(False)
    return mmrazor
