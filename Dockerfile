# weft's container image: weftd and mk-docker-opts.sh on Debian slim, with iptables.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t ghcr.io/weftnet/weft:<tag> .
#
# dist/dockerfile_test.go checks this file statically (no docker engine needed): the build
# command is the Makefile's `static` target, every COPY source exists, every package weftd
# needs is copied, and the Go version matches go.mod.

# Build stage: a static weftd (no cgo, no libc), the same command as `make static`.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY backend/ backend/
COPY cmd/ cmd/
COPY daemon/ daemon/
COPY pkg/ pkg/
COPY subnet/ subnet/
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o bin/weftd ./cmd/weftd

# The CNI plugins the DaemonSet's init container installs into /opt/cni/bin: weft-cni as
# "flannel" (the type of the flannel conflist), and bridge, host-local and portmap built from
# github.com/containernetworking/plugins at the version go.mod pins.
FROM golang:1.26.8-bookworm AS cni
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/weft-cni/ cmd/weft-cni/
COPY pkg/subnetenv/ pkg/subnetenv/
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /cni/flannel ./cmd/weft-cni \
    && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /cni/ \
       github.com/containernetworking/plugins/plugins/main/bridge \
       github.com/containernetworking/plugins/plugins/ipam/host-local \
       github.com/containernetworking/plugins/plugins/meta/portmap

# Run stage. Not distroless: in iptables mode weftd runs iptables(8), so the image carries
# Debian's iptables package, which has both back ends (iptables-legacy, iptables-nft). weftd
# picks the one the host uses at start, as iptables-wrappers does (kubelet's hint chain, else
# where the kube/weft rules are) and logs which; no wrapper or update-alternatives is needed.
# nftables mode (EnableNFTables) and the ipset of peers go through netlink: no nft or ipset
# binary.
FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/bin/weftd /usr/local/bin/weftd
COPY dist/mk-docker-opts.sh /usr/local/bin/mk-docker-opts.sh
COPY --from=cni /cni/ /opt/weft/cni/
# No USER: weftd runs as root. Its work is network administration (links, routes, TUN
# devices, iptables), which needs CAP_NET_ADMIN and CAP_NET_RAW in the host's network
# namespace; a non-root user would need file capabilities on weftd and on iptables, which
# do not survive every runtime. Instead root is bounded by the runtime: the DaemonSet
# (dist/kube-weft.yml, kube-weft-etcd.yml) drops ALL capabilities and adds back only NET_ADMIN and NET_RAW,
# with privileged: false, no privilege escalation and a read-only root filesystem.
ENTRYPOINT ["/usr/local/bin/weftd"]
