# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): rate_limit.pxd calls
# ``of`` as a C method.
cimport cython


@cython.final
cdef class LimitKey:
    cdef readonly int kind
    cdef readonly bytes header

    @cython.locals(kind=int, header=bytes, name=bytes)
    cpdef bytes of(self, ex)
