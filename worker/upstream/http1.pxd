# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): attribute reads and
# writes become struct fields, and the methods the class calls on itself become C calls (cpdef; final, so no
# per-call check for an override). Every attribute set on it must be declared here (the .py lists them in
# __slots__).
cimport cython


@cython.final
cdef class UpstreamProtocol:
    cdef public object pool, transport, parser, client, ex, reason, headers, peeked
    cdef public bint alive, reused, got_bytes, client_paused, reading_paused, waiting_head
    cdef public int mode
    cdef public Py_ssize_t head_bytes, raw_head
    cdef public double deadline, idle_since

    cpdef _drop_for_retry(self, client, ex)
    cpdef _fields(self, version)
    cpdef _filter_tail(self, client, ex)
    cpdef _head(self, client, ex, status, fields, has_cl, up_chunked)
    cpdef _unpeek(self)
    cpdef close(self)
    cpdef on_body(self, body)
    cpdef resume_reading(self)
