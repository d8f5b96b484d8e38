"""File names as the index stores them and as people see them.

Linux file names are bytes; Python holds a name that is not UTF-8 as a str whose stray bytes are lone
surrogates (``os.fsdecode``'s surrogateescape), which no database or terminal takes. So:

- **stored** (the ``images.path`` column and ``--json``): a name that is valid UTF-8 as it is; any other as
  a ``file://`` URI with its bytes percent-encoded (``file:///photos/caf%E9.jpg``), which any URL library
  turns back into the bytes. Stored paths are absolute, so they never begin with ``file:`` otherwise.
- **printable** (every line meant for a person): control characters, other unprintable ones and stray bytes
  escaped as Python writes them (``\\n``, ``\\x1b``, ``\\u202e``, ``\\xe9``), so a name cannot fake a line.
- exact bytes (``--paths -0``): ``os.fsencode``.
"""

from __future__ import annotations

import os
from urllib.parse import quote_from_bytes, unquote_to_bytes

URI_PREFIX = "file://"
#: The lone surrogates ``surrogateescape`` puts in place of bytes that are not UTF-8.
STRAY_BYTES = range(0xDC80, 0xDD00)


def stored(path: str) -> str:
    """``path`` as valid UTF-8 text: itself when it is UTF-8, else its bytes as a ``file://`` URI."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return URI_PREFIX + quote_from_bytes(os.fsencode(path), safe="/")


def restored(text: str) -> str:
    """The path `stored` wrote as ``text`` (stray bytes back as surrogates)."""
    if text.startswith(URI_PREFIX):
        return os.fsdecode(unquote_to_bytes(text[len(URI_PREFIX) :]))
    return text


def printable(text: str) -> str:
    """``text`` with every unprintable character escaped, so that it shows as one harmless line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code in STRAY_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    return ch.encode("unicode_escape").decode("ascii")
