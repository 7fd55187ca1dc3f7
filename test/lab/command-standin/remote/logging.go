package remote

import "github.com/pulumi/pulumi-go-provider/infer"

// Logging says which of the command's output streams are shown in the engine's log. The
// captured `stdout`/`stderr` outputs are the same whatever it says.
type Logging string

const (
	LogStdout          Logging = "stdout"
	LogStderr          Logging = "stderr"
	LogStdoutAndStderr Logging = "stdoutAndStderr"
	LogNone            Logging = "none"
)

// Values lists the enum for the schema (`command:remote:Logging`).
func (Logging) Values() []infer.EnumValue[Logging] {
	return []infer.EnumValue[Logging]{
		{Name: string(LogStdout), Value: LogStdout, Description: "Log stdout only."},
		{Name: string(LogStderr), Value: LogStderr, Description: "Log stderr only."},
		{Name: string(LogStdoutAndStderr), Value: LogStdoutAndStderr, Description: "Log both streams."},
		{Name: string(LogNone), Value: LogNone, Description: "Log neither stream."},
	}
}

// showsStdout reports whether stdout lines reach the log. Unset means both streams are logged.
func (l *Logging) showsStdout() bool {
	return l == nil || *l == LogStdout || *l == LogStdoutAndStderr
}

// showsStderr reports whether stderr lines reach the log. Unset means both streams are logged.
func (l *Logging) showsStderr() bool {
	return l == nil || *l == LogStderr || *l == LogStdoutAndStderr
}
