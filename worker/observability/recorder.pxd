# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): the exchange's fields
# are struct reads, and the ledger, access log and tracer are called as C methods of their native classes.
cimport cython
from a3s_gateway.shared.plane.ledger cimport Ledger
from a3s_gateway.worker.exchange cimport Exchange
from a3s_gateway.worker.runtime cimport Backend, Route, Service
from a3s_gateway.worker.observability.access_log cimport AccessLog
from a3s_gateway.worker.observability.tracing cimport Tracer


@cython.final
cdef class Recorder:
    cdef public Ledger ledger
    cdef public dict ep_base
    cdef public AccessLog access_log
    cdef public Tracer tracer
    cdef public Py_ssize_t failures

    @cython.locals(ex=Exchange, status=Py_ssize_t, access_log=AccessLog, tracer=Tracer, route=Route, service=Service,
                   backend=Backend)
    cpdef finish(self, ex, conn)
