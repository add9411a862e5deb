"""The driver JVM's Java agent (``ClosureCleanerCache.java`` beside this file), built on first use.

Spark's ClosureCleaner re-reads and re-parses, with ASM, the class declaring every closure it
cleans: several times per job, the same few large classes each time. On small data that is most
of a job's driver time. The agent caches the parsed class and each method's passed
return-statement check (see the Java file for why every check keeps its outcome).

:func:`closure_cleaner_agent` compiles the agent with the JDK's ``javac`` against the ASM jar
Spark ships, once per machine and source version, into ``$XDG_CACHE_HOME/recspark`` (default
``~/.cache/recspark``), and returns the jar; None (the session runs without it) when there is no
``javac`` or no ASM jar, or the build fails.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pyspark

log = logging.getLogger(__name__)

AGENT_SOURCE = Path(__file__).with_name("ClosureCleanerCache.java")
AGENT_CLASS = "recspark.jvm.ClosureCleanerCache"
MANIFEST = f"Manifest-Version: 1.0\nPremain-Class: {AGENT_CLASS}\n"


def cache_directory() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recspark"


def spark_asm_jar() -> Path | None:
    """The shaded ASM jar of the installed PySpark (the ClosureCleaner's own ASM)."""
    jars = sorted((Path(pyspark.__file__).parent / "jars").glob("xbean-asm*-shaded-*.jar"))
    return jars[-1] if jars else None


def javac() -> str | None:
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "javac" if home else None
    return str(candidate) if candidate and candidate.exists() else shutil.which("javac")


def build_agent_jar(source: Path, asm_jar: Path, compiler: str, target: Path) -> None:
    """Compile ``source`` against ``asm_jar`` and write the agent jar to ``target`` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        classes = Path(work) / "classes"
        subprocess.run([compiler, "-nowarn", "--release", "8", "-cp", str(asm_jar), "-d", str(classes), str(source)],
                       check=True, capture_output=True, text=True, timeout=120)
        partial = Path(work) / target.name
        with zipfile.ZipFile(partial, "w") as jar:
            jar.writestr("META-INF/MANIFEST.MF", MANIFEST)
            for path in sorted(classes.rglob("*.class")):
                jar.write(path, path.relative_to(classes).as_posix())
        os.replace(partial, target)


@functools.lru_cache(maxsize=1)
def closure_cleaner_agent() -> Path | None:
    """Path of the built agent jar (built now if needed), or None when it cannot be built."""
    asm_jar, compiler = spark_asm_jar(), javac()
    if asm_jar is None or compiler is None:
        log.info("ClosureCleaner cache off: %s", "no javac on PATH or in JAVA_HOME" if asm_jar else
                 "PySpark ships no xbean-asm jar")
        return None
    digest = hashlib.sha256(AGENT_SOURCE.read_bytes() + asm_jar.name.encode()).hexdigest()[:16]
    target = cache_directory() / f"closure-cleaner-cache-{digest}.jar"
    if not target.exists():
        try:
            build_agent_jar(AGENT_SOURCE, asm_jar, compiler, target)
        except (OSError, subprocess.SubprocessError) as error:
            detail = getattr(error, "stderr", "") or error
            log.info("ClosureCleaner cache off: building %s failed: %s", target.name, detail)
            return None
    return target
