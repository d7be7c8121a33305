# Compiled with the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): the request loop runs
# over every header of every request; typed on the native Exchange (its fields are struct writes) and called as
# a C function by the client protocol (http1.pxd cimports this module).
cimport cython
from a3s_gateway.worker.exchange cimport Exchange

cdef bytes _SPECIAL_LENGTHS


@cython.locals(kept=list, field=tuple, name=bytes, size=Py_ssize_t, ln=bytes, chunked=bint, has_body=bint,
               limit=Py_ssize_t)
cpdef read_request(Exchange ex, raw, bytes url, Py_ssize_t max_body_bytes)
