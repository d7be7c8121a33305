# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): attribute reads and
# writes become struct fields, and the methods the class calls on itself become C calls (cpdef; final, so no
# per-call check for an override), and the exchange it serves is typed (exchange.pxd), so its fields are struct
# reads too. Every attribute the class or others set must be declared here.
cimport cython
from a3s_gateway.worker cimport exchange
from a3s_gateway.worker.upstream cimport http1 as upstream_http1
from a3s_gateway.worker.http1_request cimport read_request
from a3s_gateway.worker.exchange cimport Exchange
from a3s_gateway.worker.runtime cimport Backend


@cython.final
cdef class ClientProtocol:
    cdef public object worker, limits, entrypoint, scheme, transport, parser, url, headers, queue, out
    cdef public Exchange cur
    cdef public object client_ip, peer, fwd_const, protocol, request_trailers, client, alt_svc
    cdef public bint closed, halted, write_paused, xff_trusted
    cdef public Py_ssize_t port, max_header_bytes, max_header_count, max_pipeline, header_bytes, unparsed
    cdef public Py_ssize_t linger_left
    cdef public double head_deadline, lingering, last_active

    cpdef _drop(self, data)
    @cython.locals(ex=Exchange, up=upstream_http1.UpstreamProtocol)
    cpdef _may_read(self)
    @cython.locals(ex=Exchange)
    cpdef _over_limit(self, ex)
    @cython.locals(ex=Exchange)
    cpdef _reject(self, ex, status, message)
    @cython.locals(ex=Exchange, up=upstream_http1.UpstreamProtocol)
    cpdef _response_source(self)
    @cython.locals(ex=Exchange)
    cpdef _started(self, ex)
    @cython.locals(ex=Exchange)
    cpdef abort(self, ex)
    @cython.locals(ex=Exchange)
    cpdef answer(self, ex, answer)
    @cython.locals(ex=Exchange)
    cpdef body_sent(self, ex)
    @cython.locals(ex=Exchange)
    cpdef body_timed_out(self, ex)
    cpdef close_if_idle(self)
    cpdef close_lingering(self)
    @cython.locals(ex=Exchange)
    cpdef current(self, ex)
    @cython.locals(ex=Exchange)
    cpdef expect_continue(self, ex)
    cpdef fail_request(self, status, message=*)
    @cython.locals(ex=Exchange, backend=Backend)
    cpdef finish(self, ex, trailers=*)
    cpdef flush(self)
    cpdef head_timed_out(self)
    @cython.locals(ex=Exchange)
    cpdef retry_later(self, ex)
    @cython.locals(ex=Exchange)
    cpdef start_exchange(self, ex)
    @cython.locals(ex=Exchange)
    cpdef on_headers_complete(self)
    @cython.locals(ex=Exchange, up=upstream_http1.UpstreamProtocol)
    cpdef on_body(self, body)
    @cython.locals(ex=Exchange, up=upstream_http1.UpstreamProtocol)
    cpdef on_message_complete(self)
    @cython.locals(ex=Exchange)
    cpdef send_head(self, ex, status, reason, fields, length_known, end=*)
    @cython.locals(ex=Exchange)
    cpdef send_body(self, ex, data)
    @cython.locals(ex=Exchange, up=upstream_http1.UpstreamProtocol)
    cpdef bind(self, ex, up)
    @cython.locals(ex=Exchange)
    cpdef connect_upstream(self, ex)


@cython.locals(up=upstream_http1.UpstreamProtocol)
cpdef _drop_upstream(Exchange ex)
