"""`python -m phm` is `phm`."""

from phm.cli import main

raise SystemExit(main())
