# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): on the full benchmark's
# route, so both phases are C calls from the chain and ``remove_headers`` a C call from them.
cimport cython
from a3s_gateway.worker.chain cimport Middleware, remove_headers


cdef class Headers(Middleware):
    cdef readonly object request_host
    cdef readonly tuple request, response

    cpdef on_request(self, ex)
    cpdef on_response(self, ex, status, headers)


@cython.locals(drop=frozenset, put=list, add=list)
cdef _apply(tuple edit, list headers)
