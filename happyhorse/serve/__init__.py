"""The HTTP service (issue 6): OpenAI-shaped video API, persistent jobs, the web studio.

from happyhorse.serve import ServeConfig, create_app
app = create_app(ServeConfig(model="runs/tiny/model", data_dir="serve_data"))
"""

from .app import create_app
from .config import ServeConfig, check_model_dir

__all__ = ["ServeConfig", "check_model_dir", "create_app"]
