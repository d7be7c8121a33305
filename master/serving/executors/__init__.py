"""The ``ScaleExecutor`` implementations, one module per ``executor`` kind."""
