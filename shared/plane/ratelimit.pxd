# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): ``Taker.take`` is the
# hot path. The counts, generations and header are typed views; the entry's words (``q``, ``d``) stay objects on
# purpose, so every seqlock load is an opaque call the C compiler keeps in order (see the class docstring).
# RateLimitTable stays a Python class (it extends BucketTable); its methods run compiled.
cimport cython


@cython.final
cdef class Taker:
    cdef public object table, q, d
    cdef public dict where
    cdef long long[::1] gen, cnt
    cdef const long long[::1] hdr     # read-only in a worker's mapping
    cdef public Py_ssize_t W1, rows_i, col

    @cython.locals(rows=Py_ssize_t, e=Py_ssize_t, s=Py_ssize_t, i=Py_ssize_t, c=cython.longlong,
                   anchor=cython.double, tokens=cython.double, after=cython.double, new=cython.double,
                   full=cython.bint)
    cpdef tuple take(self, Py_ssize_t limiter, key, double rate, double burst, double now)
    @cython.locals(c=cython.longlong, j=Py_ssize_t)
    cpdef long long admitted(self, Py_ssize_t s, Py_ssize_t rows)
    cpdef close(self)
