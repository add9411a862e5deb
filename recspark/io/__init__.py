"""Engines, one module each: Delta tables (:mod:`recspark.io.delta`), the Spark session
(:mod:`recspark.io.session`), MLflow tracking (:mod:`recspark.io.tracking`) and Petastorm
(:mod:`recspark.io.petastorm`). Everything else asks these modules."""
