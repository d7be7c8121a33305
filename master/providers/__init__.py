"""Where configuration comes from besides the main file, run in the master: ``file`` (watching the config
file and its conf.d directory), ``dns`` (re-resolving server host names), ``discovery`` (backends that
describe themselves at ``/.well-known/a3s-service.json``), and the providers that keep to ``provider.py``'s
contract: the stores ``redis``, ``etcd`` and ``consul`` (the key layout in ``kv.py``) and ``docker`` (labels)."""
