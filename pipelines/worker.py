"""Entry point of one rank of a multi-process node run (started by pipelines.launch, not by users)."""
import sys

from pipelines.runner import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] + ["--launched-rank"]))
