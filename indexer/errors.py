"""Errors a user can act on. The CLI shows each as one line; no traceback."""

from indexer.names import printable


class ImgidxError(Exception):
    """Base class of every error imgidx reports to a user as one line."""

    def shown(self) -> str:
        """The message as the user sees it: one line, a file name's control characters escaped."""
        return printable(str(self))


class ImageReadError(ImgidxError):
    """A file is missing, unreadable, or not a decodable image."""


class UnknownModelError(ImgidxError):
    """No backbone is registered under the requested name."""


class WeightsError(ImgidxError):
    """Model weights are missing, truncated, tampered with, or do not fit the network."""


class DownloadError(WeightsError):
    """Weights could not be downloaded."""


class StoreError(ImgidxError):
    """The index database cannot be opened or used as asked."""


class SchemaVersionError(StoreError):
    """The index was written by another schema version and cannot be used as it is."""


class DamagedIndexError(StoreError):
    """The index lacks a table or column, holds values its schema rules out, or its file is corrupt."""


class IndexSettingsError(StoreError):
    """The index was built with another model or working size than requested."""


class WorkingSizeError(ImgidxError):
    """The requested working size is too small for the network to produce a class map."""


class FolderError(ImgidxError):
    """A folder given to index does not exist or is not a folder or file."""


class PatternError(ImgidxError):
    """An --exclude pattern or a line of an .imgidxignore file is no pattern, or the file cannot be read."""


class IndexBusyError(StoreError):
    """Another `imgidx index` is writing to the same index."""


class EngineError(ImgidxError):
    """The chosen indexing engine cannot run: Ray missing, its cluster unreachable, or a worker lost."""


class MergeError(ImgidxError):
    """Indexes cannot be merged as asked: built with other settings, or an index into itself."""


class RuntimeChoiceError(ImgidxError):
    """The chosen runtime or precision cannot run here: OpenVINO missing, or int8 asked of TensorFlow."""


class QuantizedModelError(ImgidxError):
    """An int8 model cannot be built or read: no calibration photos, or a damaged cache entry."""


class CacheError(ImgidxError):
    """imgidx's cache folder cannot be written where a model must be built or a choice recorded."""
