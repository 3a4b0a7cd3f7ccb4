"""The service: HTTP front, wiring, settings and CLI. Nothing imports this package."""
