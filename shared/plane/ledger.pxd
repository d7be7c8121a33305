# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): the two tables are
# typed views and the offsets C integers, so ``account`` compiles to loads and stores. The layout constants are
# C integers too (their values come from counters.py and observations.py at import).
cimport cython

cdef Py_ssize_t COLS, ERR, BYTES_IN, BYTES_OUT, CLASSES, HW, NLOCAL, SUM


@cython.final
cdef class Ledger:
    cdef long long[::1] q, o
    cdef Py_ssize_t c_rt, c_svc, c_be, o_rt, o_svc, o_req, o_local, o_retry

    @cython.locals(cls=Py_ssize_t, b=Py_ssize_t, us=cython.longlong, code=Py_ssize_t)
    cpdef account(self, Py_ssize_t router, Py_ssize_t service, Py_ssize_t backend, Py_ssize_t ep_method,
                  Py_ssize_t status, Py_ssize_t bytes_in, Py_ssize_t bytes_out, double seconds, bint local,
                  Py_ssize_t retries)
    @cython.locals(q="long long[::1]")
    cdef _counts(self, Py_ssize_t i, Py_ssize_t cls, Py_ssize_t bytes_in, Py_ssize_t bytes_out)
    @cython.locals(o="long long[::1]")
    cdef _duration(self, Py_ssize_t i, Py_ssize_t b, long long us)
    cpdef close(self)
