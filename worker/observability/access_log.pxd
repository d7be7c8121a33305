# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): a line is built from
# the native Exchange's fields as struct reads (an interpreted read of one goes through a descriptor), and the
# settings are struct fields. Every attribute set on it must be declared here.
cimport cython
from a3s_gateway.worker.exchange cimport Exchange
from a3s_gateway.worker.observability.tracing cimport Span

cdef list _DEC, _FRAC


@cython.final
cdef class Clock:
    cdef public Py_ssize_t sec
    cdef public str rfc, clf
    cdef public bytes rfcb


@cython.final
cdef class AccessLog:
    cdef public object writer, loop, count, only, capture, redact, ranges, format, buf, timer
    cdef public Clock clock
    cdef public dict consts, escaped
    cdef public object slot
    cdef public Py_ssize_t buffer_size, size
    cdef public bint drop_query, filtered, json, fast, _wants_ai
    cdef public double min_duration, flush_interval

    @cython.locals(ex=Exchange)
    cpdef log(self, ex, conn, double now)
    cpdef _escape(self, bytes value)
    @cython.locals(ex=Exchange)
    cpdef _const(self, ex, conn, key)
    @cython.locals(ex=Exchange, us=Py_ssize_t, ms=Py_ssize_t, up=Py_ssize_t, n_in=Py_ssize_t, n_out=Py_ssize_t,
                   sec=Py_ssize_t, t=double, clock=Clock, span=Span, path=bytes, query=bytes)
    cpdef bytes _json(self, ex, conn, double now, double seconds, Py_ssize_t status)
    cpdef flush(self)
