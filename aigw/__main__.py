"""`python -m aigw`."""

from aigw.cli import main

raise SystemExit(main())
