"""Talking characters: eSpeak NG speech, the talk and mixed world kinds, the speech metrics and their
validations on world clips (through H.264 + AAC), and the bad inputs a quoted line can carry."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from happyhorse.cli import app
from happyhorse.media import read_video, save_video
from happyhorse.world import make_clip
from happyhorse.world.lines import LINES, TEST_LINES, split_lines
from happyhorse.world.speech import LANGUAGES, VOICES, check_line, speak, spoken_line
from happyhorse.world.talk import held_out_voice, split_voices

runner = CliRunner()


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_every_language_speaks_its_lines_with_phoneme_and_word_times(language):
    lines = LINES[language]
    assert len(lines) == 16 and len(set(lines)) == 16
    s = speak(lines[0], language, "low")
    assert s.sample_rate == 16000 and 0.2 < s.seconds < 1.8
    assert np.abs(s.audio[: int(0.01 * s.sample_rate)]).max() > 0.005  # trimmed to the speech
    starts = [t0 for _, t0, _ in s.phonemes]
    assert starts == sorted(starts) and all(0 <= t0 <= t1 <= s.seconds for _, t0, t1 in s.phonemes)
    assert len(s.phonemes) >= 3 and len(s.words) >= 1
    # another voice says the same line differently; the same call gives the same samples, also when
    # rendered afresh after other utterances (eSpeak carries state between calls in one process)
    assert not np.array_equal(speak(lines[0], language, "high").audio, s.audio)
    assert np.array_equal(speak(lines[0], language, "low").audio, s.audio)


def test_bad_lines_and_languages_are_refused_naming_what_is_allowed():
    with pytest.raises(ValueError, match=r"language: 'Klingon' is not supported; supported: en \(English\)"):
        spoken_line('A face says "qapla" in Klingon.')
    with pytest.raises(ValueError, match="Mandarin is written in CJK script, but the line uses LATIN"):
        spoken_line('A face says "ni hao" in Mandarin.')
    with pytest.raises(ValueError, match="line: empty"):
        check_line("   ", "fr")
    with pytest.raises(ValueError, match="at most 60"):
        check_line("word " * 20, "en")
    with pytest.raises(ValueError, match="voice: 'whisper' is not one of low"):
        speak("hello", "en", "whisper")
    assert spoken_line('In Japanese, a red face says "こんにちは".') == ("こんにちは", "ja")
    assert spoken_line('A face speaks german: "hallo".') == ("hallo", "de")
    assert spoken_line('A ball "falls" in slow motion.') is None  # no language named: not a line to check
    assert spoken_line('A neon sign reads "OPEN" in Red letters.') is None  # not a language's name
    assert spoken_line('In January, a man says "hello".') is None
    with pytest.raises(ValueError, match="'Russian' is not supported"):
        spoken_line('A face says "privet" in Russian.')


def test_splits_hold_out_lines_and_one_voice_per_language():
    for language in LANGUAGES:
        train, test = set(split_lines(language, "train")), set(split_lines(language, "test"))
        assert len(test) == TEST_LINES and not train & test
        assert split_voices(language, "test") == [held_out_voice(language)]
        assert held_out_voice(language) not in split_voices(language, "train")
    assert len({held_out_voice(lang) for lang in LANGUAGES}) == len(VOICES)  # every voice is heard in train
    for seed in range(40):
        for split in ("train", "test"):
            talk = make_clip(seed, split, kind="talk").meta["talk"]
            assert talk["line"] in split_lines(talk["language"], split)
            assert talk["voice"] in split_voices(talk["language"], split)


def test_talk_clips_are_deterministic_and_their_ground_truth_matches_picture_and_sound():
    a, b = make_clip(5, kind="talk"), make_clip(5, kind="talk")
    assert a.frames.tobytes() == b.frames.tobytes() and a.audio.tobytes() == b.audio.tobytes()
    assert json.dumps(a.meta) == json.dumps(b.meta)
    talk, facts = a.meta["talk"], a.meta["facts"]
    name = LANGUAGES[talk["language"]].name
    assert f'"{talk["line"]}"' in a.caption and name in a.caption
    assert facts["speech"]["speaker"]["colour"] in a.caption and facts["count"] == 0
    # the voice sounds exactly between the line's start and end; the mouth moves only then
    sr = a.sample_rate
    first, last = talk["start_sample"], int(round(talk["end"] * sr))
    assert np.abs(a.audio[:, :first]).max() == 0 and np.abs(a.audio[:, first : first + 800]).max() > 0.01
    assert np.abs(a.audio[:, last + 2 :]).max() == 0
    opening, times = np.array(talk["mouth_opening"]), np.array(talk["frame_times"])
    assert len(opening) == len(a.frames) and opening.max() > 0.3
    assert np.all(opening[times < talk["start"] - 0.15] < 0.01) and np.all(opening[times > talk["end"] + 0.15] < 0.01)
    # a physics clip is the same with or without the kind named; a mixed one keeps its objects
    assert make_clip(5).frames.tobytes() == make_clip(5, kind="physics").frames.tobytes()
    mixed = make_clip(5, kind="mixed")
    assert mixed.meta["facts"]["count"] >= 1 and "speech" in mixed.meta["facts"]
    assert mixed.meta["facts"]["speech"]["speaker"]["colour"] not in {
        o["colour"] for o in mixed.meta["facts"]["objects"]
    }
    with pytest.raises(ValueError, match="kind: must be one of physics, talk, mixed"):
        make_clip(5, kind="song")


def _through_mp4(clip, tmp_path):
    path = save_video(tmp_path / "c.mp4", clip.frames, clip.fps, clip.audio, clip.sample_rate)
    return read_video(path)


def test_lip_sync_metric_finds_ground_truth_in_sync_and_a_200_ms_shift_by_200_ms(tmp_path):
    from happyhorse.eval.speech import lip_sync, mouth_opening, speech_envelope, speech_spans

    frame_ms = 1000 / 12
    for seed in range(6):
        truth = make_clip(seed, "test", kind="talk")
        clip = _through_mp4(truth, tmp_path)
        mouth = mouth_opening(clip.frames, truth.meta["facts"]["speech"]["speaker"]["colour"])
        assert np.corrcoef(mouth, truth.meta["talk"]["mouth_opening"])[0, 1] > 0.8
        spans = speech_spans(clip.audio, clip.sample_rate)
        offset, confidence = lip_sync(mouth, clip.fps, speech_envelope(clip.audio, clip.sample_rate), spans)
        assert abs(offset) <= frame_ms and confidence > 0.5, seed
        shift = int(0.2 * clip.sample_rate)
        late = np.concatenate([np.zeros_like(clip.audio[:, :shift]), clip.audio[:, :-shift]], axis=1)
        moved, _ = lip_sync(
            mouth, clip.fps, speech_envelope(late, clip.sample_rate), speech_spans(late, clip.sample_rate)
        )
        assert abs(moved - offset - 200) <= frame_ms, seed


def test_speech_similarity_wer_and_presence_fall_for_another_line_or_no_voice(tmp_path):
    from happyhorse.eval.speech import speech_similarity, speech_spans, speech_wer

    same, swapped, wer_same, wer_swapped = [], [], [], []
    for seed in range(12):
        truth = make_clip(seed, "test", kind="talk")
        clip = _through_mp4(truth, tmp_path)
        said = truth.meta["facts"]["speech"]
        spans = speech_spans(clip.audio, clip.sample_rate)
        other = next(line for line in split_lines(said["language"], "test") if line != said["line"])
        same.append(speech_similarity(clip.audio, clip.sample_rate, said["line"], said["language"], spans))
        swapped.append(speech_similarity(clip.audio, clip.sample_rate, other, said["language"], spans))
        if said["language"] == "en":
            wer_same.append(speech_wer(clip.audio, clip.sample_rate, said["line"])[0])
            wer_swapped.append(speech_wer(clip.audio, clip.sample_rate, other)[0])
    assert np.mean(same) > 0.8 and np.mean(swapped) < 0.5 and np.mean(same) > np.mean(swapped) + 0.4
    assert wer_same and np.mean(wer_same) < np.mean(wer_swapped)
    # Silero VAD: a talk clip's voice is speech, a physics clip's impacts and ambience mostly not
    talk = make_clip(0, "test", kind="talk")
    spoken = sum(b - a for a, b in speech_spans(talk.audio, talk.sample_rate))
    assert abs(spoken - (talk.meta["talk"]["end"] - talk.meta["talk"]["start"])) < 0.4
    quiet = [sum(b - a for a, b in speech_spans(c.audio, c.sample_rate)) for c in map(make_clip, range(4))]
    assert np.mean(quiet) < 0.35


def test_eval_reports_speech_metrics_per_language_and_keeps_faces_out_of_object_counts(tmp_path):
    result = runner.invoke(
        app, ["world", "sample", "--kind", "talk", "--split", "test", "--count", "3", "--out", str(tmp_path / "w")]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["world", "sample", "--kind", "mixed", "--split", "test", "--count", "2", "--out", str(tmp_path / "w")]
    )
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "w" / "test_talk_000000.json").read_text())
    assert sidecar["kind"] == "talk" and {"phonemes", "words", "mouth_opening"} <= set(sidecar["talk"])
    result = runner.invoke(app, ["eval", "--clips", str(tmp_path / "w"), "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    metrics = report["metrics"]
    assert metrics["lip_sync_offset_ms"]["clips"] == 5 and metrics["lip_sync_offset_ms"]["score"] >= 0.8
    assert metrics["speech_similarity"]["value"] > 0.6 and metrics["count_accuracy"]["value"] == 1.0
    spoken = {json.loads(p.read_text())["talk"]["language"] for p in (tmp_path / "w").glob("*.json")}
    assert set(report["by_language"]) == spoken
    assert all("lip_sync_offset_ms" in by for by in report["by_language"].values())
    bad = runner.invoke(app, ["world", "sample", "--kind", "song", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--kind" in bad.output


def test_captions_give_back_the_line_its_language_and_speaker():
    from happyhorse.eval.world import facts_from_caption

    for seed in range(30):
        clip = make_clip(seed, kind="talk" if seed % 3 else "mixed")
        said = clip.meta["facts"]["speech"]
        for caption in clip.meta["captions"]:
            parsed = facts_from_caption(caption)["speech"]
            assert parsed == {
                "line": said["line"],
                "language": said["language"],
                "speaker": {"colour": said["speaker"]["colour"]},
            }, caption


def test_generate_refuses_a_line_the_world_cannot_say_before_any_work(tmp_path):
    from tests.conftest import tiny_pipeline

    tiny_pipeline().save_pretrained(tmp_path / "m")
    out = tmp_path / "clip.mp4"
    for prompt, needle in [
        ('A red face says "hola" in Klingon.', "supported: en (English)"),
        ('A red face says "你好" in French.', "French is written in LATIN script"),
        ('A red face says "" in French.', "line: empty"),
    ]:
        result = runner.invoke(app, ["generate", prompt, "--model", str(tmp_path / "m"), "--output", str(out)])
        text = " ".join(result.output.replace("│", " ").split())
        assert result.exit_code == 2 and "PROMPT" in text.upper() and needle in text, (prompt, result.output)
    assert not out.exists()


def test_a_line_sounds_the_same_whatever_was_said_before(tmp_path, monkeypatch):
    """eSpeak carries state between utterances in one process: each is rendered by a fresh process and
    cached, so a line's samples do not depend on what was spoken before it, cached or not."""
    import shutil

    from happyhorse.world import speech

    monkeypatch.setenv("HAPPYHORSE_CACHE", str(tmp_path))
    monkeypatch.setattr(speech, "_RENDERED", {})
    first = speak("good morning", "en", "low").audio
    speech._RENDERED.clear()
    shutil.rmtree(tmp_path / "speech")
    speak("hello there", "en", "high")
    speak("bonjour", "fr", "deep")
    speech._RENDERED.clear()
    shutil.rmtree(tmp_path / "speech")
    assert np.array_equal(speak("good morning", "en", "low").audio, first)
