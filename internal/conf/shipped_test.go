package conf

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rampart-go/rampart/internal/middleware"
)

// shippedConfig is one of configs/*.yaml, raw and loaded.
type shippedConfig struct {
	path string
	raw  []byte
	c    *Bootstrap
}

// scaffoldConfig is the config template make new-service writes; it is
// checked as shipped, rendered for a service named payment.
const scaffoldConfig = "../../internal/scaffold/templates/service/configs/NAME.yaml.tmpl"

// shippedConfigs loads every configs/*.yaml and the scaffold's template as
// a service would, without environment overrides, failing the test on any
// that does not load.
func shippedConfigs(t *testing.T) []shippedConfig {
	t.Helper()
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no configs found: %v", err)
	}
	files = append(files, scaffoldConfig)
	out := make([]shippedConfig, 0, len(files))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		raw = []byte(strings.ReplaceAll(string(raw), "{{.Name}}", "payment"))
		c, err := Parse(raw, func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, shippedConfig{path: f, raw: raw, c: c})
	}
	return out
}

// The shipped configs must load as they are (they are what make run uses),
// with the health check timings the registry tests measured.
func TestShippedConfigsAreValid(t *testing.T) {
	for _, sc := range shippedConfigs(t) {
		cc := sc.c.Registry.Consul
		if cc.HealthInterval != time.Second || cc.HealthTimeout != time.Second || cc.DeregisterAfter != 30*time.Second {
			t.Errorf("%s: health check timings %v/%v/%v, want 1s/1s/30s", sc.path, cc.HealthInterval, cc.HealthTimeout, cc.DeregisterAfter)
		}
	}
}

// TestShippedConfigsNoteWhatDiffers holds configs/*.yaml to their header,
// "every key is shown with its default unless noted": a value that differs
// from the code default says "default" in its comment. Keys without a
// default (service.name, clients.<client>.target) need no note.
func TestShippedConfigsNoteWhatDiffers(t *testing.T) {
	for _, sc := range shippedConfigs(t) {
		f, raw, c := sc.path, sc.raw, sc.c
		def := Default()
		def.Clients = middleware.ClientConfigs{}
		noDefault := map[string]bool{"service.name": true}
		for name := range c.Clients {
			def.Clients[name] = middleware.DefaultClientConfig()
			noDefault["clients."+name+".target"] = true
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		unnoted(doc.Content[0], nil, reflect.ValueOf(*c), reflect.ValueOf(*def), "", func(key string) {
			if !noDefault[key] {
				t.Errorf("%s: %s differs from the code default without a note", f, key)
			}
		})
	}
}

// TestShippedConfigsShowEveryKey holds configs/*.yaml to the other half of
// their header: every key is shown. A key of the schema that a file leaves
// out is an error, for each client the file has too; the entries of free
// maps (method overrides, faults) are examples, not required.
func TestShippedConfigsShowEveryKey(t *testing.T) {
	schema := schemaKeys(reflect.TypeFor[Bootstrap](), "")
	for _, sc := range shippedConfigs(t) {
		var doc yaml.Node
		if err := yaml.Unmarshal(sc.raw, &doc); err != nil {
			t.Fatal(err)
		}
		shown := map[string]bool{}
		fileKeys(doc.Content[0], "", shown)
		for _, k := range schema {
			for _, key := range expand(k, sc.c) {
				if !strings.Contains(key, "<") && !shown[key] {
					t.Errorf("%s: key %s is not shown", sc.path, key)
				}
			}
		}
	}
}

// expand turns the <client> placeholder of a schema key into the clients
// the file configures; other placeholders stay, marking optional keys.
func expand(key string, c *Bootstrap) []string {
	rest, ok := strings.CutPrefix(key, "clients.<client>.")
	if !ok {
		return []string{key}
	}
	keys := make([]string, 0, len(c.Clients))
	for name := range c.Clients {
		keys = append(keys, "clients."+name+"."+rest)
	}
	return keys
}

// fileKeys records the dotted path of every scalar or empty value in n.
func fileKeys(n *yaml.Node, prefix string, into map[string]bool) {
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		into[prefix] = true
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		fileKeys(n.Content[i+1], strings.TrimPrefix(prefix+"."+n.Content[i].Value, "."), into)
	}
}

// unnoted walks node alongside the parsed config and the default one, and
// calls report for every value that differs from its default while neither
// its key's nor its value's comment says "default".
func unnoted(n, keyNode *yaml.Node, got, def reflect.Value, key string, report func(string)) {
	switch {
	case n.Kind == yaml.ScalarNode:
		noted := strings.Contains(n.LineComment, "default") || keyNode != nil && strings.Contains(keyNode.LineComment, "default")
		if !noted && !reflect.DeepEqual(got.Interface(), def.Interface()) {
			report(key)
		}
	case n.Kind == yaml.MappingNode && got.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			g, ok := fieldByKey(got, k.Value)
			if !ok {
				continue
			}
			d, _ := fieldByKey(def, k.Value)
			unnoted(n.Content[i+1], k, g, d, strings.TrimPrefix(key+"."+k.Value, "."), report)
		}
	case n.Kind == yaml.MappingNode && got.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			mk := reflect.ValueOf(k.Value)
			// An entry with no default of its own (a fault, a method
			// override) is an example, not a change.
			if d := def.MapIndex(mk); d.IsValid() {
				unnoted(n.Content[i+1], k, got.MapIndex(mk), d, key+"."+k.Value, report)
			}
		}
	}
}

// fieldByKey is the field of struct v that YAML key names, looking into
// inline structs as yaml.v3 does.
func fieldByKey(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		name, flags, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if flags == "inline" {
			if f, ok := fieldByKey(v.Field(i), key); ok {
				return f, true
			}
			continue
		}
		if name == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}
