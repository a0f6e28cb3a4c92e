MAKEFLAGS += --no-print-directory

.PHONY: dev test bench audit release

# Build and serve Enclave on http://127.0.0.1:3000 (installs what is missing).
dev:
	./.ci/dev.sh

# Run every test: lints, Rust tests on PostgreSQL, browser tests in Chromium.
test:
	./.ci/test.sh

# The production build in one folder, dist/enclave (README "Run in production").
release:
	./.ci/release.sh

# Known vulnerabilities in the dependencies (needs the network: the RustSec
# advisory database and the npm registry's audit service).
audit:
	./.ci/audit.sh

# The chat-path benchmark (figures, not pass/fail; see BENCHMARKS.md).
bench:
	./.ci/bench.sh
