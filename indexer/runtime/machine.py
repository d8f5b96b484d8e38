"""What this machine offers the runtimes: their names, the CPU's instructions, whether OpenVINO and NNCF import.

A leaf, so that the runtimes' own modules (`indexer.runtime.openvino_model`, `openvino_detector`) and the
passes that pick a runtime (`indexer.faces`, `indexer.objects`) read these facts without importing the
package's loaders, which import them in turn. Nothing here imports TensorFlow, OpenVINO or numpy.
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache

from indexer.errors import RuntimeChoiceError

AUTO, TF, OPENVINO = "auto", "tf", "openvino"
RUNTIMES = (AUTO, TF, OPENVINO)
INT8 = "int8"
PRECISIONS = (AUTO, INT8, "bf16", "fp32")
#: The package that runs the OpenVINO runtime, and the one that quantizes a model to int8 (only when an int8
#: model is built: Lite0's for the default working size ships ready, `indexer.runtime.openvino_model.SHIPPED`).
#: Both are imgidx dependencies; a platform without OpenVINO's wheels runs TensorFlow.
OPENVINO_MODULE, NNCF_MODULE = "openvino", "nncf"
INSTALL_HINT = "the openvino runtime needs OpenVINO, which is not installed here: pip install openvino"
NNCF_HINT = "building an int8 model needs NNCF, which is not installed here: pip install nncf"
#: CPU flags (/proc/cpuinfo) of instructions that multiply-add int8 in one step.
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
CPUINFO = "/proc/cpuinfo"


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo cannot be read)."""
    try:
        with open(CPUINFO, encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def int8_dot_flags() -> list[str]:
    """The CPU's int8 dot-product flags, sorted (what ``runtime status`` names)."""
    return sorted(INT8_DOT_FLAGS & cpu_flags())


def cpu_has_int8_dot() -> bool:
    return bool(int8_dot_flags())


def _importable(name: str) -> bool:
    """Looked up, not imported: importing OpenVINO or NNCF costs a second."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def openvino_installed() -> bool:
    return _importable(OPENVINO_MODULE)


def nncf_installed() -> bool:
    return _importable(NNCF_MODULE)


def _require(name: str, hint: str) -> None:
    try:
        importlib.import_module(name)
    except ImportError:
        raise RuntimeChoiceError(hint) from None


def require_openvino() -> None:
    """Import OpenVINO, or explain how to install it."""
    _require(OPENVINO_MODULE, INSTALL_HINT)


def require_nncf() -> None:
    """Import NNCF (to build an int8 model), or explain how to install it."""
    _require(NNCF_MODULE, NNCF_HINT)
