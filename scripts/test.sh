#!/usr/bin/env bash
# Install, then run the whole test suite (README's command 2; .ci/run runs it).
# In CI (CI=true) or with SYNSYM_SLURM=1 it first starts a local one-node Slurm
# cluster (root, Debian/Ubuntu) so that the real-Slurm test runs instead of skipping;
# under CI=true a cluster that cannot be started fails the run (the test cannot skip there).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ "${CI:-}" = true ] || [ "${SYNSYM_SLURM:-}" = 1 ]; then
  if ! bash scripts/slurm-up.sh; then
    if [ "${CI:-}" = true ]; then echo "test.sh: scripts/slurm-up.sh could not start the local Slurm cluster (CI=true needs it)" >&2; exit 1; fi
    echo "WARNING: scripts/slurm-up.sh failed; the real-Slurm test will be SKIPPED" >&2
  fi
fi
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/ruff check src tests bench
.venv/bin/lint-imports   # the layers contract (pyproject.toml): no upward import, no cycle
.venv/bin/python -m pytest -ra --durations=25   # the 25 slowest tests are listed at the end; exit 5 (no tests collected) fails this script like any failure
