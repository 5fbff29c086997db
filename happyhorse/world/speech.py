"""Speech by eSpeak NG: a line in one of several languages -> waveform, phoneme and word times.

eSpeak NG is called through its C API (`espeak_Synth` in synchronous mode) from the library and data
that the `espeakng-loader` wheel ships, so the install stays `pip install`. Why ctypes and not a
package: the Python packages around eSpeak (phonemizer, pyttsx3, espeakng) either phonemize only,
speak through the sound card, or run the `espeak-ng` program, and none returns the phoneme events with
their sample positions, which is what makes the world's lip-sync ground truth exact.

eSpeak keeps one global state per process; `speak` holds a lock around it, so threads may share it.
"""

from __future__ import annotations

import ctypes
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import resample_poly


@dataclass(frozen=True)
class Language:
    """A spoken language: its eSpeak voice, its English name for captions, and the scripts its lines use."""

    code: str  # ISO 639 code, as captions and the API name it
    name: str  # English name, as captions say it ("in French")
    espeak: str  # eSpeak NG voice name
    scripts: tuple[str, ...]  # Unicode script families a line in this language may use


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("en", "English", "en-us", ("LATIN",)),
        Language("zh", "Mandarin", "cmn", ("CJK",)),
        Language("ja", "Japanese", "ja", ("HIRAGANA", "KATAKANA", "CJK")),
        Language("es", "Spanish", "es", ("LATIN",)),
        Language("fr", "French", "fr", ("LATIN",)),
        Language("de", "German", "de", ("LATIN",)),
        Language("it", "Italian", "it", ("LATIN",)),
        Language("pt", "Portuguese", "pt", ("LATIN",)),
    )
}


@dataclass(frozen=True)
class Voice:
    """How a character sounds: an eSpeak variant (timbre), pitch (0..100, 50 = eSpeak's default) and
    speed (words per minute, eSpeak's default 175)."""

    name: str
    variant: str
    pitch: int
    rate: int


VOICES: dict[str, Voice] = {
    v.name: v
    for v in (
        Voice("low", "m3", 30, 165),
        Voice("deep", "m1", 40, 185),
        Voice("bright", "f2", 65, 175),
        Voice("high", "f4", 80, 190),
    )
}
MAX_LINE_CHARS = 60


@dataclass(frozen=True)
class Speech:
    """A spoken line: mono float32 audio at `sample_rate`, and its units with start/end in seconds.

    phonemes: (symbol, start, end), eSpeak's mnemonics; words: (start, end) of each word eSpeak spoke.
    """

    audio: np.ndarray
    sample_rate: int
    phonemes: tuple[tuple[str, float, float], ...]
    words: tuple[tuple[float, float], ...]

    @property
    def seconds(self) -> float:
        return self.audio.size / self.sample_rate


def language_of(name: str) -> Language:
    """The language called `name` (code like "fr" or English name like "French"), or a ValueError listing them."""
    key = name.strip().lower()
    for lang in LANGUAGES.values():
        if key in (lang.code, lang.name.lower()):
            return lang
    supported = ", ".join(f"{lang.code} ({lang.name})" for lang in LANGUAGES.values())
    raise ValueError(f"language: {name!r} is not supported; supported: {supported}")


def _script(ch: str) -> str | None:
    """The script family of a letter, from its Unicode name (LATIN, CJK, HIRAGANA, ...), None for others."""
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    for family in ("LATIN", "HIRAGANA", "KATAKANA", "CJK"):
        if name.startswith(family):
            return family
    return name.split(" ")[0] or None


def check_line(line: str, language: str) -> str:
    """The line, stripped, if `language` can say it; else a ValueError naming what is wrong."""
    lang = language_of(language)
    text = " ".join(line.split())
    if not text:
        raise ValueError("line: empty; give the words to say")
    if len(text) > MAX_LINE_CHARS:
        raise ValueError(f"line: {len(text)} characters; at most {MAX_LINE_CHARS} fit a clip")
    foreign = sorted({s for s in map(_script, text) if s and s not in lang.scripts})
    if foreign:
        raise ValueError(
            f"line: {lang.name} is written in {'/'.join(lang.scripts)} script, but the line uses {', '.join(foreign)}"
        )
    return text


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
_LOCK = threading.Lock()


class _Engine:
    """The loaded library, initialised once per process, with the callback that collects one utterance."""

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
        self.events: list[tuple[int, str, int]] = []
        self.callback = _CALLBACK(self._collect)  # kept referenced: eSpeak calls it after this returns
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        k = 0
        while events[k].type != _EVENT_END:
            e = events[k]
            if e.type == _EVENT_PHONEME:
                self.events.append((e.type, e.id.string.decode("utf-8", "replace"), e.sample))
            elif e.type == _EVENT_WORD:
                self.events.append((e.type, "", e.sample))
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


@lru_cache(maxsize=1)
def _engine() -> _Engine:
    return _Engine()


def speak(line: str, language: str, voice: str | Voice = "bright", sample_rate: int = 16000) -> Speech:
    """`line` said in `language` by `voice`, trimmed to the speech (no leading or trailing silence)."""
    text = check_line(line, language)
    lang = language_of(language)
    v = voice if isinstance(voice, Voice) else VOICES.get(voice)
    if v is None:
        raise ValueError(f"voice: {voice!r} is not one of {', '.join(VOICES)}")
    with _LOCK:
        engine = _engine()
        raw, events = engine.synth(text, f"{lang.espeak}+{v.variant}", v.pitch, v.rate)
        native = engine.rate
    wave = raw.astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(wave) > 0.01)
    if loud.size == 0:
        raise ValueError(f"line: eSpeak NG said nothing for {text!r} in {lang.name}")
    first, last = int(loud[0]), int(loud[-1]) + 1
    g = np.gcd(sample_rate, native)
    audio = resample_poly(wave[first:last], sample_rate // g, native // g).astype(np.float32)
    seconds = audio.size / sample_rate

    def clock(sample: int) -> float:
        return float(min(max((sample - first) / native, 0.0), seconds))

    marks = [(kind, sym, clock(s)) for kind, sym, s in events]
    phones = [(sym, t) for kind, sym, t in marks if kind == _EVENT_PHONEME]
    phonemes = tuple(
        (sym, t, phones[i + 1][1] if i + 1 < len(phones) else seconds) for i, (sym, t) in enumerate(phones)
    )
    starts = [t for kind, _, t in marks if kind == _EVENT_WORD]
    words = tuple((t, starts[i + 1] if i + 1 < len(starts) else seconds) for i, t in enumerate(starts))
    return Speech(audio, sample_rate, phonemes, words)
