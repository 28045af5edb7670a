"""benchmarks/run.py --smoke runs end to end and prints the four figures (no timing checked)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_smoke_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for figure in ("compiled points/s", "compiled / numeric model",
                   "compiled / torch FlopCounterMode", "cold start"):
        assert figure in proc.stdout, figure
