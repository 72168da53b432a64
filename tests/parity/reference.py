"""Imports Lightricks' reference implementation (PyPI ltx-core / ltx-pipelines 1.0.0) for the parity suite.

ltx-core declares ``torchaudio`` and a torch 2.7 pin. The only module that imports torchaudio is
``ltx_core.model.audio_vae.ops``, for the audio *encoder*'s mel front end (audio-to-video), which
image-to-video never runs; and no torchaudio wheel exists for the CPU torch this project pins. So the
packages are installed with ``--no-deps`` (see the Makefile) and, when torchaudio is absent, a stand-in
module is registered that fails loudly if anything ever calls into it.
"""

from __future__ import annotations

import importlib.util
import sys
import types


class _TorchaudioAbsent(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(
            f"torchaudio.{name} was called by the reference code; torchaudio is not installed here "
            "(the parity suite covers image-to-video, which never encodes audio)"
        )


def _import_ltx_core_audio_without_torchaudio() -> None:
    """Import ltx_core's audio modules with a stand-in torchaudio visible only during that import.

    transformers probes for torchaudio with importlib.util.find_spec, so it is imported first and the
    stand-in leaves sys.modules again at once: nothing else ever sees it.
    """
    if importlib.util.find_spec("torchaudio") is not None:
        return
    import transformers  # noqa: F401  (its optional-package probes must run before the stand-in exists)

    sys.modules["torchaudio"] = _TorchaudioAbsent("torchaudio")
    try:
        importlib.import_module("ltx_core.model.audio_vae.ops")
    finally:
        del sys.modules["torchaudio"]


_import_ltx_core_audio_without_torchaudio()
