"""The runtimes and precisions an index can be built with, by name.

A leaf of its own so that the runtimes' modules (`indexer.runtime.openvino_model`, `openvino_detector`) name
them without importing the package that loads them (`indexer.runtime`), which would close an import loop.
"""

AUTO, TF, OPENVINO = "auto", "tf", "openvino"
RUNTIMES = (AUTO, TF, OPENVINO)
INT8 = "int8"
PRECISIONS = (AUTO, INT8, "bf16", "fp32")
