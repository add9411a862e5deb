"""Py4J name lookups answered once per gateway, not once per call.

PySpark reaches JVM classes by attribute walks (``jvm.org.apache.spark.sql.types.StructType``,
``jvm.PythonUtils``, ``jvm.functions.col``). Py4J sends every step to the JVM: a package step
costs a dozen failed class loads over the ~250 Spark jars (the name tried bare, under each star
import and under ``java.lang``), and a static member is looked up again before every call. In a
profile of the unit tests these lookups were 12% of the driver JVM's CPU, with a socket round
trip each.

:func:`remember_name_lookups` makes the three lookup methods (``JVMView``, ``JavaPackage``,
``JavaClass`` attribute access) remember answers that cannot change while the JVM runs: that a
name is a package, a class or a method. Field values (which can change) are always fetched, and
a failed lookup is asked again. Answers are kept per gateway client, so a new JVM starts afresh.
A ``java_import`` made after a simple name was first looked up in a view does not change that
name's answer (recspark's own imports, :data:`recspark.io.session.SINGLE_IMPORTS`, name the
classes PySpark's star imports already resolve to).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from py4j.java_gateway import JavaClass, JavaMember, JavaPackage, JVMView

STABLE_ANSWERS = (JavaClass, JavaMember, JavaPackage)
_CACHE_ATTRIBUTE = "_recspark_name_lookups"


def _remembering(lookup: Callable[[Any, str], Any], owner: Callable[[Any], str]) -> Callable[[Any, str], Any]:
    @functools.wraps(lookup)
    def remembered(self, name: str) -> Any:
        client = self._gateway_client
        answers = client.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
        key = (owner(self), name)
        answer = answers.get(key)
        if answer is None:
            answer = lookup(self, name)
            if isinstance(answer, STABLE_ANSWERS):
                answers[key] = answer
        return answer

    remembered.__recspark_remembering__ = True
    return remembered


def remember_name_lookups() -> None:
    """Install the remembering lookups on Py4J's classes (idempotent)."""
    for cls, owner in ((JVMView, lambda view: "view:" + view._id),
                       (JavaPackage, lambda package: f"package:{package._jvm_id}:{package._fqn}"),
                       (JavaClass, lambda java_class: "class:" + java_class._fqn)):
        if not getattr(cls.__getattr__, "__recspark_remembering__", False):
            cls.__getattr__ = _remembering(cls.__getattr__, owner)
