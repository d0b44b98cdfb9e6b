package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
)

// RepeatedKeys returns the keys that appear more than once at the top
// level of the JSON object line (one line of slog's JSON handler), or an
// error if line is not one JSON object. slog adds attributes and never
// replaces them, so a logger given "component" twice writes it twice.
func RepeatedKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %q", line)
	}
	seen := make(map[string]bool)
	var repeated []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		key, _ := tok.(string)
		if seen[key] {
			repeated = append(repeated, key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, fmt.Errorf("%q: value of %q: %w", line, key, err)
		}
	}
	return repeated, nil
}

// LogBuffer is an io.Writer that collects log output from many
// goroutines and hands back whole lines.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Lines returns the complete lines written so far.
func (b *LogBuffer) Lines() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	data := b.buf.Bytes()
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	} else {
		return nil
	}
	var out [][]byte
	for _, l := range bytes.Split(data, []byte("\n")) {
		out = append(out, bytes.Clone(l))
	}
	return out
}
