#!/usr/bin/env python3
"""Entry point of scripts/test-deploy (which starts and stops the throwaway PostgreSQL and the
traffic generator): the offline checks, then the live ones. Prints one line per check and
"N passed, M failed" last; exits non-zero on any failure."""
import argparse
import shlex
import signal
import sys
from pathlib import Path

from checker import Checker


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True, type=Path, help="scratch directory (removed by the caller)")
    ap.add_argument("--bin", help="litellm-exporter binary")
    ap.add_argument("--db-url", help="URL of the seeded throwaway database")
    ap.add_argument("--psql", help="psql command line for that database")
    ap.add_argument("--seed-log", help="log of the running generator")
    ap.add_argument("--only", choices=["static", "live"])
    args = ap.parse_args()

    # timeout(1) and Ctrl-C end the run through the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))

    c = Checker()
    if args.only != "live":
        import static_checks
        static_checks.run_all(c, args.work, args.bin)
    if args.only != "static":
        import live_checks
        live_checks.run_all(c, args.work, args.bin, args.db_url, shlex.split(args.psql), args.seed_log)
    return c.summary()


if __name__ == "__main__":
    sys.exit(main())
