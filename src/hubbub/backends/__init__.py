"""Backends of the broker, presence and history contracts."""
