"""spark-submit entrypoint: `spark-submit jobs/embed_items.py [--config FILE] [--set k=v] [--run-date D]`."""
import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main([*sys.argv[1:], "embed-items"]))
