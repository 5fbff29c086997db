"""Natural-English captions of a simulated scene, in several phrasings.

Every fact a caption states (colour, size, shape, material, count, motion, direction, number of
bounces, collisions, ambience) is read from the scene and its events, so a caption is never wrong
about its clip, and prompt-following can be scored against the same facts (`scene_facts`).
"""

from __future__ import annotations

import numpy as np

from .scene import MATERIALS, Scene

NUMBERS = {1: "one", 2: "two", 3: "three"}
TIMES = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times"}
SHAPE_WORDS = {
    "ball": ("ball", "ball", "sphere"),
    "box": ("box", "cube", "block"),
    "triangle": ("triangle", "wedge"),
}
SIZE_WORDS = {"small": ("small", "little", "small"), "large": ("large", "big", "large")}
MATERIAL_WORDS = {
    "rubber": "rubber",
    "wood": "wooden",
    "metal": "metal",
    "glass": "glass",
    "plastic": "plastic",
}
SOUND_WORDS = {
    "thud": ("a soft thud", "a dull thump"),
    "knock": ("a wooden knock", "a hollow knock"),
    "clang": ("a metallic clang", "a ringing clang"),
    "clink": ("a glassy clink", "a bright clink"),
    "click": ("a plastic click", "a sharp clack"),
}
AMBIENCE_WORDS = {
    "rain": ("while rain falls outside", "with the sound of rain", "as rain patters"),
    "wind": ("while the wind howls", "with wind blowing", "as a gusty wind blows"),
    "hum": ("over a low electric hum", "with a steady hum in the background", "as a machine hums"),
}


VISIBLE_REBOUND_S = 0.15  # a bounce this close to the clip's end is not seen rising again: not counted


def scene_facts(scene: Scene, events: list[dict], seconds: float = float("inf")) -> dict:
    """What a caption may state, per object: description, motion, direction, visible bounces, hits."""
    facts = []
    for i, o in enumerate(scene.objects):
        bounces = sum(
            1
            for e in events
            if e["kind"] == "bounce"
            and e.get("surface") == "floor"
            and e["objects"] == [i]
            and e["rebound"]
            and e["time"] <= seconds - VISIBLE_REBOUND_S
        )
        walls = sum(
            1 for e in events if e["kind"] == "bounce" and "wall" in e.get("surface", "") and e["objects"] == [i]
        )
        hits = sorted(
            {j for e in events if e["kind"] == "collision" and i in e["objects"] for j in e["objects"] if j != i}
        )
        facts.append(
            {
                "colour": o.colour,
                "shape": o.shape,
                "size": o.size,
                "material": o.material,
                "motion": o.motion,
                "direction": o.direction,
                "bounces": bounces,
                "wall_hits": walls,
                "collides_with": hits,
            }
        )
    return {"count": len(scene.objects), "objects": facts, "ambience": scene.ambience}


def _noun(o: dict, rng: np.random.Generator, material: bool) -> str:
    words = [str(rng.choice(SIZE_WORDS[o["size"]])), o["colour"]]
    if material:
        words.append(MATERIAL_WORDS[o["material"]])
    words.append(str(rng.choice(SHAPE_WORDS[o["shape"]])))
    return " ".join(words)


def with_article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _motion(o: dict, rng: np.random.Generator) -> str:
    bounces = o["bounces"]
    times = TIMES.get(bounces, "several times")
    d = o["direction"]
    if o["motion"] == "drop":
        verb = str(rng.choice(["falls", "drops", "is dropped"]))
        return f"{verb} and bounces {times}" if bounces else f"{verb} and lands without bouncing"
    if o["motion"] == "throw":
        verb = str(rng.choice(["is thrown", "flies", "is tossed"]))
        tail = f" and bounces {times}" if bounces else ""
        return f"{verb} to the {d}{tail}"
    if o["motion"] == "slide":
        verb = "rolls" if o["shape"] == "ball" else str(rng.choice(["slides", "glides"]))
        tail = " and bounces off the wall" if o["wall_hits"] else str(rng.choice([" and comes to a stop", ""]))
        return f"{verb} to the {d}{tail}"
    return str(rng.choice(["rests on the floor", "sits still on the floor"]))


def captions(
    scene: Scene, events: list[dict], rng: np.random.Generator, n: int = 3, seconds: float = float("inf")
) -> list[str]:
    """`n` different phrasings of the same scene; the first is the clip's caption."""
    facts = scene_facts(scene, events, seconds)
    objs = facts["objects"]
    out: list[str] = []
    for k in range(n * 4):
        material = bool(rng.random() < 0.6)
        nouns = [_noun(o, rng, material) for o in objs]
        clauses = [f"{with_article(nouns[i])} {_motion(o, rng)}" for i, o in enumerate(objs)]
        if len(objs) == 1:
            sound = str(rng.choice(SOUND_WORDS[MATERIALS[objs[0]["material"]].sound]))
            forms = [
                clauses[0],
                f"{clauses[0]}, making {sound} on each impact"
                if objs[0]["bounces"] or objs[0]["wall_hits"]
                else clauses[0],
                f"in an empty room, {clauses[0]}",
            ]
            text = forms[k % len(forms)]
        else:
            count = NUMBERS[len(objs)]
            joined = ", ".join(clauses[:-1]) + " and " + clauses[-1]
            forms = [joined, f"{count} objects: {joined}", f"{count} shapes in a room: {joined}"]
            text = forms[k % len(forms)]
            for e in events:
                if e["kind"] == "collision" and e["audible"]:
                    i, j = e["objects"]
                    text += (
                        f"; the {objs[i]['colour']} {objs[i]['shape']} hits the {objs[j]['colour']} {objs[j]['shape']}"
                    )
                    break
        if scene.ambience:
            text += " " + str(rng.choice(AMBIENCE_WORDS[scene.ambience]))
        text = text[0].upper() + text[1:] + "."
        if text not in out:
            out.append(text)
        if len(out) == n:
            break
    return out
