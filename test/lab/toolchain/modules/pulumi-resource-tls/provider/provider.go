// Package provider describes how the Terraform tls provider is bridged to Pulumi: tokens
// tls:index/privateKey:PrivateKey etc., as in the published @pulumi/tls SDK. Sensitive
// Terraform attributes (tls_private_key.private_key_pem, private_key_openssh,
// private_key_pem_pkcs8; the private_key_pem inputs of the certificates) become secret
// outputs through the bridge.
package provider

import (
	"github.com/hashicorp/terraform-provider-tls/shim"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"

	"zerotouch.local/toolchain/bridged"
)

// Info returns the bridge's provider info. metadata is the bridge-metadata.json written by the
// tfgen step ("{}" when running tfgen itself).
func Info(metadata []byte) tfbridge.ProviderInfo {
	info := bridged.Info("tls", "A Pulumi package to create TLS resources in Pulumi programs.", shim.NewProvider(), metadata)
	info.GitHubOrg = "hashicorp"
	info.Resources = map[string]*tfbridge.ResourceInfo{
		"tls_cert_request":        {Tok: "tls:index/certRequest:CertRequest"},
		"tls_locally_signed_cert": {Tok: "tls:index/locallySignedCert:LocallySignedCert"},
		"tls_private_key":         {Tok: "tls:index/privateKey:PrivateKey"},
		"tls_self_signed_cert":    {Tok: "tls:index/selfSignedCert:SelfSignedCert"},
	}
	info.DataSources = map[string]*tfbridge.DataSourceInfo{
		"tls_certificate": {Tok: "tls:index/getCertificate:getCertificate"},
		"tls_public_key":  {Tok: "tls:index/getPublicKey:getPublicKey"},
	}
	info.EnableZeroDefaultSchemaVersion = true
	return info
}
