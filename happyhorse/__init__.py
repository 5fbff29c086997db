"""HappyHorse: joint video + audio generation with a single-stream Transformer."""

from .media import Clip, MediaError, read_audio, read_image, read_video, save_audio, save_video

__version__ = "0.1.0"


def __getattr__(name: str):
    # the pipeline pulls in torch and the model: imported on first use, so `happyhorse world` starts fast
    if name in ("HappyHorsePipeline", "HappyHorseOutput"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "SamplingConfig":
        from .diffusion.sampling import SamplingConfig

        return SamplingConfig
    if name == "Condition":
        from .conditioning import Condition

        return Condition
    if name in ("Components", "build_components"):
        from . import components

        return getattr(components, name)
    raise AttributeError(f"module 'happyhorse' has no attribute {name!r}")


__all__ = [
    "Clip",
    "Components",
    "Condition",
    "HappyHorseOutput",
    "HappyHorsePipeline",
    "MediaError",
    "SamplingConfig",
    "build_components",
    "read_audio",
    "read_image",
    "read_video",
    "save_audio",
    "save_video",
]
