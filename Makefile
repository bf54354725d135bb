# weft: build, test, demo. `make test` and `make demo` install what they need (as root).
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BACKEND  ?= host-gw
NODES    ?= 3
FAMILY   ?= ipv4
# Debian packages the tests and the demo use: a real etcd, namespaces and traffic tools.
DEB_PKGS := etcd-server etcd-client iproute2 iptables ipset nftables iputils-ping iperf3 tcpdump ethtool procps shellcheck systemd

.PHONY: all build deps test fuzz demo clean vet static shellcheck bench bench-smoke

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

# A static weftd for the container image: the Dockerfile runs this same command
# (dist/dockerfile_test.go compares them).
static:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/weftd ./cmd/weftd

# Lint the shell scripts as POSIX sh: the shipped one and the fuzz runner.
shellcheck:
	shellcheck -s sh dist/mk-docker-opts.sh test/fuzz.sh

# Install the system packages that are missing (apt-get, as root).
deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root to install:$$missing" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed" >&2; exit 1; }
	$(GO) vet ./...

# The whole suite: unit, etcd and namespace end-to-end tests, with the race detector.
test: deps vet shellcheck build kube-apiserver
	$(GO) test -race -count=1 -timeout 14m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=3s

# The real kube-apiserver the Kubernetes-mode tests run against (test/kubetest), built once
# from k8s.io/kubernetes at KUBE_VERSION (test/kube pins it) into a cache outside the repository,
# keyed by version: 9 to 15 minutes and 120 MB on 2 cores the first time, nothing after. The
# tests find it through WEFT_KUBE_APISERVER (kubetest.DefaultBinary when unset).
KUBE_VERSION := v1.37.2
export WEFT_KUBE_APISERVER ?= /var/cache/weft-test/kube-apiserver-$(KUBE_VERSION)
.PHONY: kube-apiserver
kube-apiserver: $(WEFT_KUBE_APISERVER)
$(WEFT_KUBE_APISERVER):
	@mkdir -p $(dir $@)
	cd test/kube && CGO_ENABLED=0 $(GO) build -trimpath -o $@.tmp \
		-ldflags '-s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37' \
		k8s.io/kubernetes/cmd/kube-apiserver
	mv $@.tmp $@

# Short, bounded fuzz runs of every fuzz target (seed corpora under testdata/fuzz are also run
# by plain `go test`). FUZZTIME per target, FUZZPARALLEL workers per target (one leaves the
# second core to the coordinator on a small machine). test/fuzz.sh says how a failure is
# reported and when a target is run a second time.
FUZZTIME     ?= 5s
FUZZPARALLEL ?= 1
fuzz:
	@GO='$(GO)' FUZZTIME='$(FUZZTIME)' FUZZPARALLEL='$(FUZZPARALLEL)' sh test/fuzz.sh

# A demo cluster in network namespaces: NODES nodes with BACKEND, pods pinging each other over
# FAMILY (ipv4, dual-stack or ipv6); MODE=kube (read from the environment) uses a kube-apiserver.
demo: deps build
	$(GO) run ./cmd/weft-demo -backend $(BACKEND) -nodes $(NODES) -family $(FAMILY) -weftd bin/weftd

# Benchmarks, as root, in namespaces of their own: the underlay and every backend (throughput,
# round trip, weftd CPU per GB), convergence of joining nodes, one weftd with 2000 peers.
# Results in results/<timestamp>/; see Documentation/benchmarks.md. Extra flags: BENCH_ARGS=...
BENCH_ARGS ?=
bench: deps build
	$(GO) run ./cmd/weft-bench -weftd bin/weftd -out results $(BENCH_ARGS)

# The same with the smallest settings (about 30 s): shows the tool works; the numbers mean little.
bench-smoke: deps build
	$(GO) run ./cmd/weft-bench -weftd bin/weftd -out results -quick $(BENCH_ARGS)

clean:
	rm -rf bin
