package chaos

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// WriteSection replaces, in the Markdown file at path, the lines between "<!-- name:begin -->"
// and "<!-- name:end -->" with content (markers kept); appends the marked block at the end if
// the markers are absent; creates the file if missing.
//
// Several suites write one report this way, each its own section, and
// none erases another's. A file with only one of a section's markers, or
// content holding one, is refused: which lines the section spans would be
// a guess. The file is replaced by a rename, so a reader never sees half
// of it.
func WriteSection(path, name, content string) error {
	if err := writeSection(path, name, content, false); err != nil {
		return fmt.Errorf("write section %s of %s: %w", name, path, err)
	}
	return nil
}

// WriteFirstSection is WriteSection, except that a section the file lacks
// goes at its start: for the section that carries the file's title, which
// leads even when another suite wrote its section into the file first.
func WriteFirstSection(path, name, content string) error {
	if err := writeSection(path, name, content, true); err != nil {
		return fmt.Errorf("write section %s of %s: %w", name, path, err)
	}
	return nil
}

func writeSection(path, name, content string, first bool) error {
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	if strings.Contains(content, begin) || strings.Contains(content, end) {
		return errors.New("the content holds the section's own marker")
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if content != "" && !strings.HasSuffix(content, "\n") {
		content += "\n"
	}
	block := begin + "\n" + content + end
	doc := string(old)
	i := strings.Index(doc, begin)
	j := -1
	if i >= 0 {
		if k := strings.Index(doc[i:], end); k >= 0 {
			j = i + k
		}
	}
	switch {
	case i >= 0 && j >= 0:
		doc = doc[:i] + block + doc[j+len(end):]
	case i >= 0 || strings.Contains(doc, end):
		return errors.New("the file has one of the section's markers without the other")
	case doc == "":
		doc = block + "\n"
	case first:
		doc = block + "\n\n" + doc
	default:
		doc = strings.TrimRight(doc, "\n") + "\n\n" + block + "\n"
	}
	return replaceFile(path, []byte(doc))
}

// replaceFile writes data to a new file beside path and renames it over
// path, creating its directory.
func replaceFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(f.Name()) }()
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; a report is for everyone to read.
	if err = os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
