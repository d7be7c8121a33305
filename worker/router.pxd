# Native classes for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): the request view's
# fields are a struct, and matching loops over typed (predicate, route) pairs with each test a C call.
cimport cython
from a3s_gateway.shared.rules.matchers cimport Predicate


@cython.final
cdef class RequestView:
    cdef public str host, path, method
    cdef public object raw_headers, raw_query, client_ip, model, _headers, _query


@cython.final
cdef class RouterTable:
    cdef public list generic
    cdef public dict by_host
    cdef public bint generic_body
    cdef public frozenset body_hosts

    cpdef bint needs_body(self, str host)
    @cython.locals(candidates=list, predicate=Predicate)
    cpdef match(self, RequestView req)
