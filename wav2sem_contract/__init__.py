"""What the Blender add-on and the inference server agree on: stdlib + numpy only.

The add-on imports this package inside Blender (the extension ships it as a wheel) and the
server imports it in its own Python; neither side imports the other. Here: the wire format
(``protocol``), typed requests and results (``request``, ``result``), the error type
(``errors``), the default model's control names (``controls``) and the articulation rig's
geometry (``articulation``).
"""
