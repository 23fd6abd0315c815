"""``python -m sandbox`` runs the command line."""

from sandbox.cli import app

app()
