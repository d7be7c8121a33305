"""Where configuration comes from besides the main file, run in the master: ``file`` (watching the config
file and its conf.d directory), ``dns`` (re-resolving server host names) and ``discovery`` (backends that
describe themselves at ``/.well-known/a3s-service.json``)."""
