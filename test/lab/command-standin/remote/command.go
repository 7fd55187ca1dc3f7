// Package remote implements `command:remote:Command` of the command provider 1.2.1: a shell
// command run over SSH on create, update and delete.
package remote

import (
	"context"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// Command is the resource controller of `command:remote:Command`.
type Command struct{}

// CommandInputs are the resource's inputs, named and typed as in the 1.2.1 schema.
type CommandInputs struct {
	Connection             *Connection       `pulumi:"connection" provider:"secret"`
	Environment            map[string]string `pulumi:"environment,optional"`
	Triggers               *[]any            `pulumi:"triggers,optional" provider:"replaceOnChanges"`
	Create                 *string           `pulumi:"create,optional"`
	Update                 *string           `pulumi:"update,optional"`
	Delete                 *string           `pulumi:"delete,optional"`
	Stdin                  *string           `pulumi:"stdin,optional"`
	Logging                *Logging          `pulumi:"logging,optional"`
	AddPreviousOutputInEnv *bool             `pulumi:"addPreviousOutputInEnv,optional"`
}

// CommandOutputs are the inputs plus what the last create or update printed.
type CommandOutputs struct {
	CommandInputs
	Stdout string `pulumi:"stdout"`
	Stderr string `pulumi:"stderr"`
}

var (
	_ infer.CustomResource[CommandInputs, CommandOutputs] = (*Command)(nil)
	_ infer.CustomUpdate[CommandInputs, CommandOutputs]   = (*Command)(nil)
	_ infer.CustomDelete[CommandOutputs]                  = (*Command)(nil)
)

func (c *Command) Annotate(a infer.Annotator) {
	a.SetToken("remote", "Command")
	a.Describe(&c, "A command run on a remote host over SSH (the lab's stand-in for the command provider).")
}

func (c *CommandInputs) Annotate(a infer.Annotator) {
	a.Describe(&c.Connection, "How to reach the remote host.")
	a.Describe(&c.Environment, "Variables set in the command's environment (the SSH server must accept them: AcceptEnv).")
	a.Describe(&c.Triggers, "Values whose change replaces the resource, so that create runs again.")
	a.Describe(&c.Create, "Command run when the resource is created; also on update when no update command is given.")
	a.Describe(&c.Update, "Command run when an input changes. PULUMI_COMMAND_STDOUT/STDERR hold the previous output.")
	a.Describe(&c.Delete, "Command run when the resource is deleted. PULUMI_COMMAND_STDOUT/STDERR hold the last output.")
	a.Describe(&c.Stdin, "Text fed to the command's standard input.")
	a.Describe(&c.Logging, "Which output streams are logged. Defaults to both. Captured outputs are unaffected.")
	a.Describe(&c.AddPreviousOutputInEnv,
		"Whether update and delete get the previous stdout/stderr as PULUMI_COMMAND_STDOUT/STDERR. Defaults to true.")
	a.SetDefault(&c.AddPreviousOutputInEnv, true)
}

func (c *CommandOutputs) Annotate(a infer.Annotator) {
	a.Describe(&c.Stdout, "Standard output of the last create or update, without its final newline.")
	a.Describe(&c.Stderr, "Standard error of the last create or update, without its final newline.")
}

// Create runs `create` (nothing in preview or when create is absent). A failed command fails
// the create: no resource is recorded.
func (*Command) Create(ctx context.Context, req infer.CreateRequest[CommandInputs]) (infer.CreateResponse[CommandOutputs], error) {
	out := CommandOutputs{CommandInputs: req.Inputs}
	id, err := resource.NewUniqueHex(req.Name, 8, 0)
	if err != nil {
		return infer.CreateResponse[CommandOutputs]{}, err
	}
	if req.DryRun || req.Inputs.Create == nil {
		return infer.CreateResponse[CommandOutputs]{ID: id, Output: out}, nil
	}
	if err := out.run(ctx, *req.Inputs.Create, secretCommands(ctx).create); err != nil {
		return infer.CreateResponse[CommandOutputs]{}, err
	}
	return infer.CreateResponse[CommandOutputs]{ID: id, Output: out}, nil
}

// Update runs `update`, or `create` when there is no update command. The previous output
// stays in the state until a command succeeds.
func (*Command) Update(ctx context.Context, req infer.UpdateRequest[CommandInputs, CommandOutputs]) (infer.UpdateResponse[CommandOutputs], error) {
	out := CommandOutputs{CommandInputs: req.Inputs, Stdout: req.State.Stdout, Stderr: req.State.Stderr}
	if req.DryRun {
		return infer.UpdateResponse[CommandOutputs]{Output: out}, nil
	}
	secret := secretCommands(ctx)
	var err error
	switch {
	case req.Inputs.Update != nil:
		err = out.run(ctx, *req.Inputs.Update, secret.update)
	case req.Inputs.Create != nil:
		err = out.run(ctx, *req.Inputs.Create, secret.create)
	}
	return infer.UpdateResponse[CommandOutputs]{Output: out}, err
}

// Delete runs `delete` from the recorded state, if there is one.
func (*Command) Delete(ctx context.Context, req infer.DeleteRequest[CommandOutputs]) (infer.DeleteResponse, error) {
	state := req.State
	if state.Delete == nil {
		return infer.DeleteResponse{}, nil
	}
	return infer.DeleteResponse{}, state.run(ctx, *state.Delete, secretCommands(ctx).delete)
}

// run executes command with this resource's settings and, on success, records its output.
// The previous output is offered to the command when addPreviousOutputInEnv allows it.
func (o *CommandOutputs) run(ctx context.Context, command string, commandSecret bool) error {
	stdout, stderr, err := execute(ctx, o.Connection, job{
		command:        command,
		commandSecret:  commandSecret,
		stdin:          o.Stdin,
		env:            o.Environment,
		previousStdout: o.Stdout,
		previousStderr: o.Stderr,
		passPrevious:   o.AddPreviousOutputInEnv == nil || *o.AddPreviousOutputInEnv,
		logging:        o.Logging,
	}, engineJournal{ctx})
	if err != nil {
		return err
	}
	o.Stdout, o.Stderr = stdout, stderr
	return nil
}

// engineJournal reports to the engine: output lines and retries as status messages (the Info
// column of the progress display), problems as diagnostics.
type engineJournal struct{ ctx context.Context }

func (j engineJournal) status(line string) { p.GetLogger(j.ctx).InfoStatus(line) }
func (j engineJournal) warning(msg string) { p.GetLogger(j.ctx).Warning(msg) }
func (j engineJournal) error(msg string)   { p.GetLogger(j.ctx).Error(msg) }

// SecretCommands says which command inputs of the request being served were secret. The
// typed inputs lose that mark, so the provider records it on the context before decoding.
type SecretCommands struct{ create, update, delete bool }

// NewSecretCommands builds the record from the secret marks of create, update and delete.
func NewSecretCommands(create, update, delete bool) SecretCommands {
	return SecretCommands{create: create, update: update, delete: delete}
}

type secretCommandsKey struct{}

// WithSecretCommands returns ctx carrying s.
func WithSecretCommands(ctx context.Context, s SecretCommands) context.Context {
	return context.WithValue(ctx, secretCommandsKey{}, s)
}

func secretCommands(ctx context.Context) SecretCommands {
	s, _ := ctx.Value(secretCommandsKey{}).(SecretCommands)
	return s
}
