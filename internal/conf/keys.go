package conf

import (
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// unknownKeys walks the YAML document alongside the config types and names
// every key the types do not have by its dotted path (server.grcp), the
// same way Validate names bad values. yaml.v3's own strict mode names only
// the Go type, which means nothing to someone editing the file.
func unknownKeys(doc *yaml.Node) []error {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	var errs []error
	walkKeys(doc, reflect.TypeFor[Bootstrap](), "", &errs)
	return errs
}

func walkKeys(n *yaml.Node, t reflect.Type, prefix string, errs *[]error) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i].Value, n.Content[i+1]
		path := strings.TrimPrefix(prefix+"."+key, ".")
		switch t.Kind() {
		case reflect.Map:
			walkKeys(val, t.Elem(), path, errs)
		case reflect.Struct:
			field, ok := fieldByTag(t, key)
			if !ok {
				*errs = append(*errs, &KeyError{Key: path, Reason: "unknown key (misspelt, or not in this version?)"})
				continue
			}
			walkKeys(val, field.Type, path, errs)
		}
	}
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, flags, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == key {
			return f, true
		}
		if flags == "inline" && f.Type.Kind() == reflect.Struct {
			if inner, ok := fieldByTag(f.Type, key); ok {
				return inner, true
			}
		}
	}
	return reflect.StructField{}, false
}
