"""Engines, one module each: Delta tables (:mod:`recspark.io.delta`), the Spark session
(:mod:`recspark.io.session`; its local Python workers run :mod:`recspark.io.python_daemon`, its
driver JVM the ClosureCleaner cache of :mod:`recspark.io.jvm_agent`),
MLflow tracking (:mod:`recspark.io.tracking`) and Petastorm (:mod:`recspark.io.petastorm`).
Everything else asks these modules."""
