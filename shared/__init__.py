"""What master and workers both import: ``config/`` (schema, loading, validation), ``rules/`` (the rule grammar),
``compiled`` (what the master hands to workers), ``plane/`` (the shared-memory plane), ``vocabulary`` (the words
of the AI extensions), ``errors`` (the exception tree), ``channel`` (master↔worker messages), ``ipmatch`` and
``log``."""
