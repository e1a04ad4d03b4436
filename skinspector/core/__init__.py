"""Shared core: everything several packages need, imported by all of them.

Settings, the prompt, the case schema, image preparation and the llama.cpp engine live
here so that the edge server, training/evaluation and the CLI use exactly the same code.
Nothing in this package imports any other ``skinspector`` package.
"""
