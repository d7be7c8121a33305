# Native class for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): the fields are a
# struct the protocols (http1.pxd, upstream/http1.pxd) read without a lookup. Fields a middleware sets beyond these
# go to the instance __dict__.
cimport cython


@cython.final
cdef class Exchange:
    cdef public object method, target, host, xff, xff_in, headers, raw, conn, runtime, pending, upstream
    cdef public object h2up, route, service, backend, local, middleware, set_cookie, resp_fields, filter
    cdef public object retry, replay, sink, on_done, usage_tap, meter, ai_body, ai_cache, translation
    cdef public object ai_attempts, ai_next, ai_path, span, grpc_status
    cdef public bint keep_alive, http11, is_head, expect_continue, req_chunked, req_has_body, req_done
    cdef public bint resp_started, resp_chunked, retried, counted, upgrade, suspended
    cdef public Py_ssize_t pending_bytes, req_bytes, status, resp_bytes, req_limit, attempts, budget_service
    cdef public Py_ssize_t ai_tokens, ai_target
    cdef public double t_up, t0
    cdef dict __dict__            # attributes the .py does not name (tests, future middlewares)
