"""The data users read and write beside runs: records (documents with revisions) and artifacts
(files steps save).

Internal: the public API is `plait.__all__`.
"""
