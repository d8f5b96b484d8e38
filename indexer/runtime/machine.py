"""What this machine offers the runtimes: their names, the CPU's instructions, whether the extra is installed.

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
#: The packages the OpenVINO runtime imports; both come with the extra.
OPENVINO_MODULES = ("openvino", "nncf")
INSTALL_HINT = "the openvino runtime needs OpenVINO and NNCF: pip install 'imgidx[openvino]'"
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


def cpu_has_int8_dot() -> bool:
    return bool(INT8_DOT_FLAGS & cpu_flags())


def openvino_installed() -> bool:
    """True when the extra's packages can be imported (looked up, not imported: that costs a second)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in OPENVINO_MODULES)
    except (ImportError, ValueError):
        return False


def require_openvino() -> None:
    """Import the extra's packages, or explain how to install them."""
    try:
        for name in OPENVINO_MODULES:
            importlib.import_module(name)
    except ImportError:
        raise RuntimeChoiceError(INSTALL_HINT) from None
