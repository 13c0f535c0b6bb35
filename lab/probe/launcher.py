"""Shipped as the probe directory's __main__.py (see shipped()): `python3 -I -S DIR ARGS` runs
it with DIR first on sys.path, even under -I, so the package beside it imports as nsslab_probe."""

import sys

from nsslab_probe.cli import main

sys.exit(main(sys.argv[1:]))
