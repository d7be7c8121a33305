# Native class for the .py beside (Cython pure-Python mode): attribute reads and writes become struct fields.
cdef class UpstreamProtocol:
    cdef public object pool, transport, parser, client, ex, reason, headers, peeked
    cdef public bint alive, reused, got_bytes, client_paused, reading_paused, waiting_head
    cdef public int mode
    cdef public Py_ssize_t head_bytes, raw_head
    cdef public double deadline, idle_since
