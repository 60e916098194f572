"""Run every benchmark script in this folder (`make bench`); each prints its table and writes JSON to
results/latest/ (results/ itself with DIFFDENSITY_BENCH_RECORD=1, `make bench-record`)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = sorted(p.name for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name != "run_all.py")

if __name__ == "__main__":
    quick = [a for a in sys.argv[1:] if a == "--quick"]
    failed = []
    for name in SCRIPTS:
        print(f"\n######## {name}", flush=True)
        takes_quick = ("logdensity.py", "peers.py", "integration.py", "divergence_cost.py")
        args = [sys.executable, str(HERE / name)] + (quick if name in takes_quick else [])
        if quick and name == "patches16_profile.py":
            args.append("--no-compile")
        if subprocess.call(args) != 0:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
