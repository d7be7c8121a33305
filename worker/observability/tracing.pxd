# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): a span starts and
# finishes on the native Exchange's fields as struct reads. Every attribute set on it must be declared here.
cimport cython
from a3s_gateway.worker.exchange cimport Exchange


@cython.final
cdef class Tracer:
    cdef public object exporter
    cdef public str pool
    cdef public Py_ssize_t pos
    cdef public double sample_rate
    cdef public bint w3c, b3, b3multi, always

    @cython.locals(ex=Exchange, i=Py_ssize_t)
    cpdef start(self, ex)
    @cython.locals(ex=Exchange)
    cpdef finish(self, ex, span, double now, entrypoint)
