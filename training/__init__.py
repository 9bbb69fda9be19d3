"""Training tools for the embedded default model: corpus synthesis (``data``), the two training
stages and their recipe, and the evaluation (``eval``). Run as ``python -m training ...``.

Not part of the Blender extension: the add-on only needs ``server``. Dependencies flow one way,
``training`` imports ``server`` and never the reverse.
"""
