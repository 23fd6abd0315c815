"""The regulator's and department's web view, served by the hub (``sandbox hub serve --web``).

See ``docs/web.md``. ``create_app`` builds the FastAPI app over the hub's authority and API key
store; ``start_web`` serves it beside the gRPC ports.
"""

from sandbox.web.app import WebServer, create_app, start_web

__all__ = ["WebServer", "create_app", "start_web"]
