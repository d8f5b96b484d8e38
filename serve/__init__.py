"""`imgidx serve`: search and browse an index in a web browser (Starlette, Jinja2, uvicorn).

The web layer only: queries, thumbnails and the index's contents come from `query` and `indexer`, which
never import a web framework. Installed with ``pip install 'imgidx[serve]'``.
"""

#: What `imgidx serve` says when the web extra is not installed.
INSTALL_HINT = "imgidx serve needs the web extra: pip install 'imgidx[serve]'"
#: The modules of the web extra, to tell a missing extra from another import error.
EXTRA_MODULES = ("starlette", "uvicorn", "jinja2", "anyio", "h11")
