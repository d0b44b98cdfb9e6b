package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/httpapi"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// rawDo sends a raw request to a node's API with header auth (none when
// "") and returns status and body.
func rawDo(t *testing.T, n *node.Node, auth, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.APIAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sensorSchema has bounds and a default to check values against.
var sensorSchema = entity.Schema{Type: "sensor", Fields: map[string]entity.FieldSpec{
	"temp":  {Type: entity.KindFloat, Unit: "C", Min: ptr(-40.0), Max: ptr(125.0)},
	"count": {Type: entity.KindInt, Max: ptr(1000.0)},
	"state": {Type: entity.KindString, Default: json.RawMessage(`"idle"`)},
	"seen":  {Type: entity.KindTime},
}}

func ptr[T any](v T) *T { return &v }

// mustWrite returns a check of a write's answer: no error, a version.
// Use: mustWrite(t, "create")(c.CreateEntity(...)).
func mustWrite(t *testing.T, what string) func(api.WriteResult, error) api.WriteResult {
	return func(r api.WriteResult, err error) api.WriteResult {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if r.Version.Timestamp.IsZero() || r.Version.Writer == "" {
			t.Fatalf("%s: no version in %+v", what, r)
		}
		return r
	}
}

func TestEntityAPI(t *testing.T) {
	defer testutil.FailOnPanic(t)
	n := nodetest.Start(t, "node1")
	c := n.Client()
	ctx := context.Background()

	if _, err := c.PutSchema(ctx, sensorSchema); err != nil {
		t.Fatal(err)
	}
	fac := mustWrite(t, "create /Factory")(c.CreateEntity(ctx, "/", "site", "Factory"))
	if fac.Path != "/Factory" || fac.ID.Validate() != nil {
		t.Errorf("create = %+v", fac)
	}
	line := mustWrite(t, "create Line1")(c.CreateEntity(ctx, string(fac.ID), "line", "Line1")) // parent by ID
	s7 := mustWrite(t, "create Sensor7")(c.CreateEntity(ctx, "/Factory/Line1", "sensor", "Sensor7"))
	if line.Path != "/Factory/Line1" || s7.Path != "/Factory/Line1/Sensor7" {
		t.Errorf("paths %q %q", line.Path, s7.Path)
	}

	// Typed, and untyped with the type from the schema (22 is a JSON
	// integer, stored as the schema's float) or from JSON (no schema).
	set1 := mustWrite(t, "set temp")(c.SetField(ctx, s7.Path, "temp", entity.Float(21.5)))
	code, body := rawDo(t, n, "Bearer "+n.Token(), "PUT", "/v1/fields?ref=/Factory/Line1/Sensor7&field=temp", `{"value": 22}`)
	if code != 200 {
		t.Fatalf("untyped PUT: %d %s", code, body)
	}
	var set2 api.WriteResult
	if err := json.Unmarshal([]byte(body), &set2); err != nil || set2.Version.Compare(set1.Version) <= 0 || set2.ID != s7.ID || set2.Field != "temp" {
		t.Errorf("untyped PUT answer %s (%v); first write %+v", body, err, set1)
	}
	if code, body := rawDo(t, n, "Bearer "+n.Token(), "PUT", "/v1/fields?ref="+string(line.ID)+"&field=speed", `{"value": 3}`); code != 200 {
		t.Fatalf("PUT without schema: %d %s", code, body)
	}
	f, err := c.Field(ctx, s7.Path, "temp")
	if err != nil || f.Value.Kind != entity.KindFloat || f.Value.Float != 22 || f.Version != set2.Version {
		t.Errorf("Field(temp) = %+v, %v; want float 22 at %v", f, err, set2.Version)
	}
	if f, err := c.Field(ctx, "/Factory/Line1", "speed"); err != nil || f.Value.Kind != entity.KindInt {
		t.Errorf("Field(speed) = %+v, %v; want an int inferred from JSON", f, err)
	}
	e, err := c.Entity(ctx, string(s7.ID))
	if err != nil || e.Path != s7.Path || e.Type != "sensor" || e.Parent != line.ID {
		t.Fatalf("Entity = %+v, %v", e, err)
	}
	if st := e.Fields["state"]; !st.Default || st.Value.Str != "idle" {
		t.Errorf("state = %+v, want the schema default", st)
	}
	if _, err := c.Field(ctx, s7.Path, "nope"); !errors.Is(err, entity.ErrNoField) || !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Field(nope) = %v, want ErrNoField and api.ErrNotFound", err)
	}

	// Batch: one version for all.
	br, err := c.SetFields(ctx, []api.FieldWrite{
		{Ref: s7.Path, Field: "temp", Value: entity.Float(23)},
		{Ref: s7.Path, Field: "count", Value: entity.Int(7)},
		{Ref: "/Factory", Field: "note", Value: entity.String("batch")},
	})
	if err != nil || len(br.Results) != 3 || br.Version.Compare(set2.Version) <= 0 {
		t.Fatalf("SetFields = %+v, %v", br, err)
	}
	for i, r := range br.Results {
		if r.Version != br.Version {
			t.Errorf("result %d version %v, want the batch's %v", i, r.Version, br.Version)
		}
	}
	if f, _ := c.Field(ctx, "/Factory", "note"); f.Version != br.Version {
		t.Errorf("note version %v, want %v", f.Version, br.Version)
	}

	// null clears a field, with or without a type (a typed null is not
	// a zero value).
	for _, body := range []string{`{"value": null}`, `{"type": "float", "value": null}`} {
		mustWrite(t, "set temp")(c.SetField(ctx, s7.Path, "temp", entity.Float(1)))
		if code, b := rawDo(t, n, "Bearer "+n.Token(), "PUT", "/v1/fields?ref="+string(s7.ID)+"&field=temp", body); code != 200 {
			t.Fatalf("PUT %s: %d %s", body, code, b)
		}
		if f, err := c.Field(ctx, s7.Path, "temp"); !errors.Is(err, entity.ErrNoField) {
			t.Errorf("after PUT %s: temp = %+v, %v; want it cleared", body, f, err)
		}
	}

	// Tree and children.
	ch, err := c.Children(ctx, "/Factory")
	if err != nil || len(ch) != 1 || ch[0].ID != line.ID || ch[0].Fields != nil {
		t.Errorf("Children = %+v, %v", ch, err)
	}
	tr, err := c.Tree(ctx, "/", -1, true)
	if err != nil || len(tr.Children) != 1 || len(tr.Children[0].Children) != 1 || len(tr.Children[0].Children[0].Children) != 1 {
		t.Fatalf("Tree = %+v, %v", tr, err)
	}
	if got := tr.Children[0].Children[0].Children[0]; got.ID != s7.ID || got.Fields["count"].Value.Int != 7 {
		t.Errorf("leaf %+v", got)
	}
	if tr, err := c.Tree(ctx, "/Factory", 1, false); err != nil || len(tr.Children) != 1 || len(tr.Children[0].Children) != 0 || tr.Fields != nil {
		t.Errorf("Tree(depth 1) = %+v, %v", tr, err)
	}

	// Rename, move, delete, restore.
	mustWrite(t, "rename")(c.RenameEntity(ctx, s7.Path, "S7"))
	if _, err := c.Entity(ctx, "/Factory/Line1/S7"); err != nil {
		t.Errorf("after rename: %v", err)
	}
	mv := mustWrite(t, "move")(c.MoveEntity(ctx, "/Factory/Line1/S7", "/Factory"))
	if mv.Path != "/Factory/S7" {
		t.Errorf("moved to %q", mv.Path)
	}
	if _, err := c.MoveEntity(ctx, "/Factory", "/Factory/Line1"); !errors.Is(err, entity.ErrCycle) {
		t.Errorf("move under own child = %v, want ErrCycle", err)
	}
	if _, err := c.DeleteEntity(ctx, "/Factory", false); !errors.Is(err, entity.ErrNotEmpty) || !strings.Contains(err.Error(), "recursive") {
		t.Errorf("delete non-empty = %v, want ErrNotEmpty", err)
	}
	del := mustWrite(t, "delete")(c.DeleteEntity(ctx, "/Factory", true))
	if del.ID != fac.ID {
		t.Errorf("deleted %+v", del)
	}
	if _, err := c.Entity(ctx, "/Factory/S7"); !errors.Is(err, entity.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	res := mustWrite(t, "restore")(c.RestoreEntity(ctx, del.ID))
	if res.Path != "/Factory" {
		t.Errorf("restored %+v", res)
	}
	if f, err := c.Field(ctx, "/Factory/S7", "count"); err != nil || f.Value.Int != 7 {
		t.Errorf("subtree not restored: %+v, %v", f, err)
	}

	// Schemas.
	scs, err := c.Schemas(ctx)
	if err != nil || len(scs) != 1 || scs[0].Type != "sensor" {
		t.Errorf("Schemas = %+v, %v", scs, err)
	}
	if sc, err := c.Schema(ctx, "sensor"); err != nil || sc.Fields["temp"].Unit != "C" {
		t.Errorf("Schema = %+v, %v", sc, err)
	}
	if _, err := c.Schema(ctx, "nope"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Schema(nope) = %v", err)
	}
	grown := entity.Schema{Type: "sensor", Fields: map[string]entity.FieldSpec{"extra": {Type: entity.KindBool}}}
	for k, v := range sensorSchema.Fields {
		grown.Fields[k] = v
	}
	if v, err := c.PutSchema(ctx, grown); err != nil || v.Timestamp.IsZero() {
		t.Errorf("grow schema: %v, %v", v, err)
	}
}

func TestEntityAPIBadInput(t *testing.T) {
	defer testutil.FailOnPanic(t)
	n := nodetest.Start(t, "node1")
	c := n.Client()
	ctx := context.Background()
	if _, err := c.PutSchema(ctx, sensorSchema); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, "create")(c.CreateEntity(ctx, "/", "site", "F"))
	mustWrite(t, "create")(c.CreateEntity(ctx, "/F", "sensor", "S"))
	mustWrite(t, "create")(c.CreateEntity(ctx, "/F", "sensor", "T"))
	auth := "Bearer " + n.Token()
	big := strings.Repeat("x", 70<<10) // over the entity value limit, under the body limit
	tests := []struct {
		name, auth, method, path, body string
		code                           int
		errCode                        string
		mention                        []string
	}{
		{"unknown path", auth, "GET", "/v1/entities?ref=/F/nope", "", 404, "not_found", []string{`"nope"`, "/F"}},
		{"unknown path write", auth, "PUT", "/v1/fields?ref=/nope/S&field=temp", `{"value": 1.5}`, 404, "not_found", []string{"/nope"}},
		{"unknown parent", auth, "POST", "/v1/entities", `{"parent": "/nope", "type": "t", "name": "x"}`, 404, "not_found", []string{"/nope"}},
		{"not a ref", auth, "GET", "/v1/entities?ref=nope", "", 404, "not_found", []string{"neither a path"}},
		{"bad type name", auth, "PUT", "/v1/fields?ref=/F/S&field=temp", `{"type": "decimal", "value": 1}`, 400, "bad_kind", []string{`"decimal"`, "float", "/F/S", `"temp"`}},
		{"value not of its type", auth, "PUT", "/v1/fields?ref=/F&field=n", `{"type": "int", "value": "seven"}`, 400, "bad_value", []string{"int", "/F", `"n"`}},
		{"int out of range", auth, "PUT", "/v1/fields?ref=/F/S&field=count", `{"value": 1e30}`, 400, "bad_value", []string{"1e30", "int", `"count"`}},
		{"above schema max", auth, "PUT", "/v1/fields?ref=/F/S&field=temp", `{"value": 200}`, 400, "schema", []string{"/F/S", `"temp"`, "maximum 125"}},
		{"schema type mismatch", auth, "PUT", "/v1/fields?ref=/F/S&field=temp", `{"type": "string", "value": "hot"}`, 400, "schema", []string{"/F/S", `"temp"`, "sensor", "expected float, got string"}},
		{"field not in schema", auth, "PUT", "/v1/fields?ref=/F/S&field=colour", `{"value": "red"}`, 400, "schema", []string{`"colour"`, "not in the schema"}},
		{"bad time", auth, "PUT", "/v1/fields?ref=/F/S&field=seen", `{"value": "yesterday"}`, 400, "bad_value", []string{"RFC 3339"}},
		{"name with slash", auth, "POST", "/v1/entities", `{"parent": "/F", "type": "t", "name": "a/b"}`, 400, "bad_name", []string{`"a/b"`, "'/'"}},
		{"empty name", auth, "POST", "/v1/entities", `{"parent": "/F", "type": "t", "name": ""}`, 400, "bad_name", []string{"empty"}},
		{"rename with slash", auth, "PATCH", "/v1/entities?ref=/F/S", `{"name": "x/y"}`, 400, "bad_name", []string{`"x/y"`}},
		{"rename to a taken name", auth, "PATCH", "/v1/entities?ref=/F/S", `{"name": "T"}`, 409, "exists", []string{`"T"`}},
		{"create existing", auth, "POST", "/v1/entities", `{"parent": "/F", "type": "sensor", "name": "S"}`, 409, "exists", []string{"/F/S"}},
		{"move and rename", auth, "PATCH", "/v1/entities?ref=/F/S", `{"name": "x", "parent": "/"}`, 400, "bad_request", []string{"not both"}},
		{"patch nothing", auth, "PATCH", "/v1/entities?ref=/F/S", `{}`, 400, "bad_request", []string{"nothing to change"}},
		{"delete non-empty", auth, "DELETE", "/v1/entities?ref=/F", "", 409, "not_empty", []string{"--recursive"}},
		{"delete root", auth, "DELETE", "/v1/entities?ref=/", "", 404, "not_found", []string{"root"}},
		{"restore bad id", auth, "POST", "/v1/entities/restore", `{"id": "xyz"}`, 400, "bad_id", []string{`"xyz"`}},
		{"oversized value", auth, "PUT", "/v1/fields?ref=/F&field=blob", `{"value": "` + big + `"}`, 413, "too_large", []string{"/F", `"blob"`, "65536"}},
		{"oversized body", auth, "PUT", "/v1/fields?ref=/F&field=blob", `{"value": "` + strings.Repeat("x", httpapi.DefaultMaxValueBytes) + `"}`, 413, "too_large", []string{"limit"}},
		{"malformed JSON", auth, "PUT", "/v1/fields?ref=/F/S&field=temp", `{"value": 1.5`, 400, "bad_request", []string{`{"type": "int", "value": 42}`}},
		{"not JSON", auth, "POST", "/v1/entities", `parent=/F`, 400, "bad_request", []string{`"parent"`, `"name"`}},
		{"empty body", auth, "PUT", "/v1/schemas", ``, 400, "bad_request", []string{"empty body", `"fields"`}},
		{"trailing data", auth, "POST", "/v1/entities", `{"parent": "/F", "type": "t", "name": "x"} {}`, 400, "bad_request", []string{"more data"}},
		{"unknown field", auth, "POST", "/v1/entities", `{"parent": "/F", "type": "t", "name": "x", "colour": "red"}`, 400, "bad_request", []string{`"colour"`}},
		{"unknown field in schema", auth, "PUT", "/v1/schemas", `{"type": "v", "fields": {"a": {"type": "int", "maxx": 3}}}`, 400, "bad_request", []string{`"maxx"`}},
		{"missing value", auth, "PUT", "/v1/fields?ref=/F&field=x", `{"type": "int"}`, 400, "bad_request", []string{`"value" missing`}},
		{"missing ref", auth, "PUT", "/v1/fields?field=x", `{"value": 1}`, 400, "bad_request", []string{"?ref="}},
		{"missing field", auth, "PUT", "/v1/fields?ref=/F", `{"value": 1}`, 400, "bad_request", []string{"?field="}},
		{"bad field name", auth, "PUT", "/v1/fields?ref=/F&field=a%20b", `{"value": 1}`, 400, "bad_name", []string{`"a b"`}},
		{"missing parent", auth, "POST", "/v1/entities", `{"type": "t", "name": "x"}`, 400, "bad_request", []string{`"parent" missing`}},
		{"bad depth", auth, "GET", "/v1/entities/tree?depth=-2", "", 400, "bad_request", []string{`"-2"`}},
		{"schema removes a field", auth, "PUT", "/v1/schemas", `{"type": "sensor", "fields": {"temp": {"type": "float"}}}`, 400, "schema", []string{`"count"`, "removed"}},
		{"schema changes a type", auth, "PUT", "/v1/schemas", `{"type": "sensor", "fields": {"temp": {"type": "int"}, "count": {"type": "int"}, "state": {"type": "string"}, "seen": {"type": "time"}}}`, 400, "schema", []string{`"temp"`, "float to int"}},
		{"bad schema kind", auth, "PUT", "/v1/schemas", `{"type": "v", "fields": {"a": {"type": "decimal"}}}`, 400, "bad_request", []string{`"decimal"`}},
		{"batch one bad", auth, "POST", "/v1/fields/batch", `{"writes": [{"ref": "/F", "field": "a", "value": 1}, {"ref": "/F/S", "field": "temp", "value": "hot"}]}`, 400, "bad_value", []string{"writes[1]", `"temp"`}},
		{"batch schema", auth, "POST", "/v1/fields/batch", `{"writes": [{"ref": "/F", "field": "a", "value": 1}, {"ref": "/F/S", "field": "temp", "value": 500}]}`, 400, "schema", []string{"writes[1]", "maximum"}},
		{"batch unknown ref", auth, "POST", "/v1/fields/batch", `{"writes": [{"ref": "/F", "field": "a", "value": 1}, {"ref": "/G", "field": "b", "value": 1}]}`, 404, "not_found", []string{"writes[1]", "/G"}},
		{"batch empty", auth, "POST", "/v1/fields/batch", `{"writes": []}`, 400, "bad_request", []string{"no writes"}},
		{"no schema", auth, "GET", "/v1/schemas/nope", "", 404, "no_schema", []string{`"nope"`}},
		{"missing token", "", "PUT", "/v1/fields?ref=/F&field=a", `{"value": 1}`, 401, "", []string{"missing API token"}},
		{"wrong token", "Bearer " + strings.Repeat("0", 64), "POST", "/v1/entities", `{"parent": "/", "type": "t", "name": "x"}`, 401, "", []string{"wrong API token"}},
		{"wrong token watch", "Bearer nope", "GET", "/v1/watch", "", 401, "", []string{"wrong API token"}},
	}
	before := nodetest.EntitySnapshot(t, n)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := rawDo(t, n, tt.auth, tt.method, tt.path, tt.body)
			if code != tt.code {
				t.Fatalf("status %d, want %d; body %.300s", code, tt.code, body)
			}
			var e api.EntityErrorResponse
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Code != tt.errCode {
				t.Errorf("body %.300s: want a JSON error with code %q", body, tt.errCode)
			}
			for _, m := range tt.mention {
				if !strings.Contains(e.Error, m) {
					t.Errorf("error %q does not mention %q", e.Error, m)
				}
			}
			if after := nodetest.EntitySnapshot(t, n); after != before {
				t.Errorf("something was written:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestEntityAPIWatch(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir := filepath.Join(t.TempDir(), "node1")
	nodetest.Init(t, dir, "node1")
	n := nodetest.Open(t, dir)
	c := n.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mustWrite(t, "create")(c.CreateEntity(ctx, "/", "site", "F"))
	mustWrite(t, "create")(c.CreateEntity(ctx, "/", "site", "Other"))

	w, err := c.Watch(ctx, "/F")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// A change elsewhere first: the stream must skip it.
	mustWrite(t, "set other")(c.SetField(ctx, "/Other", "x", entity.Int(1)))
	set := mustWrite(t, "set")(c.SetField(ctx, "/F", "temp", entity.Float(21.5)))
	ev, err := w.Next()
	if err != nil {
		t.Fatal(err)
	}
	if ev.Path != "/F" || ev.Field != "temp" || ev.New == nil || ev.New.Float != 21.5 || ev.Old != nil ||
		ev.Timestamp != set.Version.Timestamp || ev.Writer != "node1" || !ev.Local {
		t.Errorf("event %+v, want temp=21.5 at %v", ev, set.Version)
	}
	mustWrite(t, "set again")(c.SetField(ctx, "/F", "temp", entity.Float(22)))
	if ev, err := w.Next(); err != nil || ev.Old == nil || ev.Old.Float != 21.5 || ev.New.Float != 22 {
		t.Errorf("second event %+v, %v", ev, err)
	}

	// A watch by ID follows the entity's path.
	w2, err := c.Watch(ctx, string(set.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	mustWrite(t, "create below")(c.CreateEntity(ctx, "/F", "line", "L"))
	if ev, err := w2.Next(); err != nil || !strings.HasPrefix(ev.Path, "/F/L") {
		t.Errorf("event below /F: %+v, %v", ev, err)
	}

	// The stream ends when the node closes, without holding it up.
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := w.Next(); err != nil {
				done <- err
				return
			}
		}
	}()
	start := time.Now()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Close took %v with a watch open", d)
	}
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Errorf("stream ended with %v, want io.EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch stream did not end when the node closed")
	}
}

