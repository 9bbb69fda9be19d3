"""Retargeting core (numpy only, no bpy): carry motion from one head onto another rig.

``transform`` aligns two heads from landmarks; ``binding`` binds one mesh's vertices to the
other's surface and transfers offsets across topologies; ``solve`` turns vertex offsets into
bounded, smooth shape-key weights; ``mapping`` routes control curves onto a rig's keys by
name; ``jaw`` derives jaw opening and jaw-bone angles from vertex motion.
"""

from .binding import Binding, bind, closest_triangles, falloff_weights, triangulate
from .jaw import jaw_angles, jaw_open_from_offsets
from .mapping import (
    ARKIT_TO_VISEMES,
    MappedControls,
    format_mapping,
    map_controls,
    name_key,
    parse_mapping,
    zero_phase_lowpass,
)
from .solve import SolveResult, solve_weights
from .transform import RetargetError, Similarity, similarity_from_landmarks

__all__ = [
    "ARKIT_TO_VISEMES",
    "Binding",
    "MappedControls",
    "RetargetError",
    "Similarity",
    "SolveResult",
    "bind",
    "closest_triangles",
    "falloff_weights",
    "format_mapping",
    "jaw_angles",
    "jaw_open_from_offsets",
    "map_controls",
    "name_key",
    "parse_mapping",
    "similarity_from_landmarks",
    "solve_weights",
    "triangulate",
    "zero_phase_lowpass",
]
