"""``python -m hm_utils.synthetic --profile demo``: generate (or reuse) a profile's synthetic set."""
import sys

from hm_utils.synthetic.generate import main

if __name__ == "__main__":
    sys.exit(main())
