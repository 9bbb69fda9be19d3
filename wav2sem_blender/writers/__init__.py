"""Writers: put one result into the scene, one module per output mode.

Everything this add-on creates is recognisably named (``W2S ...``) so that re-runs replace
only its own data and leave the user's shape keys, F-curves and modifiers alone.
"""

PREFIX = "W2S "
