"""``python -m polx ...`` (and ``torchrun --nproc_per_node N -m polx train ...``)."""

from polx.cli import main

main(prog_name="polx")
