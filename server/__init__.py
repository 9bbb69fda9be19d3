"""Wav2Sem Lip Sync inference server.

This package's top level must stay importable without torch: Blender's Python imports
``server.protocol`` and ``server.errors`` from the add-on.
"""

__version__ = "0.1.0"
