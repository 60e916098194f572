"""``python -m diffdensity``: the command line."""
from .cli import main

main()
