"""Speech by eSpeak NG: a line in one of several languages -> waveform, phoneme and word times.

eSpeak NG is called through its C API (espeak_engine.py) from the library and data that the
`espeakng-loader` wheel ships, so the install stays `pip install`; `_render` says why each utterance is
rendered by a fresh process and cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

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


_QUOTE = re.compile(r'"([^"]*)"')
_NAMED = (  # where a prompt names the language of its quoted line
    re.compile(r'"[^"]*"\s+in\s+([A-Za-z]+)'),  # says "..." in French
    re.compile(r"\bspeaks\s+([A-Za-z]+)\s*:"),  # speaks French: "..."
    re.compile(r"(?:^|[;:.]\s*)[Ii]n\s+([A-Za-z]+)\s*,"),  # In French, a face says "..."
)


# languages a prompt may name that the world does not speak: named, they are refused with the list of
# those it does; any other word in a language's place ("in Red letters", "In January,") is not a language
OTHER_LANGUAGES = frozenset(
    [
        "arabic",
        "bengali",
        "cantonese",
        "chinese",
        "czech",
        "danish",
        "dutch",
        "finnish",
        "greek",
        "hebrew",
        "hindi",
        "hungarian",
        "indonesian",
        "korean",
        "klingon",
        "latin",
        "malay",
        "norwegian",
        "persian",
        "polish",
        "romanian",
        "russian",
        "swahili",
        "swedish",
        "tagalog",
        "tamil",
        "thai",
        "turkish",
        "ukrainian",
        "urdu",
        "vietnamese",
        "welsh",
        "esperanto",
        "catalan",
        "basque",
        "irish",
    ]
)


def spoken_line(prompt: str) -> tuple[str, str] | None:
    """(line, language code) of a prompt that quotes a line and names its language, checked; None when
    it quotes none or names no language. A ValueError starting "prompt:" names a language the world does
    not speak (OTHER_LANGUAGES; listing the supported ones), a line in another script, or an empty or
    over-long line."""
    quoted = _QUOTE.search(prompt)
    if quoted is None:
        return None
    known = {name for lang in LANGUAGES.values() for name in (lang.code, lang.name.lower())}
    named = None
    for pattern in _NAMED:
        m = pattern.search(prompt)
        if m and m.group(1).lower() in known | OTHER_LANGUAGES:
            named = m.group(1)
            break
    if named is None:
        return None
    try:
        lang = language_of(named)
        return check_line(quoted.group(1), lang.code), lang.code
    except ValueError as exc:
        raise ValueError(f"prompt: {exc}") from None


_LOCK = threading.Lock()
_RENDERED: dict[str, tuple[np.ndarray, list, int]] = {}
ENGINE = Path(__file__).with_name("espeak_engine.py")


def _cache_dir() -> Path:
    return Path(os.environ.get("HAPPYHORSE_CACHE", Path.home() / ".cache" / "happyhorse")) / "speech"


def _render(text: str, espeak_voice: str, pitch: int, rate: int) -> tuple[np.ndarray, list, int]:
    """eSpeak's int16 samples, its (kind, phoneme, sample) events and its sample rate for one utterance.

    eSpeak NG keeps state from one utterance to the next (its pitch flutter and jitter advance), which
    `espeak_Initialize` does not reset: the same call gives other samples after other calls. So each
    utterance is rendered by a fresh process (espeak_engine.py, ~0.1 s), whose first call is always the
    same, and kept in memory and on disk (HAPPYHORSE_CACHE, default ~/.cache/happyhorse/speech): world
    clips are identical bytes whatever was spoken before them, in any process."""
    import espeakng_loader

    version = Path(espeakng_loader.get_library_path()).resolve().name
    key = hashlib.sha256(json.dumps([version, text, espeak_voice, pitch, rate]).encode()).hexdigest()[:32]
    with _LOCK:
        if key in _RENDERED:
            return _RENDERED[key]
        path = _cache_dir() / f"{key}.npz"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(
                [sys.executable, str(ENGINE), str(path), espeak_voice, str(pitch), str(rate)],
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=60,
            )
            if done.returncode == 2:
                raise ValueError(f"voice: eSpeak NG has no voice {espeak_voice!r}")
            if done.returncode != 0:
                raise RuntimeError(f"eSpeak NG could not speak {text!r}: {done.stderr.decode(errors='replace')}")
        with np.load(path) as data:
            events = json.loads(str(data["events"]))
            rendered = (data["audio"], [tuple(e) for e in events], int(data["rate"]))
        _RENDERED[key] = rendered
        return rendered


def speak(line: str, language: str, voice: str | Voice = "bright", sample_rate: int = 16000) -> Speech:
    """`line` said in `language` by `voice`, trimmed to the speech (no leading or trailing silence)."""
    text = check_line(line, language)
    lang = language_of(language)
    v = voice if isinstance(voice, Voice) else VOICES.get(voice)
    if v is None:
        raise ValueError(f"voice: {voice!r} is not one of {', '.join(VOICES)}")
    raw, events, native = _render(text, f"{lang.espeak}+{v.variant}", v.pitch, v.rate)
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
    phones = [(sym, t) for kind, sym, t in marks if kind == "phoneme"]
    phonemes = tuple(
        (sym, t, phones[i + 1][1] if i + 1 < len(phones) else seconds) for i, (sym, t) in enumerate(phones)
    )
    starts = [t for kind, _, t in marks if kind == "word"]
    words = tuple((t, starts[i + 1] if i + 1 < len(starts) else seconds) for i, t in enumerate(starts))
    return Speech(audio, sample_rate, phonemes, words)
