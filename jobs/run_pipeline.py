"""spark-submit entrypoint for the whole pipeline: `spark-submit jobs/run_pipeline.py [options]`."""
import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main([*sys.argv[1:], "run"]))
