//go:build tools

// Package tools pins the one command ../build.sh builds from this module (kube-apiserver).
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
