//go:build tools

// Package tools pins the KubeRay operator command built by ../../build.sh.
package tools

import (
	_ "github.com/ray-project/kuberay/ray-operator"
)
