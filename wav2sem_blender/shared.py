"""The stdlib-only server modules the add-on shares: the wire format, the error type, the controls
and the articulation rig's geometry (numpy only).

Inside Blender, ``server`` is a sibling subpackage of the extension package; in tests and
scripts ``wav2sem_blender`` is imported as a top-level package with the repo root on the path.
"""

try:
    from ..server import articulation, controls, protocol
    from ..server.errors import Wav2SemError
except ImportError:
    from server import articulation, controls, protocol
    from server.errors import Wav2SemError

__all__ = ["articulation", "controls", "protocol", "Wav2SemError"]
