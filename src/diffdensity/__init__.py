"""diffdensity: density in diffusion models (log-density, SDE tracking, high-density sampling, guidance)."""
from .schedules import VP, VE, FlowMatching, Schedule
from .models import NetworkModel, CountingModel, PARAMETRIZATIONS

__version__ = "0.1.0"
