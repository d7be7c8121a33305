# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): a stream's fields are a
# struct, the exchange it serves is typed (exchange.pxd) and so is the HTTP/1.1 upstream connection it binds
# (upstream/http1.pxd), so their fields are struct reads and the steps between them C calls. Not final: HTTP/3's
# ``H3Stream`` subclasses it. The server stays untyped (an ``H2Server`` or an HTTP/3 connection).
cimport cython
from a3s_gateway.worker cimport exchange
from a3s_gateway.worker.exchange cimport Exchange
from a3s_gateway.worker.runtime cimport Backend
from a3s_gateway.worker.upstream cimport http1 as upstream_http1
from a3s_gateway.worker.http2.fields cimport read_request


cdef class Stream:
    cdef public object server, worker, entrypoint, client_ip, peer, scheme, port, fwd_const, alt_svc, id
    cdef public object request_trailers
    cdef public Exchange ex
    cdef public bint grpc, head_sent, hold
    cdef public Py_ssize_t length, held, unacked, body_mark
    cdef public double body_since

    @cython.locals(ex=Exchange)
    cpdef current(self, ex)
    @cython.locals(ex=Exchange, backend=Backend)
    cpdef connect_upstream(self, ex)
    @cython.locals(ex=Exchange, up=upstream_http1.UpstreamProtocol, names=list)
    cpdef bind(self, ex, up)
    @cython.locals(ex=Exchange)
    cpdef body_to_send(self, ex)
    @cython.locals(ex=Exchange)
    cpdef body_sent(self, ex)
    @cython.locals(ex=Exchange)
    cpdef want_body(self, ex)
    cpdef hold_body(self)
    cpdef release_body(self)
    @cython.locals(ex=Exchange)
    cpdef fail(self, ex, error)
    @cython.locals(ex=Exchange)
    cpdef retry_later(self, ex)
    @cython.locals(ex=Exchange)
    cpdef send_head(self, ex, status, reason, fields, length_known, end=*)
    @cython.locals(ex=Exchange)
    cpdef send_body(self, ex, data)
    cpdef flush(self)
    @cython.locals(ex=Exchange)
    cpdef finish(self, ex, trailers=*)
    @cython.locals(ex=Exchange)
    cpdef answer(self, ex, answer)
    cpdef note_grpc_status(self, headers)
    @cython.locals(ex=Exchange, up=upstream_http1.UpstreamProtocol, data=bytes)
    cpdef request_data(self, data, Py_ssize_t flow_length)
    @cython.locals(ex=Exchange, up=upstream_http1.UpstreamProtocol)
    cpdef request_ended(self, trailers=*)
    cpdef ack(self, Py_ssize_t size)
    @cython.locals(ex=Exchange, up=upstream_http1.UpstreamProtocol)
    cpdef _stop_upstream(self)


cpdef list _h2_fields(status, fields)
@cython.locals(ex=Exchange, stream=Stream, limit=Py_ssize_t, length=Py_ssize_t)
cpdef serve_request(server, stream_id, fields, bint ended, event)
