"""JSON Schemas of every parameter: package data, read with importlib.resources (see compiler/paths.py)."""
