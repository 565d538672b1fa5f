"""Internal: declarative workflows. A YAML file read with the position of every node (source),
a small safe expression language (expressions), the actions steps call (actions), and the
loader that checks a file and builds the same `Workflow` the Python API builds (loader).
Users import `plait.load` and `plait.action`, never this package."""
