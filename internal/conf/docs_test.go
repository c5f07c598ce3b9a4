package conf

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const docPath = "../../docs/configuration.md"

var (
	// keyTableHeader starts a table whose rows each document one key; other
	// tables (environment variables) are not checked.
	keyTableHeader = regexp.MustCompile(`^\|\s*key\s*\|\s*type\s*\|\s*default\s*\|\s*meaning\s*\|$`)
	keyRow         = regexp.MustCompile("^\\|\\s*`([^`]+)`\\s*\\|")
)

// TestDocListsEveryKey keeps docs/configuration.md and the schema in step
// both ways: a key added to the types needs a row, and a row whose key left
// the types has to go.
func TestDocListsEveryKey(t *testing.T) {
	raw, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	documented, err := documentedKeys(string(raw))
	if err != nil {
		t.Fatalf("%s: %v", docPath, err)
	}
	schema := schemaKeys(reflect.TypeFor[Bootstrap](), "")
	for _, k := range schema {
		if documented[k] == 0 {
			t.Errorf("%s: no row for key %s", docPath, k)
		}
	}
	for k, n := range documented {
		switch {
		case !slices.Contains(schema, k):
			t.Errorf("%s: row for %s, which is not a key of the schema", docPath, k)
		case n > 1:
			t.Errorf("%s: %d rows for key %s", docPath, n, k)
		}
	}
}

// schemaKeys lists the dotted key of every value a config file can set. A
// map's own keys are free, so the doc writes them as a placeholder: the
// singular of the map's key in angle brackets, as in
// clients.<client>.methods.<method>.timeout.
func schemaKeys(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		var keys []string
		for _, f := range yamlFields(t) {
			keys = append(keys, schemaKeys(f.typ, strings.TrimPrefix(prefix+"."+f.key, "."))...)
		}
		return keys
	case reflect.Map:
		mapKey := prefix[strings.LastIndex(prefix, ".")+1:]
		return schemaKeys(t.Elem(), prefix+".<"+strings.TrimSuffix(mapKey, "s")+">")
	default:
		return []string{prefix}
	}
}

// documentedKeys counts the keys in the first column of the doc's key
// tables. A row without one backquoted key there is an error rather than
// skipped, so a slip in the markup cannot hide a key from the check.
func documentedKeys(doc string) (map[string]int, error) {
	keys := map[string]int{}
	inTable := false
	for i, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case keyTableHeader.MatchString(line):
			inTable = true
		case !strings.HasPrefix(line, "|"):
			inTable = false
		case !inTable || strings.Trim(line, "|-: ") == "":
			// A row of another table, or the line under a header.
		default:
			m := keyRow.FindStringSubmatch(line)
			if m == nil {
				return nil, fmt.Errorf("line %d: key table row without a `dotted.key` in its first cell: %s", i+1, line)
			}
			keys[m[1]]++
		}
	}
	return keys, nil
}
