"""Counting checks and running tools for scripts/test-deploy (stdlib only)."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


class Checker:
    """One line per check ("ok" or "FAIL name: why"); the summary line is what CI reads."""

    def __init__(self):
        self.passed = 0
        self.failures = []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   {name}", flush=True)
        else:
            self.failures.append(name)
            detail = str(detail).strip()
            if len(detail) > 1500:
                detail = detail[:1500] + " ..."
            print(f"FAIL {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    def run(self, name, cmd, timeout=120, cwd=ROOT, ok_output=None, env=None):
        """Runs a tool; passes on exit code 0 (and, if given, ok_output(text) being true)."""
        try:
            p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
        except FileNotFoundError:
            return self.check(name, False, f"{cmd[0]} not found (see scripts/test-deploy for the packages)")
        except subprocess.TimeoutExpired:
            return self.check(name, False, f"timed out after {timeout}s")
        out = (p.stdout or "") + (p.stderr or "")
        ok = p.returncode == 0 and (ok_output is None or ok_output(out))
        return self.check(name, ok, f"exit {p.returncode}: {out[-1500:]}")

    def summary(self):
        if self.failures:
            print("\nFailed:\n  " + "\n  ".join(self.failures))
        print(f"\n{self.passed} passed, {len(self.failures)} failed", flush=True)
        return 0 if not self.failures else 1


def rel(path):
    return str(Path(path).resolve().relative_to(ROOT))
