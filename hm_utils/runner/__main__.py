"""``python -m hm_utils.runner``: run the notebook series (see :mod:`hm_utils.runner.series`)."""
from hm_utils.runner.series import main

if __name__ == "__main__":
    raise SystemExit(main())
