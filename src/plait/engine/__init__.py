"""The Engine: the facade users call (`engine.py`), and the operations it delegates to.

Internal: the public API is `plait.__all__`.
"""
