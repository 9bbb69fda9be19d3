"""Extension entry point: Blender imports the extension folder as the package."""

from .wav2sem_blender import register, unregister

__all__ = ["register", "unregister"]
