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
			ft, ok := fieldType(t, key)
			if !ok {
				*errs = append(*errs, &KeyError{Key: path, Reason: "unknown key (misspelt, or not in this version?)"})
				continue
			}
			walkKeys(val, ft, path, errs)
		}
	}
}

func fieldType(t reflect.Type, key string) (reflect.Type, bool) {
	for _, f := range yamlFields(t) {
		if f.key == key {
			return f.typ, true
		}
	}
	return nil, false
}

type yamlField struct {
	key string
	typ reflect.Type
}

// yamlFields lists the keys of struct t as yaml.v3 decodes them: an inline
// struct contributes its own keys, not one of its own. It is the one reading
// of the tags, shared by the unknown-key check and the documentation test,
// so the two cannot disagree about what a key is.
func yamlFields(t reflect.Type) []yamlField {
	var fields []yamlField
	for i := range t.NumField() {
		f := t.Field(i)
		name, flags, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue // not read from the file
		}
		if flags == "inline" && f.Type.Kind() == reflect.Struct {
			fields = append(fields, yamlFields(f.Type)...)
			continue
		}
		fields = append(fields, yamlField{key: name, typ: f.Type})
	}
	return fields
}
