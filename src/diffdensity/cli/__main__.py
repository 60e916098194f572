"""``python -m diffdensity.cli`` (used by ``accelerate launch -m diffdensity.cli``)."""
from . import main

main()
