package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	rpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"zerotouch.local/lab/command-standin/internal/sshtest"
)

// TestBinaryServesTheEngineProtocol starts the plugin binary the way the engine does (a child
// process that prints its gRPC port on stdout) and drives one command through it. The binary
// is $COMMAND_STANDIN_BINARY, or built here with the README's command.
func TestBinaryServesTheEngineProtocol(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the plugin binary")
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	bin := os.Getenv("COMMAND_STANDIN_BINARY")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "pulumi-resource-command")
		build := exec.CommandContext(ctx, "go", "build", "-mod=readonly", "-trimpath",
			"-ldflags", "-X main.Version=1.2.1", "-o", bin, ".")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
	}

	proc := exec.CommandContext(ctx, bin)
	stdout, err := proc.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	proc.Stderr = os.Stderr
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = proc.Process.Kill()
		_ = proc.Wait()
	})
	portLine := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		portLine <- strings.TrimSpace(line)
	}()
	var port string
	select {
	case port = <-portLine:
	case <-time.After(30 * time.Second):
		t.Fatal("the plugin printed no port within 30 s")
	}

	conn, err := grpc.NewClient("127.0.0.1:"+port, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	client := rpc.NewResourceProviderClient(conn)

	info, err := client.GetPluginInfo(ctx, &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != "1.2.1" {
		t.Errorf("plugin version %q, want 1.2.1 (the @pulumi/command version)", info.Version)
	}
	schema, err := client.GetSchema(ctx, &rpc.GetSchemaRequest{})
	if err != nil || !strings.Contains(schema.Schema, `"command:remote:Command"`) {
		t.Fatalf("schema: %v", err)
	}
	if _, err := client.Configure(ctx, &rpc.ConfigureRequest{AcceptSecrets: true, SendsOldInputs: true, SendsOldInputsToDelete: true}); err != nil {
		t.Fatal(err)
	}

	s := sshtest.Start(t, sshtest.Options{})
	inputs := resource.NewPropertyMapFromMap(map[string]any{"create": "cat", "stdin": "over the wire"})
	inputs["connection"] = resource.MakeSecret(resource.NewPropertyValue(map[string]any{
		"host": s.Host, "port": float64(s.Port), "user": s.User, "privateKey": s.ClientKeyPEM,
		"hostKey": s.AuthorizedHostKey(), "dialErrorLimit": float64(0),
	}))
	props, err := plugin.MarshalProperties(inputs, plugin.MarshalOptions{KeepSecrets: true})
	if err != nil {
		t.Fatal(err)
	}
	const urn = "urn:pulumi:lab::zerotouch::command:remote:Command::wire"
	checked, err := client.Check(ctx, &rpc.CheckRequest{Urn: urn, News: props})
	if err != nil || len(checked.Failures) > 0 {
		t.Fatalf("check: %v %v", err, checked.GetFailures())
	}
	created, err := client.Create(ctx, &rpc.CreateRequest{Urn: urn, Properties: checked.Inputs})
	if err != nil {
		t.Fatal(err)
	}
	out, err := plugin.UnmarshalProperties(created.Properties, plugin.MarshalOptions{KeepSecrets: true})
	if err != nil {
		t.Fatal(err)
	}
	if out["stdout"].StringValue() != "over the wire" || !out["connection"].IsSecret() {
		t.Errorf("outputs: stdout %v, connection secret %v", out["stdout"], out["connection"].IsSecret())
	}
}
