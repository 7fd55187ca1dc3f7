// Package shim exposes the Terraform tls provider's plugin-framework provider, which lives in
// an internal package of its module.
package shim

import (
	tfpf "github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-provider-tls/internal/provider"
)

// NewProvider returns the Terraform tls provider.
func NewProvider() tfpf.Provider { return provider.New() }
