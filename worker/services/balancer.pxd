# Native classes for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): a strategy's pick is
# compiled with its state as C fields. Strategies in plain Python (panic.py, weighted.py) extend the base.
cimport cython


cdef class Balancer:
    cdef public list backends
    cdef dict __dict__            # the attributes of strategies in plain Python

    cpdef list healthy(self)
    cpdef pick(self)


cdef class RoundRobin(Balancer):
    cdef public Py_ssize_t _next

    @cython.locals(backends=list, n=Py_ssize_t, _=Py_ssize_t)
    cpdef pick(self)


cdef class SmoothWeighted(Balancer):
    cdef public list _current

    @cython.locals(best=Py_ssize_t, total=cython.longlong, current=list, i=Py_ssize_t)
    cpdef pick(self)


cdef class LeastConnections(Balancer):
    cdef public Py_ssize_t _offset

    @cython.locals(backends=list, n=Py_ssize_t, k=Py_ssize_t, best_load=cython.longlong, load=cython.longlong)
    cpdef pick(self)


cdef class Random(Balancer):
    cdef public object _rng

    @cython.locals(healthy=list)
    cpdef pick(self)
