"""recspark: Spark-based batch recommendation platform."""

__version__ = "0.1.0"
