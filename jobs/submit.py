"""spark-submit entry point for any recspark command:
``spark-submit jobs/submit.py [--config FILE] [--set k=v] [--run-date D] <stage | run>``.

The stage names are those of :mod:`recspark.pipeline.registry` (``recspark --help`` lists them);
the Airflow DAG submits this file once per stage."""
import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
