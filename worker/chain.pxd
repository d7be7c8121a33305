# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): the chain's loops run
# compiled over tuples, and the header helpers every middleware uses are C functions. The exchange stays untyped
# here (exchange.py imports this module: a cimport back would be an import cycle at load time).
cimport cython


# The base of every middleware: a compiled one (headers.pxd, rate_limit.pxd) is a C call from the chain; one in
# plain Python overrides these and is called as before.
cdef class Middleware:
    cdef public object name, worker
    cdef dict __dict__            # the attributes a .pxd does not declare (every middleware in plain Python)

    cpdef on_request(self, ex)
    cpdef on_response(self, ex, status, headers)


@cython.final
cdef class Chain:
    cdef public tuple middlewares, responders, indices
    cdef public object count

    @cython.locals(i=Py_ssize_t, middlewares=tuple, m=Middleware)
    cpdef on_request(self, ex, Py_ssize_t start=*)
    @cython.locals(m=Middleware)
    cpdef on_response(self, ex, status, headers)
    cpdef render(self, ex, reply, Py_ssize_t index)
    cpdef error(self, ex, status, message=*)
    cpdef answer(self, ex, reply)
    cpdef _compose(self, ex, reply, responders)


@cython.locals(name=bytes)
cpdef header_value(headers, bytes lname)
@cython.locals(name=bytes)
cpdef remove_headers(list headers, lnames)
