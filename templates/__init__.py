"""Jinja2 templates of the text formats: package data, read with importlib.resources (see compiler/paths.py)."""
