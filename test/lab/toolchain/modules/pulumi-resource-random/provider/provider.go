// Package provider describes how the Terraform random provider is bridged to Pulumi: tokens
// random:index/randomPassword:RandomPassword etc., as in the published @pulumi/random SDK.
// Sensitive Terraform attributes (random_password.result, bcrypt_hash; random_bytes.base64,
// hex) become secret outputs through the bridge.
package provider

import (
	"context"
	"errors"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/terraform-providers/terraform-provider-random/shim"

	"zerotouch.local/toolchain/bridged"
)

// Info returns the bridge's provider info. metadata is the bridge-metadata.json written by the
// tfgen step ("{}" when running tfgen itself).
func Info(metadata []byte) tfbridge.ProviderInfo {
	info := bridged.Info("random", "A Pulumi package to safely use randomness in Pulumi programs.", shim.NewProvider(), metadata)
	info.Resources = map[string]*tfbridge.ResourceInfo{
		// random_bytes has no "id" attribute; its ID is its base64 value.
		"random_bytes": {ComputeID: bytesID},
	}
	info.EnableAccurateBridgePreview = true
	info.EnableRawStateDelta = true
	// random_password -> random:index/randomPassword:RandomPassword, and so on.
	makeToken := func(module, name string) (string, error) {
		return tokens.MakeStandard("random")(module, "Random"+name)
	}
	info.MustComputeTokens(tokens.SingleModule("random_", "index", makeToken))
	info.MustApplyAutoAliases()
	return info
}

func bytesID(_ context.Context, state resource.PropertyMap) (resource.ID, error) {
	v, ok := state["base64"]
	if !ok {
		return "", errors.New("random_bytes: state has no base64 property")
	}
	if v.IsSecret() {
		v = v.SecretValue().Element
	}
	if !v.IsString() {
		return "", errors.New("random_bytes: base64 is not a string")
	}
	return resource.ID(v.StringValue()), nil
}
