"""``templates.pkl``: the neutral mesh of every subject, read without running any code.

VOCASET and BIWI ship their templates as a pickle of ``{subject: ndarray (V, 3)}`` (VOCASET's was
written by Python 2, hence ``encoding="latin1"``; FaceFormer's ``data_loader.py:read_data`` and
CodeTalker's loaders read it with a plain ``pickle.load``). A pickle can name any Python callable
to run while it loads, so this module never calls ``pickle.load``: :class:`TemplateUnpickler`
resolves only the few numpy globals that rebuild an ndarray and refuses every other one before it
is looked up, let alone called. The result must then be a dict of ``str -> numeric array`` with
three coordinates per vertex, or it is refused too.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from wav2sem_contract.errors import Wav2SemError


def _numpy_core(submodule: str, name: str) -> Callable[[], object]:
    """numpy 2 moved ``numpy.core`` to ``numpy._core``; a pickle names whichever wrote it. Resolve
    from the installed numpy, trying the new location first (the old one warns on numpy 2)."""

    def get() -> object:
        import importlib

        for base in ("numpy._core", "numpy.core"):
            try:
                return getattr(importlib.import_module(f"{base}.{submodule}"), name)
            except (ImportError, AttributeError):
                continue
        raise AttributeError(f"numpy has no {submodule}.{name}")

    return get


# (module, name) as written in the pickle -> how to get the object. ``_reconstruct`` + ndarray +
# dtype are what ``ndarray.__reduce__`` emits (protocols 0-4); ``_frombuffer`` is protocol 5's
# path for contiguous arrays. Each only builds an array from bytes, shape and dtype.
_ALLOWED: dict[tuple[str, str], Callable[[], object]] = {
    **{(base + ".multiarray", "_reconstruct"): _numpy_core("multiarray", "_reconstruct")
       for base in ("numpy.core", "numpy._core")},
    **{(base + ".numeric", "_frombuffer"): _numpy_core("numeric", "_frombuffer")
       for base in ("numpy.core", "numpy._core")},
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_bytes,
}


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """Python 3 writes bytes (an array's raw data) into protocol 0-2 pickles as
    ``_codecs.encode(text, 'latin1')``; only that one conversion is allowed, no other codec."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"global _codecs.encode with {encoding!r} is not allowed")
    return text.encode("latin1")


class TemplateUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild numpy arrays (and the dicts, lists and strings around them)."""

    def find_class(self, module: str, name: str) -> object:
        get = _ALLOWED.get((module, name))
        if get is None:
            # checked before anything is imported or called: a refused global never runs
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return get()


def _unsafe(path: Path, detail: str) -> Wav2SemError:
    return Wav2SemError(
        "templates_unsafe",
        f"The templates file {path.name} holds {detail}, so it was not loaded (only a dict of numpy arrays is "
        "accepted).",
        "Use the dataset's own templates.pkl, or re-save it as a dict of subject name -> (V, 3) float array.",
    )


def load_templates(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """``{subject: (V, 3) float64}`` from a templates pickle, refusing anything but a dict of arrays.

    Flattened templates (``(3V,)``) are reshaped to ``(V, 3)``. Raises :class:`Wav2SemError`
    (``templates_missing``, ``templates_unsafe``, ``templates_bad``) with one sentence.
    """
    path = Path(path)
    if not path.is_file():
        raise Wav2SemError("templates_missing", f"The templates file {path} does not exist.",
                           "Pass the dataset's templates.pkl (it sits next to wav/ and vertices_npy/).")
    data = path.read_bytes()
    try:
        # latin1: VOCASET's file comes from Python 2, whose str keys and array bytes need it
        obj = TemplateUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        if "is not allowed" in str(exc):
            raise _unsafe(path, f"Python code or objects ({exc})") from None
        raise Wav2SemError("templates_bad", f"The templates file {path.name} is not a readable pickle ({exc}).",
                           "Check that the file is complete.") from None
    except Exception as exc:  # truncated or corrupt data: still one sentence
        raise Wav2SemError("templates_bad", f"The templates file {path.name} is not a readable pickle "
                           f"({type(exc).__name__}: {exc}).", "Check that the file is complete.") from None
    return check_templates(obj, path)


def check_templates(obj: object, path: Path = Path("templates.pkl")) -> dict[str, np.ndarray]:
    """The loaded object as ``{str: (V, 3) float64}``, or :class:`Wav2SemError` naming what is wrong."""
    if not isinstance(obj, Mapping):
        raise _unsafe(path, f"a {type(obj).__name__}, not a dict")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if isinstance(key, bytes):  # a Python 2 str read without latin1
            key = key.decode("latin1")
        if not isinstance(key, str):
            raise _unsafe(path, f"a key of type {type(key).__name__} ({key!r}), not a subject name")
        if not isinstance(value, np.ndarray):
            raise _unsafe(path, f"a {type(value).__name__} for subject {key}, not a numpy array")
        if value.dtype.kind not in "fiu":
            raise _unsafe(path, f"an array of dtype {value.dtype} for subject {key}, not numbers")
        if value.ndim == 1 and value.size % 3 == 0 and value.size:
            value = value.reshape(-1, 3)
        if value.ndim != 2 or value.shape[1] != 3 or not value.shape[0]:
            raise Wav2SemError("templates_bad", f"The template of subject {key} in {path.name} has shape "
                               f"{value.shape}, not (vertices, 3).", "Use the dataset's own templates.pkl.")
        if not np.isfinite(value).all():
            raise Wav2SemError("templates_bad", f"The template of subject {key} in {path.name} has NaN or "
                               "infinite coordinates.", "Use the dataset's own templates.pkl.")
        out[key] = np.asarray(value, dtype=np.float64)
    if not out:
        raise Wav2SemError("templates_bad", f"The templates file {path.name} holds no subjects.",
                           "Use the dataset's own templates.pkl.")
    return out


def save_templates(path: str | os.PathLike[str], templates: Mapping[str, np.ndarray]) -> None:
    """Write ``{subject: (V, 3)}`` as the official layout does (a pickled dict of float arrays)."""
    clean = {str(k): np.ascontiguousarray(v, dtype=np.float64).reshape(-1, 3) for k, v in templates.items()}
    with open(path, "wb") as f:
        pickle.dump(clean, f, protocol=4)  # 4: readable by every Python 3 and by the official loaders
