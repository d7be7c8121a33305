# Native classes for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): the health table and
# the in-flight counters are typed views, one set per plane; each backend's operations are C methods over them.
cimport cython


@cython.final
cdef class Words:
    cdef long long[::1] hq, inf
    cdef double[::1] hd

    cpdef close(self)


@cython.final
cdef class BackendOps:
    cdef Words words
    cdef Py_ssize_t active, down_until, base, last_fail, gw_base, gw_last, inflight, backend
    cdef object clock, refuse

    cpdef bint is_healthy(self)
    @cython.locals(hq="long long[::1]", last=cython.longlong)
    cpdef passive_success(self)
    @cython.locals(hq="long long[::1]", last=cython.longlong)
    cpdef outlier_success(self)
    @cython.locals(inf="long long[::1]")
    cpdef inc(self)
    @cython.locals(inf="long long[::1]")
    cpdef dec(self)
