// Package provider assembles the stand-in `command` provider: `command:remote:Command`,
// inferred from the types in package remote, plus two adjustments around the inferred
// behaviour (see Diff and the secret marks below).
package provider

import (
	"context"
	"strings"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/property"

	"zerotouch.local/lab/command-standin/remote"
)

// Name is the package name the engine asks for: the plugin is `pulumi-resource-command`.
const Name = "command"

// New returns the provider.
func New() (p.Provider, error) {
	inferred, err := inferred()
	if err != nil {
		return p.Provider{}, err
	}
	return adjust(inferred), nil
}

// inferred is the provider as pulumi-go-provider derives it from package remote.
func inferred() (p.Provider, error) {
	return infer.NewProviderBuilder().
		WithResources(infer.Resource(&remote.Command{})).
		WithDisplayName("Command").
		WithNamespace("pulumi").
		WithGoImportPath("github.com/pulumi/pulumi-command/sdk/go/command").
		WithDescription("Lab stand-in for the command provider 1.2.1: runs commands on remote hosts over SSH.").
		WithLicense("Apache-2.0").
		Build()
}

// adjust wraps the inferred provider.
//
//   - Diff: a change anywhere under `triggers` replaces the resource. The inferred diff looks the
//     replaceOnChanges flag up by the full property path ("triggers[0]"), so it reports an
//     element change as an update; the official SDKs then force the replacement with their
//     `replaceOnChanges: ["triggers[*]"]` resource option. Deciding it here gives the same result
//     for those SDKs and the documented one for any other caller.
//   - Create/Update/Delete: whether the command text to run is secret is recorded on the
//     context, so a failing command's error does not print a secret command.
func adjust(inner p.Provider) p.Provider {
	out := inner
	out.Diff = func(ctx context.Context, req p.DiffRequest) (p.DiffResponse, error) {
		resp, err := inner.Diff(ctx, req)
		if err != nil {
			return resp, err
		}
		for path, d := range resp.DetailedDiff {
			if topLevel(path) == "triggers" {
				d.Kind = asReplace(d.Kind)
				resp.DetailedDiff[path] = d
			}
		}
		return resp, nil
	}
	out.Create = func(ctx context.Context, req p.CreateRequest) (p.CreateResponse, error) {
		return inner.Create(markSecrets(ctx, req.Properties), req)
	}
	out.Update = func(ctx context.Context, req p.UpdateRequest) (p.UpdateResponse, error) {
		return inner.Update(markSecrets(ctx, req.Inputs), req)
	}
	out.Delete = func(ctx context.Context, req p.DeleteRequest) error {
		return inner.Delete(markSecrets(ctx, req.Properties), req)
	}
	return out
}

func markSecrets(ctx context.Context, m property.Map) context.Context {
	secret := func(key string) bool {
		v, ok := m.GetOk(key)
		return ok && v.Secret()
	}
	return remote.WithSecretCommands(ctx, remote.NewSecretCommands(secret("create"), secret("update"), secret("delete")))
}

// topLevel returns the first element of a property path such as `triggers[0].a`.
func topLevel(path string) string {
	if pp, err := resource.ParsePropertyPath(path); err == nil && len(pp) > 0 {
		if head, ok := pp[0].(string); ok {
			return head
		}
	}
	if i := strings.IndexAny(path, "[."); i >= 0 {
		return path[:i]
	}
	return path
}

func asReplace(k p.DiffKind) p.DiffKind {
	switch k {
	case p.Add:
		return p.AddReplace
	case p.Delete:
		return p.DeleteReplace
	case p.Update:
		return p.UpdateReplace
	default:
		return k
	}
}
