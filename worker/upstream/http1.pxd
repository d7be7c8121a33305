# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): attribute reads and
# writes become struct fields, and the methods the class calls on itself become C calls (cpdef; final, so no
# per-call check for an override); the exchange it serves is typed (exchange.pxd). Every attribute set on it must
# be declared here (the .py lists them in __slots__).
cimport cython
from a3s_gateway.worker cimport exchange
from a3s_gateway.worker.exchange cimport Exchange
from a3s_gateway.worker.services.upstream_pool cimport UpstreamPool

cdef bytes _SPECIAL_LENGTHS


@cython.final
cdef class UpstreamProtocol:
    cdef public UpstreamPool pool
    cdef public object transport, parser, client, reason, headers, peeked
    cdef public Exchange ex
    cdef public bint alive, reused, got_bytes, client_paused, reading_paused, waiting_head
    cdef public int mode
    cdef public Py_ssize_t head_bytes, raw_head
    cdef public double deadline, idle_since

    @cython.locals(ex=Exchange)
    cpdef _drop_for_retry(self, client, ex)
    @cython.locals(field=tuple, name=bytes, size=Py_ssize_t, ln=bytes, fields=list)
    cpdef _fields(self, version)
    @cython.locals(ex=Exchange)
    cpdef _filter_tail(self, client, ex)
    @cython.locals(ex=Exchange)
    cpdef _head(self, client, ex, status, fields, has_cl, up_chunked)
    @cython.locals(ex=Exchange)
    cpdef _unpeek(self)
    cpdef close(self)
    @cython.locals(ex=Exchange)
    cpdef on_body(self, body)
    cpdef resume_reading(self)
    @cython.locals(ex=Exchange)
    cpdef on_headers_complete(self)
    @cython.locals(ex=Exchange)
    cpdef on_message_complete(self)
    @cython.locals(ex=Exchange)
    cpdef bind(self, client, ex, timeout)


# The module's steps, typed on the native Exchange (struct reads) and called as C functions (http1.pxd cimports
# this module).
@cython.locals(pool=UpstreamPool)
cpdef proxy(conn, Exchange ex)
cpdef bytes request_head(Exchange ex, conn)
