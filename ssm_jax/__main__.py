"""``python -m ssm_jax`` is the ``ssm-jax`` command."""

import sys

from .cli import main

sys.exit(main())
