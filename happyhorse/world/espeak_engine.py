"""Render one utterance with eSpeak NG's C API and save it: `python espeak_engine.py OUT.npz VOICE PITCH
RATE < text`. Run as a fresh process per utterance by world/speech.py (see `_render` there for why);
it imports nothing of happyhorse, so it starts fast.

Why ctypes and not a package: the Python packages around eSpeak (phonemizer, pyttsx3, espeakng) either
phonemize only, speak through the sound card, or run the `espeak-ng` program, and none returns the
phoneme events with their sample positions, which is what makes the world's lip-sync ground truth exact.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

import numpy as np


class _Event(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_EVENT_END, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7  # espeakEVENT_LIST_TERMINATED, _WORD, _PHONEME
_SYNCHRONOUS, _PHONEME_EVENTS, _DONT_EXIT = 2, 0x0001, 0x8000
_RATE, _PITCH, _CHARS_UTF8 = 1, 3, 1


class _Engine:
    """The loaded library, initialised, with the callback that collects one utterance."""

    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        data = espeakng_loader.get_data_path().encode()
        self.rate = self.lib.espeak_Initialize(_SYNCHRONOUS, 0, data, _PHONEME_EVENTS | _DONT_EXIT)
        if self.rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise from {data.decode()}")
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[str, str, int]] = []
        self.callback = _CALLBACK(self._collect)  # kept referenced: eSpeak calls it after this returns
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        k = 0
        while events[k].type != _EVENT_END:
            e = events[k]
            if e.type == _EVENT_PHONEME:
                self.events.append(("phoneme", e.id.string.decode("utf-8", "replace"), e.sample))
            elif e.type == _EVENT_WORD:
                self.events.append(("word", "", e.sample))
            k += 1
        return 0

    def synth(self, text: str, espeak_voice: str, pitch: int, rate: int) -> tuple[np.ndarray, list]:
        self.chunks, self.events = [], []
        if self.lib.espeak_SetVoiceByName(espeak_voice.encode()) != 0:
            raise ValueError(f"voice: eSpeak NG has no voice {espeak_voice!r}")
        self.lib.espeak_SetParameter(_RATE, rate, 0)
        self.lib.espeak_SetParameter(_PITCH, pitch, 0)
        raw = text.encode("utf-8")
        if self.lib.espeak_Synth(raw, len(raw) + 1, 0, 1, 0, _CHARS_UTF8, None, None) != 0:
            raise RuntimeError(f"eSpeak NG could not speak {text!r}")
        audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return audio, self.events


def main(argv: list[str]) -> int:
    out, voice, pitch, rate = argv[0], argv[1], int(argv[2]), int(argv[3])
    engine = _Engine()
    text = sys.stdin.buffer.read().decode("utf-8")
    try:
        audio, events = engine.synth(text, voice, pitch, rate)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    tmp = f"{out}.{os.getpid()}.tmp.npz"
    np.savez(tmp, audio=audio, events=json.dumps(events), rate=engine.rate)
    os.replace(tmp, out)  # atomic: a reader sees the whole file or none
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
