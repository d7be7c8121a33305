# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): the fields are a
# struct the protocols (http1.pxd, upstream/http1.pxd) read without a lookup. Fields a middleware sets beyond these
# go to the instance __dict__.
cimport cython
from a3s_gateway.worker.runtime cimport Backend, Route, Runtime, Service
from a3s_gateway.worker.router cimport RequestView, RouterTable


@cython.final
cdef class Exchange:
    cdef public object method, target, host, xff, xff_in, headers, raw, conn, runtime, pending, upstream
    cdef public object h2up, local, middleware, set_cookie, resp_fields, filter
    cdef public Route route
    cdef public Service service
    cdef public Backend backend
    cdef public object retry, replay, sink, on_done, usage_tap, meter, ai_body, ai_cache, translation
    cdef public object ai_attempts, ai_next, ai_path, span, grpc_status
    cdef public bint keep_alive, http11, is_head, expect_continue, req_chunked, req_has_body, req_done
    cdef public bint resp_started, resp_chunked, retried, counted, upgrade, suspended
    cdef public Py_ssize_t pending_bytes, req_bytes, status, resp_bytes, req_limit, attempts, budget_service
    cdef public Py_ssize_t ai_tokens, ai_target
    cdef public double t_up, t0
    cdef dict __dict__            # attributes the .py does not name (tests, future middlewares)


# The steps every protocol runs, typed on the native Exchange (its fields are struct reads here) and called as C
# functions from the protocols (http1.pxd and upstream/http1.pxd cimport this module).
@cython.locals(runtime=Runtime, table=RouterTable, view=RequestView, target=bytes, path=bytes, query=bytes, host=bytes,
               method=bytes)
cpdef route(Exchange ex, conn, raw)
cpdef _routed(Exchange ex, conn, Route matched)
@cython.locals(service=Service, backend=Backend)
cpdef start(Exchange ex, conn)
cpdef dispatch(Exchange ex, conn, Backend backend)
cpdef error_for(Exchange ex, status, message=*)
@cython.locals(route=Route)
cpdef response_head(Exchange ex, conn, Py_ssize_t status, fields)
cpdef passive_failure(Exchange ex, now)
cpdef failed(Exchange ex, conn, error, reached)
cpdef retry_later(Exchange ex, conn)
cpdef account(Exchange ex, conn)
@cython.locals(backend=Backend)
cpdef release_backend(Exchange ex)
