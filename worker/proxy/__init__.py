"""Protocol proxies beside plain HTTP: WebSocket, gRPC, TCP and UDP (one module each)."""
