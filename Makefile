# keyward - the two commands of the README, and a few more.
#
#   make run            install missing Debian packages (as root), build, start keyward
#                       (LISTEN=127.0.0.1:8080, DATA_DIR=./var)
#   make test           every test, plain and under AddressSanitizer + UBSan
#   make test-sanitize  only the sanitizer run
#   make bench          benchmarks, as ratios against references measured in the same run:
#                       nginx and a trivial libmicrohttpd handler, SQLite and PostgreSQL
#                       (a few minutes; settings in scripts/bench.sh, docs/benchmarks.md)
#   make soak           mixed load on the ASan + UBSan build, watching its RSS, descriptors
#                       and threads (SOAK_SECONDS, 600; not part of make test)
#   make lint           clang-format check, cppcheck, clang-tidy
#   make fuzz           libFuzzer + ASan/UBSan on every user-input parser (FUZZ_SECONDS, 60),
#                       then on the whole request path (FUZZ_RUNS, 10 million)
#   make format         apply .clang-format to every C file
#   make deb            the Debian package keyward_VERSION_ARCH.deb (docs/install.md)

BUILD      ?= build
BUILD_SAN  ?= build-sanitize
DATA_DIR   ?= ./var
LISTEN     ?= 127.0.0.1:8080

.PHONY: all deps build run test test-plain test-sanitize bench soak lint fuzz format format-check clean deb

all: build

deps:
	@scripts/deps.sh build

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	@scripts/run.sh $(BUILD)/keyward $(DATA_DIR) $(LISTEN)

test:
	@scripts/deps.sh test
	@scripts/lint.sh $(BUILD)
	@scripts/test.sh all

test-plain:
	@scripts/deps.sh test
	@scripts/test.sh plain

test-sanitize:
	@scripts/deps.sh test
	@scripts/test.sh sanitize

bench: build
	@scripts/deps.sh bench
	@scripts/bench.sh $(BUILD)

soak:
	@scripts/deps.sh soak
	@scripts/soak.sh

fuzz:
	@scripts/deps.sh fuzz
	@scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)

lint:
	@scripts/deps.sh test
	@scripts/lint.sh $(BUILD)

deb:
	@scripts/deps.sh deb
	@scripts/deb.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_SAN) build-deb build-deb-test
