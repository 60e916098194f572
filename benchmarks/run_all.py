"""Run every benchmark script in this folder (`make bench`); each prints its table and writes JSON to results/."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["digits_baselines.py", "patches16_baselines.py", "train_throughput.py", "patches16_profile.py", "logdensity.py"]

if __name__ == "__main__":
    quick = [a for a in sys.argv[1:] if a == "--quick"]
    failed = []
    for name in SCRIPTS:
        print(f"\n######## {name}", flush=True)
        args = [sys.executable, str(HERE / name)] + (quick if name == "logdensity.py" else [])
        if quick and name == "patches16_profile.py":
            args.append("--no-compile")
        if subprocess.call(args) != 0:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
