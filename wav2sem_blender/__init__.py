"""Wav2Sem Lip Sync: the Blender side (panel, operators, client, writers)."""
