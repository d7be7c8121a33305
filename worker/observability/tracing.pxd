# Native classes for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): a span starts and
# finishes on the native Exchange's fields as struct reads, and the Span's own fields are struct fields. Every
# attribute set on them must be declared here.
cimport cython
from a3s_gateway.worker.exchange cimport Exchange


@cython.final
cdef class Span:
    cdef public str trace_id, span_id, parent_id, client_id
    cdef public bint sampled
    cdef public object tracestate


@cython.final
cdef class Tracer:
    cdef public object exporter
    cdef public str pool
    cdef public Py_ssize_t pos
    cdef public double sample_rate
    cdef public bint w3c, b3, b3multi, always

    @cython.locals(ex=Exchange, i=Py_ssize_t, pool=str, name=bytes, span=Span, trace_id=str, span_id=str,
                   client_id=str)
    cpdef start(self, ex)
    @cython.locals(ex=Exchange, span=Span)
    cpdef finish(self, ex, span, double now, entrypoint)
