// Declared under the Terraform provider's module path so that it may import the provider's
// internal/provider package (Go allows internal imports only below the same path prefix).
module github.com/terraform-providers/terraform-provider-random/shim

go 1.25.8

require (
	github.com/hashicorp/terraform-plugin-framework v1.19.0
	github.com/terraform-providers/terraform-provider-random v1.3.2-0.20260824155315-e1092b0cfc07
)
