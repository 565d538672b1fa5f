"""What users write: `Workflow` and its steps, spawned tasks, the `StepContext` a handler
receives, step options, and how a handler's parameters are bound to run input and outputs.

Internal: the public API is `plait.__all__`.
"""
