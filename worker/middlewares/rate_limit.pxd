# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): on the full benchmark's
# route, so ``on_request`` is a C call from the chain and the key and the plane's take C calls from it.
cimport cython
from a3s_gateway.shared.plane.ratelimit cimport Taker
from a3s_gateway.worker.chain cimport Middleware
from a3s_gateway.worker.middlewares._support.limit_key cimport LimitKey


cdef class RateLimit(Middleware):
    cdef readonly Taker taker
    cdef readonly Py_ssize_t idx
    cdef readonly double rate, burst
    cdef readonly LimitKey key
    cdef readonly object fields

    @cython.locals(admitted=bint)
    cpdef on_request(self, ex)
