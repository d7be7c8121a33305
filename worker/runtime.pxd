# Native classes for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): the exchange and the
# protocols read a route's, a service's and a backend's fields as struct fields (exchange.pxd, http1.pxd,
# upstream/http1.pxd type them). Every attribute set on a Backend must be declared here; Service and Route keep
# an instance __dict__ for what other modules attach (a subclass such as MuxService has its own).
cimport cython
from a3s_gateway.worker.chain cimport Chain
from a3s_gateway.worker.services.balancer cimport Balancer


@cython.final
cdef class Backend:
    cdef public object acquire, release, is_healthy, passive_success, plane, pool, host_header, weight
    cdef public str url, shown_url, scheme, host
    cdef public bint h2
    cdef public Py_ssize_t idx, port


cdef class Service:
    cdef public str name
    cdef public object backends, internal, outliers, sticky, kind, activator
    cdef public Balancer balancer
    cdef public bint pass_host_header
    cdef public double connect_timeout, response_timeout
    cdef public Py_ssize_t idx
    cdef dict __dict__


@cython.final
cdef class Route:
    cdef public str name
    cdef public object rule, entrypoints
    cdef public Chain chain
    cdef public Service service
    cdef public Py_ssize_t priority, idx
    cdef dict __dict__


@cython.final
cdef class Runtime:
    cdef public object generation, config, last_resort
    cdef public dict tables, services, trusted_forwarders
