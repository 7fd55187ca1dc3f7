// Declared under the Terraform provider's module path so that it may import the provider's
// internal/provider package (Go allows internal imports only below the same path prefix).
module github.com/hashicorp/terraform-provider-tls/shim

go 1.25.8

require (
	github.com/hashicorp/terraform-plugin-framework v1.19.0
	github.com/hashicorp/terraform-provider-tls v1.2.1-0.20260819085117-d044ca7c6f52
)
