//go:build tools

// Package tools pins the command this wrapper module builds: argo-cd's own main package
// (cmd/main.go), the multi-call binary that picks its component by the name it is run as
// (argocd, argocd-server, argocd-repo-server, argocd-application-controller, ...). It is
// built as it is rather than copied: its dispatch, logging setup and plugin handling stay
// exactly upstream's.
package tools

import (
	_ "github.com/argoproj/argo-cd/v3/cmd"
)
