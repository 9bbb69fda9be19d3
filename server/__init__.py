"""Wav2Sem Lip Sync inference server (torch, transformers); it shares only ``wav2sem_contract`` with the add-on.

The top level stays free of torch so that ``python -m server --help`` answers at once.
"""

__version__ = "0.1.0"
