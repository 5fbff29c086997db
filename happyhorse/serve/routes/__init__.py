"""The service's routers, one module per resource; `serve.app.create_app` includes them."""

from . import admin, models, operations, studio, videos

ROUTERS = (videos.router, models.router, admin.router, operations.router, studio.router)
