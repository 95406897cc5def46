# Coffer: the two commands are `make run` and `make test`. Everything else is a helper.
BUILD    ?= build
DATA     ?= ./var
LISTEN   ?= 127.0.0.1:8080
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build server run test bench bench-pg fuzz clean format

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

server: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target coffer

run: server
	@$(BUILD)/coffer serve --data $(DATA) --listen $(LISTEN)

test: build
	@bash scripts/install-deps.sh --test
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench:
	@bash scripts/install-deps.sh --bench
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@bash bench/run.sh $(BUILD)

bench-pg:
	@bash scripts/install-deps.sh --bench
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target coffer
	@bash bench/run_pg.sh $(BUILD)

fuzz: build
	@bash scripts/run-fuzz.sh $(BUILD)/fuzz 60

format:
	@clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'bench/*.c' 'fuzz/*.c')

clean:
	rm -rf $(BUILD)
