"""Entry point of a worker process: ``python -m a3s_gateway.worker --slot N --channel-fd FD``.

Started by the master only; everything the worker needs (sockets, entrypoints, the first generation) arrives
over the control channel.
"""

from .process import main

raise SystemExit(main())
