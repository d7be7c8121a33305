# Native classes for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): an outbox's and an
# endpoint's fields are struct fields, and the steps of sending (``outbox``, ``send_data``, ``pump``) C calls.
# ``H2Endpoint`` is not final: both HTTP/2 sides subclass it in Python, and ``H2Server`` overrides ``end_stream``.
cimport cython


@cython.final
cdef class Outbox:
    cdef public object chunks, trailers, source
    cdef public Py_ssize_t size
    cdef public bint end, paused, done


cdef class H2Endpoint:
    cdef public object conn, transport
    cdef public dict outboxes, queued
    cdef public bint closed, flush_scheduled

    cpdef flush(self)
    @cython.locals(box=Outbox, queued=dict)
    cpdef flush_now(self)
    @cython.locals(box=Outbox)
    cpdef Outbox outbox(self, stream_id)
    @cython.locals(box=Outbox)
    cpdef send_data(self, stream_id, data)
    @cython.locals(box=Outbox)
    cpdef end_stream(self, stream_id, trailers=*)
    @cython.locals(window=Py_ssize_t, last=bint)
    cpdef pump(self, stream_id, Outbox box)
    @cython.locals(box=Outbox)
    cpdef drop_outbox(self, stream_id)
    cpdef ack(self, stream_id, size)
