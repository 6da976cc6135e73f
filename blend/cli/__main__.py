"""`python -m blend.cli`: the `blend` command."""

from blend.cli import main

main()
