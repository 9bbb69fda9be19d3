"""The topology-free control set the embedded default model speaks, and the phone set.

Stdlib only: the Blender add-on imports it (the procedural rig makes shape keys with these
names; the control writer keys them). Names follow ARKit's blendshape names, so a rig with
ARKit shapes is driven directly.
"""

CONTROLS = [
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthStretch_L",
    "mouthStretch_R",
    "mouthSmile_L",
    "mouthSmile_R",
    "mouthPress_L",
    "mouthPress_R",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthUpperUp_L",
    "mouthUpperUp_R",
    "mouthLowerDown_L",
    "mouthLowerDown_R",
]

# CMU/ARPAbet phones without stress, plus SIL for pauses: the one phone set every engine's
# timings are mapped to (flite and pocketsphinx use it natively).
PHONES = [
    "SIL",
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
    "T", "TH", "V", "W", "Y", "Z", "ZH",
]  # fmt: skip

MOTION_FPS = 30.0
