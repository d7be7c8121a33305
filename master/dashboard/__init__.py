"""The web dashboard, served by the master on the admin listener (see docs/operations/dashboard.md).

``routes`` is its HTTP side (auth, sessions, CSRF, CSP), ``views`` renders the pages with ``html`` and ``svg``,
``windows`` keeps the rolling one-minute figures sampled from the shared-memory plane.
"""
