"""Start-up hook for the air-gapped GPU host only (benchmarks/gpu_host/setup.sh copies it to /tmp/site,
the first entry of PYTHONPATH, so every python there, torchrun's workers and DataLoader workers included,
runs it before anything else).

Why: LAVIS 1.0.2 needs transformers 4.26.1 (carried there as a wheel), but the host ships tokenizers
0.23. transformers/__init__.py runs `from . import dependency_versions_check`, whose module body checks
pinned versions at import time and raises on tokenizers (4.26.1 wants <0.14), so transformers would not
import at all. lavis_gated uses only the slow tokenizers (BertTokenizer, GPT2Tokenizer via
AutoTokenizer(use_fast=False)), which do not need tokenizers, so that check is moot here.

Registering a stand-in module under that name in sys.modules before transformers is imported skips the
import-time checks. The stand-in is not empty: transformers/deepspeed.py (imported by modeling_utils)
and trainer.py do `from .dependency_versions_check import dep_version_check`, so it keeps that function,
which checks one package's version when it is called, as the original does.

Applied only while the transformers first on sys.path is a 4.x release (the carried wheel).
"""

import sys
import types

_NAME = "transformers.dependency_versions_check"


def _transformers_major():
    try:
        from importlib.metadata import version

        return int(version("transformers").split(".")[0])
    except Exception:  # not installed, odd version string: leave the import alone
        return None


def _dep_version_check(pkg, hint=None):
    from transformers.dependency_versions_table import deps
    from transformers.utils.versions import require_version

    require_version(deps[pkg], hint)


_MARK = "_lavis_gated_gpu_host_sitecustomize"  # a second copy of this file further down sys.path does nothing

if not getattr(sys, _MARK, False) and _NAME not in sys.modules and _transformers_major() == 4:
    _stand_in = types.ModuleType(
        _NAME, "stand-in (benchmarks/gpu_host/sitecustomize.py): no import-time checks"
    )
    _stand_in.dep_version_check = _dep_version_check
    _stand_in.pkgs_to_check_at_runtime = []
    sys.modules[_NAME] = _stand_in


def _chain_next_sitecustomize():
    """Run the sitecustomize this file shadows (e.g. the system Python's), as Python would have."""
    import importlib.machinery
    import importlib.util
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or not spec.origin:
        return
    if os.path.abspath(spec.origin) == os.path.abspath(__file__):
        return
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as err:  # as site.py does: report, keep going
        print(f"Error in chained sitecustomize {spec.origin}: {err!r}", file=sys.stderr)


if not getattr(sys, _MARK, False):
    setattr(sys, _MARK, True)
    _chain_next_sitecustomize()
