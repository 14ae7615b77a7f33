"""The release number, in a module of its own so the command line (below ``ironloop``) can print it."""

__version__ = "0.2.0"
