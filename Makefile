# Rampart. `make help` lists the targets. Every tool is pinned: protoc-gen-go,
# protoc-gen-go-grpc, protoc-gen-grpc-gateway and wire through the `tool` lines
# of go.mod; buf and protoc-gen-openapi through tools/buf/go.mod; the Consul
# agent, Nomad, toxiproxy and golangci-lint through their own modules under tools/.

SHELL := /bin/bash
.DEFAULT_GOAL := help

MODULE      := $(shell go list -m)
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)
# buf runs from its tool module: built once into Go's cache, no protoc needed.
BUF         := go tool -modfile=tools/buf/go.mod buf
# What `make api` writes next to each api/<svc>/v1/<svc>.proto.
GENERATED   := -name '*.pb.go' -o -name '*.pb.gw.go' -o -name '*.openapi.yaml'
# A service is a cmd/<name> with a wire injector; `make new-service` adds one
# and every target below picks it up.
SERVICES    := $(patsubst cmd/%/wire.go,%,$(wildcard cmd/*/wire.go))
WIRE_PKGS   := $(addprefix ./cmd/,$(SERVICES))
APT_GET     := $(if $(filter 0,$(shell id -u)),apt-get,sudo apt-get)

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: init
init: postgresql ## install what the build needs (postgresql via apt-get; Go tools come pinned)
	go mod download

# PostgreSQL's server binaries (initdb, postgres) for the tests that start
# one and for make run DATA=postgres; Debian keeps them off PATH.
.PHONY: postgresql
postgresql:
	@command -v pg_config >/dev/null && [ -x "$$(pg_config --bindir)/initdb" ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ $(APT_GET) update -qq && $(APT_GET) install -y -qq postgresql; }

.PHONY: api
api: ## regenerate the Go code, gateway handlers and OpenAPI documents from api/**/*.proto (buf.gen.yaml)
	$(BUF) generate

# buf-check holds the protos to the rules in buf.yaml: formatted, linted, and
# not breaking what the previous commit published. A shallow clone is
# deepened by one commit to have something to compare with; only a
# repository's first commit has nothing to compare.
.PHONY: buf-check
buf-check: ## buf format, buf lint, and buf breaking against the previous commit
	$(BUF) format --diff --exit-code
	$(BUF) lint
	@if ! git rev-parse -q --verify 'HEAD~1^{commit}' >/dev/null 2>&1 && [ "$$(git rev-parse --is-shallow-repository 2>/dev/null)" = true ]; then \
		git fetch -q --deepen=1 || { echo "buf-check: shallow clone and HEAD~1 cannot be fetched"; exit 1; }; fi
	@if git rev-parse -q --verify 'HEAD~1^{commit}' >/dev/null 2>&1; then \
		echo "$(BUF) breaking --against .git#ref=HEAD~1"; $(BUF) breaking --against '.git#ref=HEAD~1'; \
	else echo "buf-check: no previous commit (first commit, or not a git checkout): breaking changes not checked"; fi

.PHONY: generate
generate: ## regenerate wire_gen.go for every service
	go tool wire gen $(WIRE_PKGS)

.PHONY: check-generated
check-generated: ## fail if regenerating protos, wire_gen.go or go.sum would change anything
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(BUF) generate -o "$$tmp" && \
	diff <(cd "$$tmp" && find api $(GENERATED) | sort) <(find api $(GENERATED) | sort) >/dev/null || \
		{ echo "generated files differ from what buf.gen.yaml yields (added or removed): run make api"; exit 1; } && \
	for f in $$(cd "$$tmp" && find api $(GENERATED)); do \
		cmp -s "$$tmp/$$f" "$$f" || { echo "$$f is stale: run make api"; exit 1; }; \
	done && \
	go tool wire diff $(WIRE_PKGS) >/dev/null || { echo "wire_gen.go is stale: run make generate"; exit 1; }
	@go mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	@cd tools/buf && go mod tidy -diff >/dev/null || { echo "tools/buf/go.mod is not tidy: cd tools/buf && go mod tidy"; exit 1; }
	@echo "generated code and go.mod are current"

.PHONY: rename
rename: ## rewrite the module path everywhere: make rename MODULE=github.com/acme/shop
	@go run ./cmd/scaffold rename -module "$(MODULE)"

.PHONY: new-service
new-service: ## add a service (API, cmd, biz/data/service, config, Nomad job): make new-service NAME=payment
	@go run ./cmd/scaffold new-service -name "$(NAME)"

.PHONY: build
build: ## build every service (and devstack) into bin/
	@mkdir -p bin
	for s in $(SERVICES) devstack; do go build -ldflags "$(LDFLAGS)" -o bin/$$s ./cmd/$$s || exit 1; done

bin/consul: tools/consul/go.mod tools/consul/go.sum
	@echo "building the Consul agent from tools/consul (a few minutes the first time, cached after)"
	cd tools/consul && go build -o ../../bin/consul github.com/hashicorp/consul

.PHONY: consul
consul: bin/consul ## build bin/consul (pinned in tools/consul)

bin/toxiproxy-server: tools/toxiproxy/go.mod tools/toxiproxy/go.sum
	cd tools/toxiproxy && go build -o ../../bin/toxiproxy-server github.com/Shopify/toxiproxy/v2/cmd/server

bin/nomad: tools/nomad/go.mod tools/nomad/go.sum
	@echo "building the Nomad agent from tools/nomad (about 2.5 minutes the first time, cached after)"
	cd tools/nomad && go build -o ../../bin/nomad github.com/hashicorp/nomad

.PHONY: nomad
nomad: bin/nomad ## build bin/nomad (pinned in tools/nomad)

bin/golangci-lint: tools/golangci-lint/go.mod tools/golangci-lint/go.sum
	cd tools/golangci-lint && go build -o ../../bin/golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint

.PHONY: run
run: bin/consul $(if $(filter postgres,$(DATA)),postgresql) ## start Consul and 2 instances of every service, run the demo; Ctrl-C stops all. DATA=postgres: on a local PostgreSQL; SECURITY=plaintext: no TLS, no intentions, no ACLs (the configs say mtls)
	@go build -o bin/devstack ./cmd/devstack
	@bin/devstack $(if $(DATA),-data $(DATA)) $(if $(SECURITY),-security $(SECURITY))

# cert asks the agent of a running `make run` in mtls (address and
# management token in .devstack/, or in DIR: .devstack/nomad for
# `make nomad-up` in mtls) for a certificate of the identity NAME.
.PHONY: cert
cert: ## write a client certificate for the shell from a running make run: make cert NAME=alice [ALLOW=user,order] [DIR=.devstack/nomad for nomad-up]
	@go build -o bin/devstack ./cmd/devstack
	@bin/devstack cert -name "$(NAME)" $(if $(ALLOW),-allow "$(ALLOW)") $(if $(DIR),-dir "$(DIR)")

# nomad-up runs `devstack -nomad` detached (its own session, so a Ctrl-C at
# this shell does not reach it) and returns once the jobs pass in Consul and
# the demo ran; nomad-down sends it SIGTERM, which stops the jobs, Nomad
# and Consul, and waits for it to exit.
NOMAD_STACK := .devstack/nomad

.PHONY: nomad-up
nomad-up: bin/nomad bin/consul ## start Consul + Nomad dev agents, run every deploy/nomad job (2 allocations each), run the demo; in mtls (the configs') with ACLs on and a Consul token per job; SECURITY=plaintext: no TLS, no intentions, no ACLs
	@go build -o bin/devstack ./cmd/devstack
	@mkdir -p $(NOMAD_STACK)
	@if [ -f $(NOMAD_STACK)/devstack.pid ] && kill -0 "$$(cat $(NOMAD_STACK)/devstack.pid)" 2>/dev/null; then \
		echo "already up (pid $$(cat $(NOMAD_STACK)/devstack.pid)); make nomad-down first"; exit 1; fi
	@rm -f $(NOMAD_STACK)/ready
	@setsid bin/devstack -nomad -dir $(NOMAD_STACK) $(if $(SECURITY),-security $(SECURITY)) > $(NOMAD_STACK)/devstack.out 2>&1 < /dev/null & echo $$! > $(NOMAD_STACK)/devstack.pid
	@pid=$$(cat $(NOMAD_STACK)/devstack.pid); for i in $$(seq 900); do \
		[ -f $(NOMAD_STACK)/ready ] && break; \
		kill -0 $$pid 2>/dev/null || { cat $(NOMAD_STACK)/devstack.out; rm -f $(NOMAD_STACK)/devstack.pid; exit 1; }; \
		sleep 1; done; \
	cat $(NOMAD_STACK)/devstack.out; [ -f $(NOMAD_STACK)/ready ] || { echo "not up after 15 minutes"; exit 1; }

.PHONY: nomad-down
nomad-down: ## stop what nomad-up started: the jobs, the Nomad agent, the Consul agent
	@[ -f $(NOMAD_STACK)/devstack.pid ] || { echo "nothing to stop (no $(NOMAD_STACK)/devstack.pid)"; exit 0; }; \
	pid=$$(cat $(NOMAD_STACK)/devstack.pid); \
	if kill -TERM $$pid 2>/dev/null; then \
		for i in $$(seq 120); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; \
		if kill -0 $$pid 2>/dev/null; then echo "devstack $$pid did not stop in 60 s"; exit 1; fi; \
	fi; \
	tail -n 3 $(NOMAD_STACK)/devstack.out; rm -f $(NOMAD_STACK)/devstack.pid

.PHONY: test-nomad
test-nomad: bin/nomad bin/consul ## the Nomad suite in mtls mode, ACLs on: real Nomad + Consul + binaries (jobs, alloc stop and rolling update under load)
	go test -race -count=1 -timeout 20m ./test/nomad

# iptables is the one thing the multi-host suite needs beyond `make test`
# (iproute2's ip is on every Debian); the suite checks for both and for
# root, and fails saying what is missing.
.PHONY: iptables
iptables:
	@command -v iptables >/dev/null || { $(APT_GET) update -qq && $(APT_GET) install -y -qq iptables; }

# The multi-host suite needs root (it creates network namespaces) and runs
# alone, after test-nomad in .ci/run: it times calls under load. -race
# instruments its load driver (the services are built without it); on two
# CPUs the healthy p99 stays within 10-30 ms either way.
.PHONY: test-multihost
test-multihost: bin/consul bin/toxiproxy-server postgresql iptables ## the chaos suite across hosts (network namespaces, as root): blackhole, Consul partition, asymmetric partition, loss, latency, db outage, flapping
	go test -race -count=1 -timeout 12m ./test/multihost

.PHONY: chaos-multihost
chaos-multihost: bin/consul bin/toxiproxy-server postgresql iptables ## the multi-host suite at full length; writes its section of docs/reliability.md
	go test -count=1 -timeout 45m ./test/multihost -v -multihost.long

.PHONY: vet
vet: ## go vet
	go vet ./...

.PHONY: lint
# --allow-serial-runners: a second golangci-lint on the machine (an editor, another
# checkout's make test) waits for the first instead of failing the run.
lint: bin/golangci-lint ## golangci-lint (config in .golangci.yml)
	bin/golangci-lint run --allow-serial-runners ./...

.PHONY: fmt
fmt: bin/golangci-lint ## format with gofumpt and goimports
	bin/golangci-lint fmt ./...

.PHONY: test
# The chaos suite times calls under load (its short run bounds latencies by
# the healthy calls of the same run, see mode.limit), so it runs alone,
# after the other suites, instead of sharing two CPUs with them.
# The scaffold suite compiles whole copies of the tree, so it runs alone too,
# keeping its builds off the CPUs the end-to-end tests time calls on.
# The Nomad suite needs bin/nomad (minutes to build cold) and runs in
# test-nomad, which .ci/run runs after this target; the multi-host suite
# needs root and runs in test-multihost, after that.
test: bin/consul postgresql vet lint check-generated buf-check ## everything CI runs: vet, lint, generated-code check, all tests with -race
	go test -race -count=1 -timeout 20m $$(go list ./... | grep -v -e /test/chaos -e /test/nomad -e /test/scaffold -e /test/multihost)
	go test -race -count=1 -timeout 15m ./test/scaffold
	go test -race -count=1 -timeout 10m ./test/chaos

# Rounds alternate the cases (a, b, c, a, b, c, ...) instead of running each
# case six times in a row (-count 6), so load that comes and goes on the
# machine falls on every case alike and the ratios stay comparable.
BENCH_ROUNDS ?= 6
BENCH_OUT    ?= bin/bench.txt

.PHONY: bench
bench: ## benchmark a unary call, one and 64 in flight: bare grpc-go vs Kratos' stock chain vs Rampart's; prints medians and ratios
	@mkdir -p bin
	go test -c -o bin/bench.test ./test/bench
	@: > $(BENCH_OUT)
	@for i in $$(seq $(BENCH_ROUNDS)); do \
		echo "round $$i of $(BENCH_ROUNDS)"; \
		bin/bench.test -test.run '^$$' -test.bench . -test.benchmem -test.count 1 >> $(BENCH_OUT) || exit 1; \
	done
	@echo "raw results in $(BENCH_OUT)"
	@go run ./test/bench/report $(BENCH_OUT)

.PHONY: chaos
chaos: bin/consul ## chaos suite at full length (crash, hang, restarts, Consul loss, outage, overload); writes its section of docs/reliability.md and a picture of each run in docs/reliability/
	go test -count=1 -timeout 30m ./test/chaos -run . -v -chaos.long

.PHONY: clean
clean: ## remove built binaries and make run's work dir
	rm -rf bin .devstack
