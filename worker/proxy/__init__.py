"""Protocol proxies beside plain HTTP: WebSocket (``websocket``, over ``tunnel``), TCP with SNI routing (``tcp``,
``clienthello``), UDP (``udp``), and how gateway failures reach gRPC clients (``grpc_status``)."""
