"""The FAB's components: the sandbox's deployed ServerApp and ClientApp."""

from sandbox.deployment.apps import client_app, server_app

__all__ = ["client_app", "server_app"]
