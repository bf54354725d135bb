// Package dist holds weft's shipping files, not code: mk-docker-opts.sh, the systemd units
// (weftd.service, weftd.env, docker-weft.conf), the Kubernetes manifests (kube-weft.yml in
// Kubernetes mode, kube-weft-etcd.yml on etcd) and
// the checks of the repository's Dockerfile. Its Go files only test those files: the script
// against expected outputs and hostile input, the units with systemd-analyze, the manifest
// by strict decoding into the Kubernetes API types, and the Dockerfile against the Makefile.
package dist
