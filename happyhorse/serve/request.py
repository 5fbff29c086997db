"""POST /v1/videos as OpenAI shapes it, turned into the pipeline's request: the one place where the
API's names meet `GenerateRequest`'s.

OpenAI's names map here and nowhere else: `size` "WIDTHxHEIGHT" -> `width`, `height`; `seconds` (a string
in OpenAI's API) -> `seconds` (a number); `input_reference` -> `image`; `audio_reference` (HappyHorse's) ->
`audio`. Every other field (`seed`, `num_inference_steps`, `guidance_scale`, `audio_guidance_scale`) is
`GenerateRequest`'s under the same name. A job stores its request's fields by those names, and the
worker builds `GenerateRequest(**fields)` from them.

Values are checked by the pipeline's own validator (`generate.check_request`); the server adds only
its policy (`ServeConfig`: prompt length, seconds, pixels and steps one job may take).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import tempfile
import uuid
from pathlib import Path

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from ..generate import GenerateRequest, check_request, parse_size
from ..media import MediaError, read_audio, read_image, save_audio, save_image
from ..pipeline import MAX_SECONDS as PIPELINE_MAX_SECONDS
from .config import ServeConfig
from .errors import APIError, BodyTooLarge
from .store import Job

DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(;[\w=.+-]+)*;base64,(.*)$", re.DOTALL)
API_PARAM = {"width": "size", "height": "size", "image": "input_reference", "audio": "audio_reference"}
UPLOADS = {"input_reference": "image_url", "audio_reference": "audio_url"}  # file parts, or JSON data URLs


class VideoCreateParams(BaseModel):
    """The fields of POST /v1/videos. Multipart requests (the openai client's) carry the same fields as
    form fields, with `input_reference` (first frame) and `audio_reference` (soundtrack) as file parts;
    JSON requests give them as `{"image_url": "data:..."}` / `{"audio_url": "data:..."}`."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="What to generate.")
    model: str | None = Field(None, description="The served model's id (GET /v1/models); default: it.")
    seconds: str | float | None = Field(None, description='Clip length in seconds, e.g. "4" or "1.5".')
    size: str | None = Field(None, description='WIDTHxHEIGHT in pixels, e.g. "64x64"; default: the model\'s.')
    seed: int | None = Field(None, description="Random seed; the same seed gives the same clip. Default 0.")
    num_inference_steps: int | None = Field(None, description="Sampling steps; default: the model's.")
    guidance_scale: float | None = Field(None, description="Classifier-free guidance; default: the model's.")
    audio_guidance_scale: float | None = Field(None, description="Guidance of the sound; default: the model's.")
    input_reference: dict[str, str] | None = Field(None, description='First frame: {"image_url": data URL}.')
    audio_reference: dict[str, str] | None = Field(None, description='Soundtrack: {"audio_url": data URL}.')
    priority: int | None = Field(
        None, ge=-100, le=100, description="On a shared queue (PostgreSQL): higher runs first; default 0."
    )
    shots: list[str] | str | None = Field(
        None,
        description="Multi-shot: one prompt per shot, hard cuts between, each after `prompt` (which may then "
        'be empty); a JSON array, in a form as its text, e.g. ["a red ball drops", "it rolls away"].',
    )


def create_request_schema() -> dict:
    """POST /v1/videos's request body in the OpenAPI schema: a form (with file parts) or JSON."""
    json_schema = VideoCreateParams.model_json_schema()
    form = {k: v for k, v in json_schema["properties"].items() if k not in UPLOADS}
    form["seconds"] = {"type": "string"}
    form.update({name: {"type": "string", "format": "binary"} for name in UPLOADS})
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "required": ["prompt"], "properties": form}},
                "application/json": {"schema": json_schema},
            },
        }
    }


# ------------------------------------------------------------------------------------------ the body


