# dontunmap: the two commands a newcomer runs, and a few for developers.
#
#   make check     provision what is missing, run every host and guest test
#                  on every kernel of tests/vm/kernels, print one summary
#                  (KERNELS="6.1-amd64 ..." limits the kernels; the row
#                  "packages" builds and installs the Debian packages)
#   make demo      show the main job in a guest (DEMO_KERNEL, default 6.1-amd64)
#   make check-deep  make check with three seeds of the stress and the fuzzer,
#                  each three times as long, and three times the differential
#                  scenarios
#
#   make bench     dontunmap-bench in guests of 6.1-amd64 and 7.3-amd64, and
#                  docs/benchmarks.md from what it measured (not part of
#                  check; BENCH_ARGS="--kernels ... --filter CELL" for one cell)
#   make bench-profile  one cell under the kernel's function tracer, and
#                  docs/bench-profile.md: where a move's time goes
#
#   make module    build dontunmap.ko for the running kernel (KDIR=... for another)
#   make lib       build libdontunmap, its tests and examples in build/
#   make checkpatch  kernel style check of module/ (needs the kernel's checkpatch.pl)
#   make semantics   rewrite docs/semantics.md's table from tests/guest/expectations.cpp

BUILD       ?= build
KERNELS     ?=
DEMO_KERNEL ?= 6.1-amd64
KDIR        ?= /lib/modules/$(shell uname -r)/build
# What lib and semantics build with (cmake, g++, GoogleTest), installed with
# apt-get when missing, as tests/check and tests/demo do.
BUILD_PACKAGES = bash -euo pipefail -c '. tests/vm/lib.sh && ensure_build_packages' make

.PHONY: all bench bench-profile check check-deep demo module module-clean lib checkpatch readme semantics

all: lib

check:
	tests/check --build $(BUILD) $(if $(KERNELS),--kernels "$(KERNELS)")

check-deep:
	tests/check --build $(BUILD) --deep $(if $(KERNELS),--kernels "$(KERNELS)")

demo:
	tests/demo --build $(BUILD) --kernel $(DEMO_KERNEL)

bench:
	tests/bench --build $(BUILD) $(BENCH_ARGS)

bench-profile:
	tests/bench --build $(BUILD) --profile $(BENCH_ARGS)

module:
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

module-clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean

lib:
	$(BUILD_PACKAGES)
	cmake -S . -B $(BUILD)
	cmake --build $(BUILD) -j$$(nproc)

checkpatch:
	tests/checkpatch

readme:
	tests/update-readme $(BUILD)/check/tested-on.md

semantics:
	$(BUILD_PACKAGES)
	cmake -S . -B $(BUILD)
	cmake --build $(BUILD) --target dontunmap-semantics
	$(BUILD)/tests/guest/dontunmap-semantics --kernels tests/vm/kernels --update docs/semantics.md
