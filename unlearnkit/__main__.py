"""`python -m unlearnkit ...` is the `unlearn` command (launchers such as torchrun start modules, not scripts)."""

from unlearnkit.cli import main

main()
