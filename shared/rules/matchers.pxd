# Native classes for the .py beside (Cython pure-Python mode, see a3s_gateway/extensions.py): a rule's predicate
# tree is C calls (``test`` through the base's vtable) over the request's fields, which stay duck-typed (HTTP and
# TCP requests, and the tests' own, are different classes). A class that types its locals redeclares ``test``,
# which Cython refuses for a final class: AllOf and AnyOf are not final.
cimport cython


cdef class Predicate:
    cpdef bint test(self, req)


@cython.final
cdef class Call(Predicate):
    cdef readonly object fn


@cython.final
cdef class HostIs(Predicate):
    cdef readonly str name


@cython.final
cdef class HostIn(Predicate):
    cdef readonly frozenset names


@cython.final
cdef class PathIs(Predicate):
    cdef readonly str path


@cython.final
cdef class PathIn(Predicate):
    cdef readonly frozenset paths


@cython.final
cdef class PathPrefix(Predicate):
    cdef readonly object prefix


@cython.final
cdef class MethodIs(Predicate):
    cdef readonly str method


@cython.final
cdef class MethodIn(Predicate):
    cdef readonly frozenset methods


@cython.final
cdef class Negation(Predicate):
    cdef readonly Predicate inner


cdef class AllOf(Predicate):
    cdef readonly tuple parts

    @cython.locals(part=Predicate)
    cpdef bint test(self, req)


cdef class AnyOf(Predicate):
    cdef readonly tuple parts

    @cython.locals(part=Predicate)
    cpdef bint test(self, req)
