"""Training the host decoders (FaceFormer, CodeTalker stages 1 and 2) on VOCASET/BIWI-layout data, on one
process or under torchrun.

- ``forward.py``: the differentiable training forward (the official autoregressive loop with
  gradients, or teacher forcing), with the official dropout; inference code stays in ``server``;
- ``data.py``: sequences of a dataset folder as the official loader reads them;
- ``build.py``: the model to train (from an encoder folder, a bundle or an official checkpoint);
- ``export.py``: our weights as an official-format FaceFormer or CodeTalker stage-2 state dict (``convert`` reads it);
- ``state.py``: atomic checkpoints and RNG states (``torch.load(weights_only=True)`` reads them);
- ``distributed.py``: process group, sampler, rank-0 rules;
- ``arches.py``: what differs per host (build, freezing, loss, optimiser and schedule, validation,
  official file), so ``trainer.py`` serves all three;
- ``vq.py``: CodeTalker stage 1 (the motion VQ-VAE's training forward, VQ loss, official file);
- ``codetalker.py``: CodeTalker stage 2 (built over a stage-1 file, the teacher-forced loss);
- ``trainer.py``: the epoch loop, validation (loss, LVE), logs and checkpointing.
"""
