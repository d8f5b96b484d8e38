"""imgidx indexer: decode photos, run a fully-convolutional backbone, store 3x3 region labels.

Importing this package must stay cheap: TensorFlow is imported only by the model modules,
and only when a model is loaded.
"""

__version__ = "0.1.0"
