#!/usr/bin/env python3
"""Run the pipeline in super_config.yaml. See README.md, or `.venv/bin/python run_pipeline.py --help`."""
import sys

from pipelines.runner import main

if __name__ == "__main__":
    sys.exit(main())
