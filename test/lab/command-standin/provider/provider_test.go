package provider

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	rpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/structpb"

	"zerotouch.local/lab/command-standin/internal/sshtest"
)

// These tests talk to the provider through its gRPC server interface, with properties
// marshalled as the engine marshals them (secrets and unknowns kept), so they cover the same
// path a `pulumi up` takes, minus the process boundary (see binary_test.go for that).

const urn = "urn:pulumi:lab::zerotouch::command:remote:Command::node-step"

func server(t *testing.T) rpc.ResourceProviderServer {
	t.Helper()
	return configuredServer(t, New, &rpc.ConfigureRequest{AcceptSecrets: true, AcceptResources: true, SendsOldInputs: true, SendsOldInputsToDelete: true})
}

// configuredServer serves the provider build makes, configured with req.
func configuredServer(t *testing.T, build func() (p.Provider, error), req *rpc.ConfigureRequest) rpc.ResourceProviderServer {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	prov, err := build()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := p.RawServer(Name, "1.2.1", prov)(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Configure(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	return srv
}

// create creates the resource with inputs on srv and fails the test if that fails.
func create(t *testing.T, srv rpc.ResourceProviderServer, inputs resource.PropertyMap) *rpc.CreateResponse {
	t.Helper()
	resp, err := srv.Create(ctx(t), &rpc.CreateRequest{Urn: urn, Properties: marshal(t, inputs)})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func marshal(t *testing.T, m resource.PropertyMap) *structpb.Struct {
	t.Helper()
	s, err := plugin.MarshalProperties(m, plugin.MarshalOptions{KeepSecrets: true, KeepUnknowns: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func unmarshal(t *testing.T, s *structpb.Struct) resource.PropertyMap {
	t.Helper()
	m, err := plugin.UnmarshalProperties(s, plugin.MarshalOptions{KeepSecrets: true, KeepUnknowns: true})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sdkInputs are inputs as @pulumi/command 1.2.1 sends them for a node step: the connection
// wrapped in a secret with the SDK's defaults filled in.
func sdkInputs(s *sshtest.Server, extra map[string]any) resource.PropertyMap {
	conn := map[string]any{
		"host":           s.Host,
		"port":           float64(s.Port),
		"user":           s.User,
		"privateKey":     s.ClientKeyPEM,
		"hostKey":        s.AuthorizedHostKey(),
		"dialErrorLimit": float64(0),
		"perDialTimeout": float64(5),
	}
	m := resource.NewPropertyMapFromMap(map[string]any{
		"create":                 "cat",
		"addPreviousOutputInEnv": false,
		"triggers":               []any{"sha256-1"},
	})
	m["connection"] = resource.MakeSecret(resource.NewPropertyValue(conn))
	for k, v := range extra {
		if pv, ok := v.(resource.PropertyValue); ok {
			m[resource.PropertyKey(k)] = pv
		} else {
			m[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
		}
	}
	return m
}

func TestSchema(t *testing.T) {
	resp, err := server(t).GetSchema(ctx(t), &rpc.GetSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Name      string `json:"name"`
		Resources map[string]struct {
			Properties      map[string]json.RawMessage `json:"properties"`
			InputProperties map[string]struct {
				Secret           bool   `json:"secret"`
				ReplaceOnChanges bool   `json:"replaceOnChanges"`
				Ref              string `json:"$ref"`
				Type             string `json:"type"`
				Default          any    `json:"default"`
			} `json:"inputProperties"`
			Required       []string `json:"required"`
			RequiredInputs []string `json:"requiredInputs"`
		} `json:"resources"`
		Types map[string]struct {
			Type       string `json:"type"`
			Properties map[string]struct {
				Type    string `json:"type"`
				Ref     string `json:"$ref"`
				Default any    `json:"default"`
			} `json:"properties"`
			Required []string `json:"required"`
			Enum     []struct {
				Value string `json:"value"`
			} `json:"enum"`
		} `json:"types"`
	}
	if err := json.Unmarshal([]byte(resp.Schema), &schema); err != nil {
		t.Fatal(err)
	}
	if schema.Name != "command" {
		t.Errorf("package name %q", schema.Name)
	}
	if len(schema.Resources) != 1 {
		t.Errorf("resources: %v", keys(schema.Resources))
	}
	cmd, ok := schema.Resources["command:remote:Command"]
	if !ok {
		t.Fatalf("no command:remote:Command in %v", keys(schema.Resources))
	}
	inputs := []string{"addPreviousOutputInEnv", "connection", "create", "delete", "environment", "logging", "stdin", "triggers", "update"}
	if got := keys(cmd.InputProperties); !slices.Equal(got, inputs) {
		t.Errorf("inputs %v, want %v", got, inputs)
	}
	if got := keys(cmd.Properties); !slices.Equal(got, sorted(append(slices.Clone(inputs), "stdout", "stderr"))) {
		t.Errorf("outputs %v", got)
	}
	if !slices.Equal(sorted(cmd.Required), []string{"connection", "stderr", "stdout"}) || !slices.Equal(cmd.RequiredInputs, []string{"connection"}) {
		t.Errorf("required %v, requiredInputs %v", cmd.Required, cmd.RequiredInputs)
	}
	in := cmd.InputProperties
	if !in["connection"].Secret || in["connection"].Ref != "#/types/command:remote:Connection" {
		t.Errorf("connection: %+v", in["connection"])
	}
	if !in["triggers"].ReplaceOnChanges || in["triggers"].Type != "array" {
		t.Errorf("triggers: %+v", in["triggers"])
	}
	for _, name := range []string{"create", "update", "delete", "stdin", "environment", "logging", "connection", "addPreviousOutputInEnv"} {
		if in[name].ReplaceOnChanges {
			t.Errorf("%s must update in place, not replace", name)
		}
	}
	if in["logging"].Ref != "#/types/command:remote:Logging" || in["addPreviousOutputInEnv"].Default != true {
		t.Errorf("logging %+v, addPreviousOutputInEnv %+v", in["logging"], in["addPreviousOutputInEnv"])
	}

	endpoint := []string{"agentSocketPath", "dialErrorLimit", "host", "hostKey", "password", "perDialTimeout", "port", "privateKey", "privateKeyPassword", "user"}
	conn := schema.Types["command:remote:Connection"]
	if got := keys(conn.Properties); !slices.Equal(got, sorted(append(slices.Clone(endpoint), "proxy"))) {
		t.Errorf("Connection properties %v", got)
	}
	if conn.Properties["proxy"].Ref != "#/types/command:remote:ProxyConnection" {
		t.Errorf("proxy: %+v", conn.Properties["proxy"])
	}
	proxy := schema.Types["command:remote:ProxyConnection"]
	if got := keys(proxy.Properties); !slices.Equal(got, endpoint) {
		t.Errorf("ProxyConnection properties %v", got)
	}
	for name, typ := range map[string]struct {
		Type    string `json:"type"`
		Ref     string `json:"$ref"`
		Default any    `json:"default"`
	}{
		"port": {Type: "number", Default: float64(22)}, "user": {Type: "string", Default: "root"},
		"dialErrorLimit": {Type: "integer", Default: float64(10)}, "perDialTimeout": {Type: "integer", Default: float64(15)},
		"host": {Type: "string"}, "hostKey": {Type: "string"},
	} {
		for _, obj := range []string{"command:remote:Connection", "command:remote:ProxyConnection"} {
			if got := schema.Types[obj].Properties[name]; got != typ {
				t.Errorf("%s.%s = %+v, want %+v", obj, name, got, typ)
			}
		}
	}
	if !slices.Equal(conn.Required, []string{"host"}) || !slices.Equal(proxy.Required, []string{"host"}) {
		t.Errorf("required: %v / %v", conn.Required, proxy.Required)
	}
	var values []string
	for _, e := range schema.Types["command:remote:Logging"].Enum {
		values = append(values, e.Value)
	}
	if !slices.Equal(sorted(values), []string{"none", "stderr", "stdout", "stdoutAndStderr"}) {
		t.Errorf("logging values %v", values)
	}
}

func TestCheckAppliesDefaults(t *testing.T) {
	news := resource.NewPropertyMapFromMap(map[string]any{"create": "true"})
	news["connection"] = resource.MakeSecret(resource.NewPropertyValue(map[string]any{
		"host":  "10.213.0.11",
		"proxy": map[string]any{"host": "10.213.0.1"},
	}))
	resp, err := server(t).Check(ctx(t), &rpc.CheckRequest{Urn: urn, News: marshal(t, news)})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Failures) != 0 {
		t.Fatalf("failures: %v", resp.Failures)
	}
	got := unmarshal(t, resp.Inputs)
	if !got["addPreviousOutputInEnv"].IsBool() || !got["addPreviousOutputInEnv"].BoolValue() {
		t.Errorf("addPreviousOutputInEnv = %v", got["addPreviousOutputInEnv"])
	}
	if !got["connection"].IsSecret() {
		t.Fatalf("connection lost its secret mark: %v", got["connection"])
	}
	conn := got["connection"].SecretValue().Element.ObjectValue()
	want := map[string]any{"port": float64(22), "user": "root", "dialErrorLimit": float64(10), "perDialTimeout": float64(15), "host": "10.213.0.11"}
	for k, v := range want {
		if conn[resource.PropertyKey(k)].V != v {
			t.Errorf("connection.%s = %v, want %v", k, conn[resource.PropertyKey(k)].V, v)
		}
	}
	proxy := conn["proxy"].ObjectValue()
	if proxy["port"].V != float64(22) || proxy["user"].V != "root" || proxy["dialErrorLimit"].V != float64(10) {
		t.Errorf("proxy defaults: %v", proxy)
	}
}

func TestCheckRejectsBadInputs(t *testing.T) {
	srv := server(t)
	good := func() resource.PropertyMap {
		m := resource.NewPropertyMapFromMap(map[string]any{"create": "true"})
		m["connection"] = resource.MakeSecret(resource.NewPropertyValue(map[string]any{"host": "10.213.0.11"}))
		return m
	}
	noConnection := good()
	delete(noConnection, "connection")
	unknownField := good()
	unknownField["connection"] = resource.MakeSecret(resource.NewPropertyValue(map[string]any{"host": "h", "hostname": "h"}))
	for name, news := range map[string]resource.PropertyMap{"no connection": noConnection, "unknown connection field": unknownField} {
		t.Run(name, func(t *testing.T) {
			resp, err := srv.Check(ctx(t), &rpc.CheckRequest{Urn: urn, News: marshal(t, news)})
			if err == nil && len(resp.Failures) == 0 {
				t.Errorf("accepted")
			}
		})
	}
}

// diff runs Diff as the engine does after an earlier create with olds.
func diff(t *testing.T, srv rpc.ResourceProviderServer, olds, news resource.PropertyMap) *rpc.DiffResponse {
	t.Helper()
	state := olds.Copy()
	state["stdout"] = resource.NewProperty("out")
	state["stderr"] = resource.NewProperty("")
	resp, err := srv.Diff(ctx(t), &rpc.DiffRequest{Id: "node-step1234abcd", Urn: urn, Olds: marshal(t, state), News: marshal(t, news), OldInputs: marshal(t, olds)})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestDiffRules(t *testing.T) {
	srv := server(t)
	base := sdkInputs(sshtest.Start(t, sshtest.Options{}), nil)
	with := func(change func(m resource.PropertyMap)) resource.PropertyMap {
		m := base.Copy()
		change(m)
		return m
	}
	withUpdate := with(func(m resource.PropertyMap) { m["update"] = resource.NewProperty("cat --update") })
	cases := []struct {
		name    string
		olds    resource.PropertyMap
		news    resource.PropertyMap
		changes bool
		replace []string
	}{
		{"nothing changed", base, base, false, nil},
		{"trigger value changed", base, with(func(m resource.PropertyMap) {
			m["triggers"] = resource.NewProperty([]resource.PropertyValue{resource.NewProperty("sha256-2")})
		}), true, []string{"triggers"}},
		{"trigger appended", base, with(func(m resource.PropertyMap) {
			m["triggers"] = resource.NewProperty([]resource.PropertyValue{resource.NewProperty("sha256-1"), resource.NewProperty("meta")})
		}), true, []string{"triggers"}},
		{"triggers added", with(func(m resource.PropertyMap) { delete(m, "triggers") }), base, true, []string{"triggers"}},
		{"triggers removed", base, with(func(m resource.PropertyMap) { delete(m, "triggers") }), true, []string{"triggers"}},
		{"secret trigger changed", with(func(m resource.PropertyMap) {
			m["triggers"] = resource.NewProperty([]resource.PropertyValue{resource.MakeSecret(resource.NewProperty("a"))})
		}), with(func(m resource.PropertyMap) {
			m["triggers"] = resource.NewProperty([]resource.PropertyValue{resource.MakeSecret(resource.NewProperty("b"))})
		}), true, []string{"triggers"}},
		{"unknown trigger (preview)", base, with(func(m resource.PropertyMap) {
			m["triggers"] = resource.NewProperty([]resource.PropertyValue{resource.MakeComputed(resource.NewProperty(""))})
		}), true, []string{"triggers"}},
		{"create changed, no update command: update in place (create runs again)", base, with(func(m resource.PropertyMap) { m["create"] = resource.NewProperty("cat -v") }), true, nil},
		{"create changed, update command given", withUpdate, with(func(m resource.PropertyMap) {
			m["update"] = resource.NewProperty("cat --update")
			m["create"] = resource.NewProperty("cat -v")
		}), true, nil},
		{"update command added", base, withUpdate, true, nil},
		{"delete changed", base, with(func(m resource.PropertyMap) { m["delete"] = resource.NewProperty("rm -f x") }), true, nil},
		{"stdin changed", base, with(func(m resource.PropertyMap) { m["stdin"] = resource.NewProperty("payload") }), true, nil},
		{"environment changed", base, with(func(m resource.PropertyMap) {
			m["environment"] = resource.NewProperty(resource.NewPropertyMapFromMap(map[string]any{"A": "1"}))
		}), true, nil},
		{"logging changed", base, with(func(m resource.PropertyMap) { m["logging"] = resource.NewProperty("none") }), true, nil},
		{"connection changed (host key pinned)", base, with(func(m resource.PropertyMap) {
			c := m["connection"].SecretValue().Element.ObjectValue().Copy()
			c["hostKey"] = resource.NewProperty("ssh-ed25519 AAAAother")
			m["connection"] = resource.MakeSecret(resource.NewProperty(c))
		}), true, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := diff(t, srv, c.olds, c.news)
			if got := resp.Changes == rpc.DiffResponse_DIFF_SOME; got != c.changes {
				t.Errorf("changes = %v, want %v (diffs %v)", resp.Changes, c.changes, resp.Diffs)
			}
			if !slices.Equal(sorted(resp.Replaces), c.replace) {
				t.Errorf("replaces = %v, want %v (detailed %v)", resp.Replaces, c.replace, resp.DetailedDiff)
			}
			if resp.DeleteBeforeReplace {
				t.Errorf("deleteBeforeReplace set; upstream leaves it to the resource option")
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{AcceptEnv: []string{"*"}})
	srv := server(t)
	inputs := sdkInputs(s, map[string]any{
		"stdin":                  resource.MakeSecret(resource.NewProperty("token-from-config\n")),
		"create":                 "cat",
		"update":                 `printf 'was:%s' "$PULUMI_COMMAND_STDOUT"`,
		"delete":                 `test "$(cat)" = rotated && test "$PULUMI_COMMAND_STDOUT" = was:token-from-config`,
		"addPreviousOutputInEnv": true,
		"logging":                "none",
		// as secretNodeScript sends it: the payload hash as a secret element
		"triggers": resource.NewProperty([]resource.PropertyValue{resource.MakeSecret(resource.NewProperty("sha256-secret"))}),
	})

	// Preview: nothing runs.
	pre, err := srv.Create(ctx(t), &rpc.CreateRequest{Urn: urn, Properties: marshal(t, inputs), Preview: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Execs() != 0 {
		t.Fatalf("preview ran a command")
	}
	if !unmarshal(t, pre.Properties)["stdout"].IsComputed() {
		t.Errorf("preview stdout should be unknown: %v", unmarshal(t, pre.Properties)["stdout"])
	}

	created := create(t, srv, inputs)
	if !strings.HasPrefix(created.Id, "node-step") || len(created.Id) != len("node-step")+8 {
		t.Errorf("id %q: want the name and 8 hex digits", created.Id)
	}
	state := unmarshal(t, created.Properties)
	if state["stdout"].StringValue() != "token-from-config" {
		t.Errorf("stdout = %v", state["stdout"])
	}
	if !state["connection"].IsSecret() || !state["stdin"].IsSecret() {
		t.Errorf("secret inputs must stay secret in the outputs: connection %v, stdin %v", state["connection"].IsSecret(), state["stdin"].IsSecret())
	}
	if tr := state["triggers"]; !tr.IsSecret() && !(tr.IsArray() && tr.ArrayValue()[0].IsSecret()) {
		t.Errorf("a secret trigger lost its secret mark: %v", tr)
	}
	if state["stdout"].IsSecret() {
		t.Errorf("stdout is secret only through additionalSecretOutputs (engine side), as upstream")
	}

	// Refresh keeps the state as it is.
	read, err := srv.Read(ctx(t), &rpc.ReadRequest{Id: created.Id, Urn: urn, Properties: created.Properties, Inputs: marshal(t, inputs)})
	if err != nil {
		t.Fatal(err)
	}
	if !unmarshal(t, read.Properties).DeepEquals(state) || read.Id != created.Id {
		t.Errorf("read changed the state")
	}

	news := inputs.Copy()
	news["stdin"] = resource.MakeSecret(resource.NewProperty("rotated\n"))
	updated, err := srv.Update(ctx(t), &rpc.UpdateRequest{Id: created.Id, Urn: urn, Olds: created.Properties, News: marshal(t, news), OldInputs: marshal(t, inputs)})
	if err != nil {
		t.Fatal(err)
	}
	if got := unmarshal(t, updated.Properties)["stdout"].StringValue(); got != "was:token-from-config" {
		t.Errorf("update stdout = %q: update must run `update` with the previous stdout in PULUMI_COMMAND_STDOUT", got)
	}

	// Delete runs from the state: its stdin and the last stdout reach the delete command.
	if _, err := srv.Delete(ctx(t), &rpc.DeleteRequest{Id: created.Id, Urn: urn, Properties: updated.Properties, OldInputs: marshal(t, news)}); err != nil {
		t.Fatal(err)
	}
	cmds := s.Commands()
	if len(cmds) != 3 || cmds[0] != "cat" || !strings.HasPrefix(cmds[1], "printf 'was:") || !strings.HasPrefix(cmds[2], `test "$(cat)"`) {
		t.Errorf("commands run: %q", cmds)
	}
}

func TestUpdateWithoutUpdateCommandRunsCreate(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	srv := server(t)
	olds := sdkInputs(s, map[string]any{"create": "echo one"})
	created := create(t, srv, olds)
	news := sdkInputs(s, map[string]any{"create": "echo two"})
	updated, err := srv.Update(ctx(t), &rpc.UpdateRequest{Id: created.Id, Urn: urn, Olds: created.Properties, News: marshal(t, news), OldInputs: marshal(t, olds)})
	if err != nil {
		t.Fatal(err)
	}
	if got := unmarshal(t, updated.Properties)["stdout"].StringValue(); got != "two" {
		t.Errorf("stdout = %q", got)
	}
	// No delete command: deleting runs nothing.
	if _, err := srv.Delete(ctx(t), &rpc.DeleteRequest{Id: created.Id, Urn: urn, Properties: updated.Properties}); err != nil {
		t.Fatal(err)
	}
	if s.Execs() != 2 {
		t.Errorf("execs = %d", s.Execs())
	}
}

func TestFailedCreateLeavesNoResourceAndNoSecret(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	srv := server(t)
	inputs := sdkInputs(s, map[string]any{
		"create":  resource.MakeSecret(resource.NewProperty("echo leaked-$((6*7)); exit 4 # sk-live-123")),
		"logging": "none",
	})
	resp, err := srv.Create(ctx(t), &rpc.CreateRequest{Urn: urn, Properties: marshal(t, inputs)})
	if err == nil {
		t.Fatalf("create succeeded: %v", resp)
	}
	if resp != nil {
		t.Errorf("a failed create returned a resource: %v", resp)
	}
	msg := err.Error()
	if !strings.Contains(msg, "Process exited with status 4") {
		t.Errorf("error %q", msg)
	}
	for _, secret := range []string{"leaked-42", "sk-live-123"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error shows %q: %s", secret, msg)
		}
	}
}

func TestUpdateFailureKeepsState(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	srv := server(t)
	olds := sdkInputs(s, map[string]any{"create": "echo ok"})
	created := create(t, srv, olds)
	news := sdkInputs(s, map[string]any{"create": "echo ok", "update": "echo bad >&2; exit 1"})
	_, err := srv.Update(ctx(t), &rpc.UpdateRequest{Id: created.Id, Urn: urn, Olds: created.Properties, News: marshal(t, news), OldInputs: marshal(t, olds)})
	if err == nil || !strings.Contains(err.Error(), "bad") {
		t.Fatalf("err = %v: the default logging shows the output in the error, as upstream", err)
	}
}

func TestCreateWithoutCreateCommandRunsNothing(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	srv := server(t)
	inputs := sdkInputs(s, nil)
	delete(inputs, "create")
	inputs["delete"] = resource.NewProperty("true")
	resp, err := srv.Create(ctx(t), &rpc.CreateRequest{Urn: urn, Properties: marshal(t, inputs)})
	if err != nil || resp.Id == "" {
		t.Fatalf("resp %v, err %v", resp, err)
	}
	if s.Execs() != 0 {
		t.Errorf("execs = %d", s.Execs())
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

// The reason for the Diff adjustment: the inferred diff reports a changed trigger element as
// an in-place update. If a newer pulumi-go-provider decides this itself, this test says so and
// the adjustment can go.
func TestInferredDiffNeedsTheTriggersAdjustment(t *testing.T) {
	srv := configuredServer(t, inferred, &rpc.ConfigureRequest{AcceptSecrets: true, SendsOldInputs: true, SendsOldInputsToDelete: true})
	olds := sdkInputs(sshtest.Start(t, sshtest.Options{}), nil)
	news := olds.Copy()
	news["triggers"] = resource.NewProperty([]resource.PropertyValue{resource.NewProperty("sha256-2")})
	resp := diff(t, srv, olds, news)
	if len(resp.Replaces) != 0 {
		t.Errorf("the inferred diff now replaces on its own (%v): drop the adjustment in provider.go", resp.Replaces)
	}
}

// In a first preview the pinned host key is unknown (it comes from the connect step's stdout).
func TestPreviewWithUnknownHostKey(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	srv := server(t)
	inputs := sdkInputs(s, nil)
	conn := inputs["connection"].SecretValue().Element.ObjectValue().Copy()
	conn["hostKey"] = resource.MakeComputed(resource.NewProperty(""))
	inputs["connection"] = resource.MakeSecret(resource.NewProperty(conn))
	checked, err := srv.Check(ctx(t), &rpc.CheckRequest{Urn: urn, News: marshal(t, inputs)})
	if err != nil || len(checked.Failures) > 0 {
		t.Fatalf("check: %v %v", err, checked.GetFailures())
	}
	if _, err := srv.Create(ctx(t), &rpc.CreateRequest{Urn: urn, Properties: checked.Inputs, Preview: true}); err != nil {
		t.Fatal(err)
	}
	resp := diff(t, srv, sdkInputs(s, nil), inputs)
	if resp.Changes != rpc.DiffResponse_DIFF_SOME || len(resp.Replaces) != 0 {
		t.Errorf("diff with an unknown host key: changes %v, replaces %v", resp.Changes, resp.Replaces)
	}
	if s.Execs() != 0 {
		t.Errorf("a preview ran a command")
	}
}
