# Native class for the .py beside (Cython pure-Python mode): attribute reads and writes become struct fields.
cdef class ClientProtocol:
    cdef public object worker, limits, entrypoint, scheme, transport, parser, url, headers, queue, cur, out
    cdef public object client_ip, peer, fwd_const, protocol, request_trailers, client
    cdef public bint closed, halted, write_paused, xff_trusted
    cdef public Py_ssize_t port, max_header_bytes, max_header_count, max_pipeline, header_bytes, unparsed
    cdef public Py_ssize_t linger_left
    cdef public double head_deadline, lingering, last_active
    cdef dict __dict__            # attributes other modules may attach stay possible, as on the Python class