// TestEntityAPIWatchHeartbeat checks the heartbeat and that a client
// going away ends the handler, with a store whose heartbeat is short.
func TestEntityAPIWatchHeartbeat(t *testing.T) {
	defer testutil.FailOnPanic(t)
	n := nodetest.Start(t, "node1")
	h, err := httpapi.NewAPIHandler(httpapi.APIConfig{Token: n.Token(), KV: noKV{}, Peers: noPeers{},
		Status: n, Entities: n.Entities(), WatchHeartbeat: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+n.Token())
		h.ServeHTTP(w, r)
		if r.URL.Path == "/v1/watch" {
			ended <- struct{}{}
		}
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/watch?path=/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() || sc.Text() != ": heartbeat" {
		t.Fatalf("first line %q (%v), want a heartbeat", sc.Text(), sc.Err())
	}
	if _, err := n.Entities().Create(context.Background(), "/", "t", "X"); err != nil {
		t.Fatal(err)
	}
	found := false
	for !found && sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev entity.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event line %q: %v", line, err)
		}
		t.Logf("event %s", line)
		found = ev.Path == "/X" && ev.Field == "$exists"
	}
	if !found {
		t.Fatalf("stream ended without the create's event: %v", sc.Err())
	}
	cancel()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("watch handler still running after the client went away")
	}
}

// noKV and noPeers stand in for the parts of the API a test does not use.
type (
	noKV    struct{ httpapi.KV }
	noPeers struct{ httpapi.PeerSet }
)

// Watch streams give back what they hold once they end: 5,000 of them
// once held ~88 KB each for good. After clients close 64 streams, the
// node keeps only its own watchers and the handlers' goroutines are gone.
func TestWatchStreamsReleaseWhenClosed(t *testing.T) {
	n := nodetest.Start(t, "node1")
	c := n.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	base, own := runtime.NumGoroutine(), n.Entities().Watchers() // the node's own
	var streams []*api.WatchStream
	for range 64 {
		w, err := c.Watch(ctx, "/")
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		streams = append(streams, w)
	}
	testutil.Eventuallyf(t, 5*time.Second, func() bool { return n.Entities().Watchers() == own+64 },
		"64 more watchers than the node's own %d", own)
	for _, w := range streams {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventuallyf(t, 5*time.Second, func() bool { return n.Entities().Watchers() == own },
		"the node's own %d watchers only, once every stream closed", own)
	c.CloseIdleConnections()
	testutil.Eventuallyf(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= base+8 },
		"%d goroutines after the streams closed, %d before", runtime.NumGoroutine(), base)
}
