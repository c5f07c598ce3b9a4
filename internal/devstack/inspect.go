package devstack

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Metrics is one scrape of an instance's /metrics: series (name and
// labels, as printed) -> value.
type Metrics map[string]float64

// scrapeClient opens a fresh connection per scrape, so scraping leaves no
// idle connection goroutine in the instance to skew its goroutine count.
var scrapeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}

// Scrape reads the Prometheus text served at httpAddr/metrics.
func Scrape(ctx context.Context, httpAddr string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", httpAddr, err)
	}
	defer func() { _ = resp.Body.Close() }()
	out := Metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// Sum adds the series of metric name whose labels contain label ("" for all).
func (m Metrics) Sum(name, label string) float64 {
	var total float64
	for k, v := range m {
		n, labels, _ := strings.Cut(k, "{")
		if n == name && strings.Contains(labels, label) {
			total += v
		}
	}
	return total
}

// LabelValue is the value of label key in a series' label text as Metrics
// keys hold it (`a="1",b="2"}`), "" if the series has no such label.
func LabelValue(labels, key string) string {
	_, rest, ok := strings.Cut(labels, key+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// LogTail returns the last n lines of the log at path, leaving out the
// Consul agent's DEBUG chatter, which would push the lines that explain a
// failure out of the tail.
func LogTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer func() { _ = f.Close() }()
	const maxRead = 64 << 10
	if fi, statErr := f.Stat(); statErr == nil && fi.Size() > maxRead {
		_, _ = f.Seek(fi.Size()-maxRead, io.SeekStart)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	var lines []string
	for line := range strings.Lines(string(b)) {
		if !strings.Contains(line, "[DEBUG]") {
			lines = append(lines, strings.TrimRight(line, "\n"))
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Logs returns the log files of a stack's work dir: the instances' and
// the agent's.
func Logs(workDir string) []string {
	paths, _ := filepath.Glob(filepath.Join(workDir, "*.log"))
	more, _ := filepath.Glob(filepath.Join(workDir, "*", "*.log"))
	return append(paths, more...)
}

// Override sets the value at Path (its keys, outermost first; a method name
// such as /user.v1.UserService/GetUser is one key) in a config file.
type Override struct {
	Path  []string
	Value any
}

// WriteConfig writes a copy of <repoRoot>/configs/<service>.yaml with the
// overrides applied into dir, and returns its path; comments are lost.
func WriteConfig(repoRoot, service, dir string, overrides ...Override) (string, error) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "configs", service+".yaml"))
	if err != nil {
		return "", err
	}
	var doc map[string]any
	if err = yaml.Unmarshal(raw, &doc); err != nil {
		return "", fmt.Errorf("configs/%s.yaml: %w", service, err)
	}
	for _, o := range overrides {
		m := doc
		for _, key := range o.Path[:len(o.Path)-1] {
			next, ok := m[key].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[key] = next
			}
			m = next
		}
		m[o.Path[len(o.Path)-1]] = o.Value
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", err
	}
	file := filepath.Join(dir, service+".yaml")
	return file, os.WriteFile(file, out, 0o644)
}
