# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): taking an idle
# connection and giving it back are C calls from the upstream protocol (upstream/http1.pxd cimports this).
cimport cython


@cython.final
cdef class UpstreamPool:
    cdef public object loop, endpoint, ssl, h2_ssl, server_hostname, max_idle, proxy_version, idle_timeout
    cdef public list idle
    cdef object _factory
    cdef dict __dict__

    @cython.locals(idle=list)
    cpdef get_idle(self)
    cpdef release(self, up)
