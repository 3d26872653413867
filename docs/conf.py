"""Sphinx configuration of vaekit's documentation site (`make docs`).

The pages are MyST Markdown; the API reference is drawn from the docstrings by autodoc.
Everything builds offline: no intersphinx, no remote images.
"""

from pathlib import Path

from vaekit._version import __version__

project = "vaekit"
author = "the vaekit authors"
copyright = "the vaekit authors"
version = release = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Headings down to ### get anchors, so `page.md#a-heading` links work as on a forge.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# The API reference documents each name where the package exposes it (vaekit.VAE, ...), in
# source order; type hints go in the description, where long ones stay readable.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"vaekit {release}"
html_static_path: list[str] = []


# The lab logs live in benchmarks/notes/ beside the scripts that write them. Each gets a page
# here that includes it: written at build time, so a new log needs no edit of the site.
_NOTES = Path(__file__).resolve().parent.parent / "benchmarks" / "notes"
_PAGES = Path(__file__).resolve().parent / "notes"
_PAGES.mkdir(exist_ok=True)
for _note in sorted(_NOTES.glob("*.md")):
    _page = _PAGES / _note.name
    _text = f"```{{include}} ../../benchmarks/notes/{_note.name}\n```\n"
    if not _page.exists() or _page.read_text() != _text:
        _page.write_text(_text)
for _page in _PAGES.glob("*.md"):
    if not (_NOTES / _page.name).exists():
        _page.unlink()
