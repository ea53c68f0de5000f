"""`python -m transferkit.cli ...` (e.g. under torchrun) runs the command-line tool."""

from transferkit.cli import main

main()
