"""The nightly pipeline: stage declarations (:mod:`.registry`), the runner (:mod:`.runner`) and
one module per stage that only orchestrates: read its declared tables, call the library, write
its declared tables, log to MLflow. No stage module imports another; what two stages share lives
in the library."""
