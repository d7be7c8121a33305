# Compiled with the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): the pass over every field
# of every HTTP/2 request, typed on the native Exchange (its fields are struct writes) and called as a C function
# by the stream (stream.pxd cimports this module).
cimport cython
from a3s_gateway.worker.exchange cimport Exchange

cdef set _VALID_FIELDS


@cython.locals(pseudo=dict, name=bytes, i=Py_ssize_t)
cpdef read_request(Exchange ex, raw)
@cython.locals(kept=list, name=bytes, value=bytes, cookies=list, is_grpc=bint, length=Py_ssize_t)
cpdef _forwarded(Exchange ex, regular)
