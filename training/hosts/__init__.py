"""Training the host decoders (FaceFormer) on VOCASET/BIWI-layout data, on one process or under torchrun.

- ``forward.py``: the differentiable training forward (the official autoregressive loop with
  gradients, or teacher forcing), with the official dropout; inference code stays in ``server``;
- ``data.py``: sequences of a dataset folder as the official loader reads them;
- ``build.py``: the model to train (from an encoder folder, a bundle or an official checkpoint);
- ``export.py``: our weights as an official-format FaceFormer state dict (``convert`` reads it);
- ``state.py``: atomic checkpoints and RNG states (``torch.load(weights_only=True)`` reads them);
- ``distributed.py``: process group, sampler, rank-0 rules;
- ``trainer.py``: the epoch loop, validation (loss, LVE), logs and checkpointing.
"""