async def read_create_body(request: Request) -> tuple[dict, dict[str, bytes]]:
    """The request's fields and uploaded files, from JSON or a form; 4xx for anything else."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            body = await request.json()
        except (ValueError, RecursionError):
            raise APIError(400, "request body: not valid JSON", code="invalid_json") from None
        if not isinstance(body, dict):
            raise APIError(400, f"request body: must be a JSON object, got {type(body).__name__}")
        return body, {}
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise APIError(
            415,
            f"Content-Type: must be multipart/form-data or application/json, got {ctype or 'none'!r}",
            code="unsupported_media_type",
        )
    try:
        form = await request.form(max_files=2, max_fields=32)
    except BodyTooLarge:
        raise
    except Exception as exc:  # multipart syntax errors arrive under several exception types
        raise APIError(400, f"request body: not a readable form ({exc})", code="invalid_form") from None
    fields, files = {}, {}
    for key in form:
        values = form.getlist(key)
        if len(values) > 1:
            raise APIError(400, f"{key}: given {len(values)} times; give it once", param=key)
        value = values[0]
        if isinstance(value, UploadFile):
            if key not in UPLOADS:
                raise APIError(400, f"{key}: a file was uploaded where a value was expected", param=key)
            files[key] = await value.read()
        elif key in UPLOADS:
            raise APIError(400, f"{key}: must be a file part (an image / a sound), got a plain field", param=key)
        else:
            fields[key] = value
    await form.close()
    return fields, files


def parse_params(fields: dict) -> VideoCreateParams:
    """The fields as typed parameters; an unknown or mistyped one is a 400 naming it."""
    try:
        return VideoCreateParams.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        if first["type"] == "extra_forbidden":
            raise APIError(400, f"{param}: unknown parameter", param=param, code="unknown_parameter") from None
        raise APIError(400, f"{param}: {first['msg']}", param=param, code="invalid_value") from None


def uploads(params: VideoCreateParams, files: dict[str, bytes]) -> tuple[bytes | None, bytes | None]:
    """(first frame, soundtrack) bytes: the form's file parts, else the JSON data URLs."""
    found = []
    for param, key in UPLOADS.items():
        if param in files and not files[param]:
            raise APIError(400, f"{param}: the upload is empty", param=param)
        found.append(files.get(param) or _data_url(getattr(params, param), key, param))
    return found[0], found[1]


def _data_url(reference: dict[str, str] | None, key: str, param: str) -> bytes | None:
    if reference is None:
        return None
    unknown = sorted(set(reference) - {key})
    if unknown or key not in reference:
        raise APIError(
            400,
            f"{param}: give {{{key!r}: a base64 data: URL}} (file ids and other keys are not supported), "
            f"got keys {sorted(reference)}",
            param=param,
        )
    match = DATA_URL.match(reference[key])
    if not match:
        raise APIError(
            400, f"{param}.{key}: only base64 data: URLs are accepted (this server fetches nothing)", param=param
        )
    try:
        return base64.b64decode(match[3], validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, f"{param}.{key}: the data URL is not valid base64", param=param) from None


def store_reference(data: bytes, kind: str, config: ServeConfig, storage) -> tuple[str, float | None]:
    """Decode an uploaded first frame or soundtrack (bounded by media's limits), then store it re-encoded
    as PNG / WAV: the worker never reads a user's bytes in a format we did not write. Returns its storage
    key and, for audio, its length in seconds."""
    folder = config.data_path / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    param = "input_reference" if kind == "image" else "audio_reference"
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".upload.", delete=False) as tmp:
        tmp.write(data)
    encoded = Path(f"{tmp.name}.{'png' if kind == 'image' else 'wav'}")
    try:
        length = None
        if kind == "image":
            array = read_image(tmp.name)
            if min(array.shape[:2]) < 2:
                raise MediaError(f"image of {array.shape[1]}x{array.shape[0]} pixels; at least 2x2 is needed")
            save_image(encoded, array)
        else:
            audio, rate = read_audio(tmp.name, max_seconds=PIPELINE_MAX_SECONDS)
            save_audio(encoded, audio, rate)
            length = audio.shape[1] / rate
        key = f"inputs/{uuid.uuid4().hex}{encoded.suffix}"
        storage.put_file(key, encoded)
        return key, length
    except MediaError as exc:
        message = str(exc).replace(tmp.name, "the upload")
        raise APIError(400, f"{param}: {message}", param=param, code="invalid_media") from None
    finally:
        Path(tmp.name).unlink(missing_ok=True)
        encoded.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ the request


