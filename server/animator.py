"""A model bundle loaded once, with the command line's extras, that animates one request after another.

``infer`` animates one file with it; ``infer-many`` loads it once per process and runs every file
of its share through it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from wav2sem_contract.artist import check_gain_names
from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.request import InferRequest
from wav2sem_contract.result import InferResult

from .models.bundle import LoadedBundle, default_bundle, load_bundle, read_meta, variant_for
from .models.host import Progress, no_progress
from .pipeline import run


@dataclass
class Animator:
    loaded: LoadedBundle
    template: np.ndarray | None = None  # (V, 3): also write offsets on this mesh (control models)
    landmarks: dict[str, int] | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, device: torch.device) -> Animator:
        """The bundle of ``--bundle`` (or the embedded default) on ``device``, and ``--template``'s mesh."""
        bundle = args.bundle or str(default_bundle())
        loaded = load_bundle(bundle, device, variant_for(read_meta(bundle), not args.no_semantic), args.precision)
        if not args.template:
            return cls(loaded)
        if loaded.model.spec.result != "weights":  # known now: refused before any audio is read
            raise Wav2SemError("bad_request", "--template applies to control models (the default); this bundle "
                               "already writes vertex offsets.", "Leave out --template.")
        from .template import parse_landmarks, read_template

        template = read_template(args.template)
        return cls(loaded, template, parse_landmarks(args.landmarks, len(template)))

    def check(self, request: InferRequest) -> None:
        """Refuse what no audio file could change (an unknown subject or control) before the first file."""
        model = self.loaded.model
        model.style_weights(request.subject, request.subject2, request.blend)
        if model.spec.result == "weights":
            check_gain_names(request.gains, list(model.spec.control_names))

    def __call__(self, request: InferRequest, progress: Progress = no_progress) -> InferResult:
        result = run(self.loaded, request, progress)
        if self.template is not None:
            from .template import offsets_from_controls

            offsets = offsets_from_controls(result["weights"], result.names, self.template, self.landmarks)
            result = result.with_arrays(offsets=offsets)
        return result
