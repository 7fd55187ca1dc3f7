// plugin-embed writes the JSON files a resource plugin embeds with go:embed.
//
//	plugin-embed -version 4.21.2 schema.json schema-embed.json
//	plugin-embed mapping.json mapping-embed.json
//
// With -version, IN must be a Pulumi package schema (a JSON object) and its "version" is set;
// without it IN is copied. Either way OUT is compact JSON. Each top-level value is kept as
// written (only compacted); top-level keys come out sorted.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
)

func main() {
	version := flag.String("version", "", "set the schema's \"version\" to this")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: plugin-embed [-version V] IN OUT")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), flag.Arg(1), *version); err != nil {
		fmt.Fprintln(os.Stderr, "plugin-embed:", err)
		os.Exit(1)
	}
}

func run(in, out, version string) error {
	data, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var result []byte
	if version == "" {
		var buf bytes.Buffer
		if err := json.Compact(&buf, data); err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
		result = buf.Bytes()
	} else {
		var spec map[string]json.RawMessage
		if err := json.Unmarshal(data, &spec); err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
		if _, ok := spec["name"]; !ok {
			return fmt.Errorf("%s: not a package schema (no \"name\")", in)
		}
		v, err := json.Marshal(version)
		if err != nil {
			return err
		}
		spec["version"] = v
		if result, err = json.Marshal(spec); err != nil {
			return err
		}
	}
	return os.WriteFile(out, result, 0o644)
}