def request_fields(params: VideoCreateParams, pipe, model_id: str, defaults: dict, config: ServeConfig) -> dict:
    """`GenerateRequest`'s fields for the parameters (but the prompt and the uploads), checked once by the
    pipeline's validator and then against this server's policy. `defaults` gives `width` and `height`
    when no size is asked for; `seconds` stays None when none is (the soundtrack or the model decides)."""
    shots = _parse_shots(params.shots)
    _check_prompt(params.prompt, config, allow_empty=bool(shots))
    if params.model is not None and params.model != model_id:
        raise APIError(
            400, f"model: unknown model {params.model[:80]!r}; this server serves {model_id!r}", param="model"
        )
    width, height = _parse_size(params.size) if params.size is not None else (defaults["width"], defaults["height"])
    fields = {
        "seconds": _parse_seconds(params.seconds),
        "width": width,
        "height": height,
        "seed": params.seed if params.seed is not None else 0,
        "num_inference_steps": params.num_inference_steps,
        "guidance_scale": params.guidance_scale,
        "audio_guidance_scale": params.audio_guidance_scale,
    }
    if shots:
        fields["shots"] = shots
    try:
        check_request(pipe, GenerateRequest(params.prompt, **fields))
    except ValueError as exc:
        field, _, problem = str(exc).partition(":")
        param = API_PARAM.get(field, field)
        message = str(exc) if param == field else f"{param}: {field}{problem}"
        raise APIError(400, message, param=param, code="invalid_value") from None
    _check_policy(fields, config)
    return fields


def _parse_shots(value: list[str] | str | None) -> tuple[str, ...]:
    """The shots' prompts: a JSON array of strings (a form sends its text); each non-empty."""
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise APIError(400, 'shots: must be a JSON array of strings, e.g. ["a", "b"]', param="shots") from None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise APIError(400, "shots: must be a list of non-empty strings", param="shots")
    return tuple(value)


def _check_prompt(prompt: str, config: ServeConfig, allow_empty: bool = False) -> None:
    if not prompt.strip() and not allow_empty:
        raise APIError(400, "prompt: must not be empty", param="prompt")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise APIError(400, "prompt: not valid Unicode text (it holds a lone surrogate)", param="prompt") from None
    if "\x00" in prompt:
        raise APIError(400, "prompt: must not contain NUL characters", param="prompt")
    if len(prompt) > config.max_prompt_chars:
        raise APIError(
            400,
            f"prompt: at most {config.max_prompt_chars} characters, got {len(prompt)}",
            param="prompt",
            code="prompt_too_long",
        )


def _parse_size(value: str) -> tuple[int, int]:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise APIError(400, str(exc), param="size") from None


def _parse_seconds(value: str | float | None) -> float | None:
    if value is None or not isinstance(value, str):
        return value
    try:
        return float(value.strip())
    except ValueError:
        raise APIError(
            400, f'seconds: must be a number such as "4" or "1.5", got {value[:40]!r}', param="seconds"
        ) from None


def _check_policy(fields: dict, config: ServeConfig) -> None:
    """What one job may take on this server (ServeConfig), beyond what the pipeline allows."""
    seconds = fields["seconds"]
    if seconds is not None and not config.min_seconds <= seconds <= config.max_seconds:
        raise APIError(
            400,
            f"seconds: must be a number in [{config.min_seconds:g}, {config.max_seconds:g}] on this server, "
            f"got {seconds:g}",
            param="seconds",
        )
    width, height = fields["width"], fields["height"]
    if max(width, height) > config.max_side:
        raise APIError(
            400, f"size: each side at most {config.max_side} pixels on this server, got {width}x{height}", param="size"
        )
    if width * height > config.max_pixels:
        raise APIError(400, f"size: {width}x{height} exceeds the limit of {config.max_pixels} pixels", param="size")
    steps = fields["num_inference_steps"]
    if steps is not None and steps > config.max_steps:
        raise APIError(
            400,
            f"num_inference_steps: at most {config.max_steps} on this server, got {steps}",
            param="num_inference_steps",
        )


def job_request(job: Job, inputs: dict[str, Path]) -> GenerateRequest:
    """The pipeline's request for a stored job: its params are `GenerateRequest`'s fields by name, the
    uploads (storage keys) as the local files `inputs` holds; `mode`, the API's own, stays behind."""
    fields = {k: v for k, v in job.params.items() if k in GenerateRequest.field_names()}
    for key in ("image", "audio"):
        if fields.get(key):
            fields[key] = inputs[key]
    if "shots" in fields:
        fields["shots"] = tuple(fields["shots"])
    return GenerateRequest(prompt=job.prompt, **fields)
