# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): attribute reads and
# writes become struct fields, and the methods the class calls on itself become C calls (cpdef; final, so no
# per-call check for an override). Every attribute the class or others set must be declared here.
cimport cython


@cython.final
cdef class ClientProtocol:
    cdef public object worker, limits, entrypoint, scheme, transport, parser, url, headers, queue, cur, out
    cdef public object client_ip, peer, fwd_const, protocol, request_trailers, client
    cdef public bint closed, halted, write_paused, xff_trusted
    cdef public Py_ssize_t port, max_header_bytes, max_header_count, max_pipeline, header_bytes, unparsed
    cdef public Py_ssize_t linger_left
    cdef public double head_deadline, lingering, last_active

    cpdef _drop(self, data)
    cpdef _may_read(self)
    cpdef _over_limit(self, ex)
    cpdef _reject(self, ex, status, message)
    cpdef _response_source(self)
    cpdef _started(self, ex)
    cpdef abort(self, ex)
    cpdef answer(self, ex, answer)
    cpdef body_sent(self, ex)
    cpdef body_timed_out(self, ex)
    cpdef close_if_idle(self)
    cpdef close_lingering(self)
    cpdef current(self, ex)
    cpdef expect_continue(self, ex)
    cpdef fail_request(self, status, message=*)
    cpdef finish(self, ex, trailers=*)
    cpdef flush(self)
    cpdef head_timed_out(self)
    cpdef retry_later(self, ex)
    cpdef start_exchange(self, ex)
