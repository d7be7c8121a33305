"""The upstream sides of a proxied exchange, one module per backend protocol: ``http1`` (pooled HTTP/1.1
connections, ``UpstreamProtocol``) and ``http2`` (one multiplexed HTTP/2 connection per backend, for ``h2c://``
servers and gRPC). Each hands the exchange's ``Downstream`` a response as status and fields."""
