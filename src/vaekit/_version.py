"""The package version, in a module of its own so that nothing imports the package face
(``vaekit/__init__.py``) to read it; pyproject.toml reads it from here too."""

__version__ = "0.1.0"
