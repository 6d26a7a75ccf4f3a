"""groundcot: interleaved grounded chain-of-thought datasets from public grounded-VQA data.

The repository root is this package: ``schemas``, ``prompts``, ``transforms``, ``pipeline``,
``jobs`` and ``trainer`` install as ``groundcot.<name>``. See the README's architecture note.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("groundcot")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
