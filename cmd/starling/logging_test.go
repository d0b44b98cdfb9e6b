package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/internal/testutil"
)

// TestLogFormatJSON runs a node with --log-format json: every line on
// stderr is one JSON object, with each key once, and go-log's libraries
// (bridged) write JSON too.
func TestLogFormatJSON(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir := filepath.Join(t.TempDir(), "n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, _, errb := runInBackground(ctx, "--log-format", "json", "--log-level", "debug", "run", "--data", dir,
		"--node-id", "jsonnode", "--api", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--no-dht")
	testutil.Eventually(t, 30*time.Second, "api.json", func() bool {
		select {
		case r := <-done:
			t.Fatalf("run ended early: %+v", r)
		default:
		}
		_, err := os.Stat(filepath.Join(dir, api.APIFile))
		return err == nil
	})
	cancel()
	select {
	case r := <-done:
		if r.code != 0 {
			t.Fatalf("run: %+v", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop")
	}
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	started := false
	for _, l := range lines {
		rep, err := testutil.RepeatedKeys([]byte(l))
		if err != nil {
			t.Fatalf("not JSON: %v", err)
		}
		if len(rep) > 0 {
			t.Errorf("keys %v repeated in %s", rep, l)
		}
		var rec struct{ Msg, Node string }
		_ = json.Unmarshal([]byte(l), &rec)
		started = started || (rec.Msg == "node started" && rec.Node == "jsonnode")
	}
	if !started {
		t.Errorf("no JSON 'node started' line with node=jsonnode in:\n%s", errb.String())
	}
}

func TestLogFormatRefused(t *testing.T) {
	r := runApp(t, "", "--log-format", "xml", "version")
	if r.code != exitUsage || !strings.Contains(r.stderr, "use text or json") {
		t.Errorf("--log-format xml: %+v", r)
	}
	t.Setenv("STARLING_LOG_FORMAT", "JSON")
	if r := runApp(t, "", "version"); r.code != 0 {
		t.Errorf("STARLING_LOG_FORMAT=JSON: %+v", r)
	}
}
