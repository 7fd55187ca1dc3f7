// Package shim exposes the Terraform random provider's plugin-framework provider, which lives in
// an internal package of its module.
package shim

import (
	tfpf "github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/terraform-providers/terraform-provider-random/internal/provider"
)

// NewProvider returns the Terraform random provider.
func NewProvider() tfpf.Provider { return provider.New() }
