"""Helpers several middlewares share, kept apart so that ``worker/middlewares/`` holds one module per config
``type`` and nothing else: request-target rewriting (``paths``), what a rate limiter counts by (``limit_key``),
the plane index of a stateful middleware (``plane_slot``), whole-body buffering (``body_buffer``), the prompt
text of an AI request (``prompt_text``) and the parts of ``semantic-cache`` (``cache_store``, ``embeddings``,
``completion_stream``).
Nothing here is a middleware; the package is private to the middlewares."""
