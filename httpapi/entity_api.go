package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/entity"
)

// EntityStore is the entity tree behind the API's entity endpoints
// (*entity.Store). Methods are called concurrently from HTTP handler
// goroutines; Update may block for as long as its context allows.
type EntityStore interface {
	// Get reads an entity (a path or an ID) with its fields.
	Get(ref string) (entity.Entity, error)
	// Children lists the entities directly under ref, without fields.
	Children(ref string) ([]entity.Entity, error)
	// Walk calls fn for ref and every entity below it, parents first,
	// holding the tree's lock: fn must not call the store.
	Walk(ref string, fn func(entity.Entity) error) error
	// Update commits the writes fn makes as one atomic group with one
	// version; fn must only call the Tx's methods.
	Update(ctx context.Context, fn func(*entity.Tx) error) (entity.Version, error)
	// Schema returns the schema of a type; Schemas lists them all.
	Schema(typ string) (entity.Schema, bool)
	Schemas() []entity.Schema
	// Watch follows the changes under a path; the watcher's channel is
	// closed by Close and when the store closes.
	Watch(path string, buf int) *entity.Watcher
	// Deleted lists the deleted entities under a path, newest first, at
	// most limit (0: all).
	Deleted(path string, limit int) []entity.Deleted
}

var _ EntityStore = (*entity.Store)(nil)

// Limits of the entity endpoints.
const (
	// MaxBatchWrites bounds the field writes of one batch: a batch is one
	// replication delta, capped at 512 KiB by the store, so a bigger
	// batch would fail anyway; this refuses it before any work.
	MaxBatchWrites = 10000
	// maxBatchBodyBytes bounds a batch request body.
	maxBatchBodyBytes = 8 << 20
	// DefaultWatchHeartbeat is how often an idle watch stream gets a
	// comment line, so proxies and clients see the connection is alive.
	DefaultWatchHeartbeat = 15 * time.Second
	// watchBuffer is the events a watch stream buffers before the
	// client is told to read again ("$reload").
	watchBuffer = 1024
)

// errBodyTooLarge means a request body is over the endpoint's limit.
var errBodyTooLarge = errors.New("request body too large")

// errNoSchema means a type has no schema (GET /v1/schemas/{type}).
var errNoSchema = errors.New("no schema")

// entityErrors maps errors to a status and a code, first match wins.
// Client-side, entityErrorCodes maps the code back to the sentinel.
var entityErrors = []struct {
	err  error
	code int
	name string
}{
	{entity.ErrNotFound, http.StatusNotFound, "not_found"},
	{entity.ErrNoField, http.StatusNotFound, "no_field"},
	{errNoSchema, http.StatusNotFound, "no_schema"},
	{entity.ErrExists, http.StatusConflict, "exists"},
	{entity.ErrNotEmpty, http.StatusConflict, "not_empty"},
	{entity.ErrCycle, http.StatusConflict, "cycle"},
	{entity.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{crdt.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{errBodyTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{entity.ErrSchema, http.StatusBadRequest, "schema"},
	{entity.ErrBadName, http.StatusBadRequest, "bad_name"},
	{entity.ErrBadValue, http.StatusBadRequest, "bad_value"},
	{entity.ErrBadKind, http.StatusBadRequest, "bad_kind"},
	{entity.ErrBadID, http.StatusBadRequest, "bad_id"},
	{api.ErrBadRequest, http.StatusBadRequest, "bad_request"},
	{entity.ErrClosed, http.StatusServiceUnavailable, "closed"},
	{entity.ErrClockSkew, http.StatusServiceUnavailable, "clock_skew"},
}

// entityAPI serves the entity endpoints.
type entityAPI struct {
	*server
	tree      EntityStore
	heartbeat time.Duration
}

// registerEntityRoutes adds the entity endpoints to mux (see
// NewAPIHandler for the list).
func (a *server) registerEntityRoutes(mux *http.ServeMux) {
	(&entityAPI{server: a, tree: a.cfg.Entities, heartbeat: a.cfg.WatchHeartbeat}).register(mux)
}

func (a *entityAPI) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/entities", a.getEntity)
	mux.HandleFunc("POST /v1/entities", a.create)
	mux.HandleFunc("PATCH /v1/entities", a.patch)
	mux.HandleFunc("DELETE /v1/entities", a.deleteEntity)
	mux.HandleFunc("POST /v1/entities/restore", a.restore)
	mux.HandleFunc("GET /v1/entities/children", a.children)
	mux.HandleFunc("GET /v1/entities/tree", a.treeWalk)
	mux.HandleFunc("GET /v1/entities/deleted", a.deleted)
	mux.HandleFunc("GET /v1/entities/search", a.search)
	mux.HandleFunc("GET /v1/fields", a.getField)
	mux.HandleFunc("PUT /v1/fields", a.setField)
	mux.HandleFunc("POST /v1/fields/batch", a.batch)
	mux.HandleFunc("GET /v1/schemas", a.schemas)
	mux.HandleFunc("PUT /v1/schemas", a.putSchema)
	mux.HandleFunc("GET /v1/schemas/{type}", a.schema)
	mux.HandleFunc("GET /v1/watch", a.watch)
}

// efail answers with the status and code that err's sentinel calls for;
// the message is err's (the entity package's messages name the entity,
// the field, and the expected and given type).
func (a *entityAPI) efail(w http.ResponseWriter, r *http.Request, err error) {
	for _, m := range entityErrors {
		if errors.Is(err, m.err) {
			writeJSON(w, m.code, api.EntityErrorResponse{Error: err.Error(), Code: m.name})
			return
		}
	}
	a.fail(w, r, err)
}

// ref reads the "ref" query parameter; def is used when it is absent
// ("" makes it required).
func ref(r *http.Request, def string) (string, error) {
	v := strings.TrimSpace(r.URL.Query().Get("ref"))
	if v == "" {
		v = def
	}
	if v == "" {
		return "", api.BadRequestf(`missing ?ref=: give the entity's path (like /Factory/Line1) or its ID`)
	}
	return v, nil
}

// decodeJSON reads one JSON value of at most limit bytes into v,
// refusing unknown fields and trailing data. want shows the expected
// shape in the message.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any, want string) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		var extra json.RawMessage
		if e := dec.Decode(&extra); e != io.EOF {
			err = errors.New("more data after the JSON value")
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooBig):
		return fmt.Errorf("%w: the limit is %d bytes", errBodyTooLarge, tooBig.Limit)
	case errors.Is(err, io.EOF):
		return api.BadRequestf("empty body: want %s", want)
	}
	return api.BadRequestf("body must be %s: %v", want, err)
}

func (a *entityAPI) getEntity(w http.ResponseWriter, r *http.Request) {
	ref, err := ref(r, "/")
	if err != nil {
		a.efail(w, r, err)
		return
	}
	e, err := a.tree.Get(ref)
	if err != nil {
		a.efail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (a *entityAPI) children(w http.ResponseWriter, r *http.Request) {
	ref, err := ref(r, "/")
	if err != nil {
		a.efail(w, r, err)
		return
	}
	out, err := a.tree.Children(ref)
	if err != nil {
		a.efail(w, r, err)
		return
	}
	if out == nil {
		out = []entity.Entity{}
	}
	writeJSON(w, http.StatusOK, api.EntitiesResponse{Entities: out})
}

// search finds entities whose path or type contains q (case-insensitive),
// parents first, at most limit (default 100); More says there were more.
func (a *entityAPI) search(w http.ResponseWriter, r *http.Request) {
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q")))
	if q == "" {
		a.efail(w, r, api.BadRequestf("q: give the text to find in entity paths and types"))
		return
	}
	limit, err := listLimit(r, 100)
	if err != nil {
		a.efail(w, r, err)
		return
	}
	out := api.SearchResponse{Entities: []entity.Entity{}}
	errFull := errors.New("full")
	err = a.tree.Walk("/", func(e entity.Entity) error {
		if e.Path == "/" || !strings.Contains(strings.ToLower(e.Path), q) && !strings.Contains(strings.ToLower(e.Type), q) {
			return nil
		}
		if len(out.Entities) == limit {
			out.More = true
			return errFull
		}
		e.Fields = nil
		out.Entities = append(out.Entities, e)
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		a.efail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// maxList bounds one answer of GET /v1/entities/search and /deleted.
const maxList = 10_000

// listLimit reads a listing's ?limit= (def when absent, 1 to maxList).
func listLimit(r *http.Request, def int) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxList {
		return 0, api.BadRequestf("limit %q: want a number from 1 to %d", s, maxList)
	}
	return n, nil
}

func (a *entityAPI) deleted(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	path := q.Get("path")
	if path == "" {
		path = "/"
	}
	limit, err := listLimit(r, 1000)
	if err != nil {
		a.efail(w, r, err)
		return
	}
	out := a.tree.Deleted(path, limit)
	if out == nil {
		out = []entity.Deleted{}
	}
	writeJSON(w, http.StatusOK, api.DeletedResponse{Deleted: out})
}

func (a *entityAPI) treeWalk(w http.ResponseWriter, r *http.Request) {
	ref, err := ref(r, "/")
	if err != nil {
		a.efail(w, r, err)
		return
	}
	q := r.URL.Query()
	depth := -1
	if s := q.Get("depth"); s != "" {
		if depth, err = strconv.Atoi(s); err != nil || depth < 0 {
			a.efail(w, r, api.BadRequestf("depth %q: want a number of levels, 0 or more (omit it for the whole tree)", s))
			return
		}
	}
	fields := true
	if s := q.Get("fields"); s != "" {
		if fields, err = strconv.ParseBool(s); err != nil {
			a.efail(w, r, api.BadRequestf("fields %q: want true or false", s))
			return
		}
	}
	t, err := a.walk(ref, depth, fields)
	if err != nil {
		a.efail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// walk builds the tree under ref down to depth levels (-1: all), with
// or without fields, from one consistent view.
func (a *entityAPI) walk(ref string, depth int, fields bool) (api.TreeNode, error) {
	var root api.TreeNode
	var stack []*api.TreeNode // stack[i] is the open node at level i
	base := -1
	err := a.tree.Walk(ref, func(e entity.Entity) error {
		lvl := pathDepth(e.Path)
		if base < 0 {
			base = lvl
		}
		lvl -= base
		if depth >= 0 && lvl > depth {
			return nil
		}
		if !fields {
			e.Fields = nil
		}
		if lvl == 0 {
			root = api.TreeNode{Entity: e}
			stack = []*api.TreeNode{&root}
			return nil
		}
		if lvl > len(stack) { // cannot happen: Walk goes parents first
			return fmt.Errorf("tree walk: %s below a missing parent", e.Path)
		}
		parent := stack[lvl-1]
		parent.Children = append(parent.Children, api.TreeNode{Entity: e})
		stack = append(stack[:lvl], &parent.Children[len(parent.Children)-1])
		return nil
	})
	return root, err
}

// pathDepth counts the elements of a path ("/" is 0).
func pathDepth(p string) int {
	p = strings.Trim(p, "/")
	if p == "" {
		return 0
	}
	return strings.Count(p, "/") + 1
}

func (a *entityAPI) create(w http.ResponseWriter, r *http.Request) {
	var req api.CreateRequest
	if err := decodeJSON(w, r, 64<<10, &req, `{"parent": "/Factory", "type": "line", "name": "Line1"}`); err != nil {
		a.efail(w, r, err)
		return
	}
	if strings.TrimSpace(req.Parent) == "" {
		a.efail(w, r, api.BadRequestf(`"parent" missing: give the parent's path ("/" for the top level) or ID`))
		return
	}
	var id entity.ID
	v, err := a.tree.Update(r.Context(), func(tx *entity.Tx) error {
		var err error
		id, err = tx.Create(req.Parent, req.Type, req.Name)
		return err
	})
	if err != nil {
		a.efail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, api.WriteResult{ID: id, Path: a.pathOf(id), Version: v})
}

// pathOf returns an entity's current path, "" if it is gone.
func (a *entityAPI) pathOf(id entity.ID) string {
	if e, err := a.tree.Get(string(id)); err == nil {
		return e.Path
	}
	return ""
}

func (a *entityAPI) patch(w http.ResponseWriter, r *http.Request) {
	ref, err := ref(r, "")
	if err != nil {
		a.efail(w, r, err)
		return
	}
	var req api.PatchRequest
	if err := decodeJSON(w, r, 64<<10, &req, `{"name": "NewName"} or {"parent": "/New/Parent"}`); err != nil {
		a.efail(w, r, err)
		return
	}
	switch {
	case req.Name == nil && req.Parent == nil:
		a.efail(w, r, api.BadRequestf(`nothing to change: give {"name": "NewName"} to rename or {"parent": "/New/Parent"} to move`))
		return
	case req.Name != nil && req.Parent != nil:
		// Each of Tx.Rename and Tx.Move checks for a name clash against
		// the tree before the other's change, so together they could
		// pass a clash: refuse rather than make a duplicate path.
		a.efail(w, r, api.BadRequestf(`give "name" or "parent", not both: rename and move in two requests`))
		return
	}
	e, err := a.tree.Get(ref)
	if err != nil {
		a.efail(w, r, err)
		return
	}
	v, err := a.tree.Update(r.Context(), func(tx *entity.Tx) error {
		if req.Name != nil {
			return tx.Rename(string(e.ID), *req.Name)
		}
		return tx.Move(string(e.ID), *req.Parent)
	})
	if err != nil {
		a.efail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.WriteResult{ID: e.ID, Path: a.pathOf(e.ID), Version: v})
}

func (a *entityAPI) deleteEntity(w http.ResponseWriter, r *http.Request) {
	ref, err := ref(r, "")
	if err != nil {
		a.efail(w, r, err)
		return
	}
	recursive := false
	if s := r.URL.Query().Get("recursive"); s != "" {
		if recursive, err = strconv.ParseBool(s); err != nil {
			a.efail(w, r, api.BadRequestf("recursive %q: want true or false", s))
			return
		}
	}
	e, err := a.tree.Get(ref)
	if err != nil {
		a.efail(w, r, err)
		return
	}
	v, err := a.tree.Update(r.Context(), func(tx *entity.Tx) error {
		return tx.Delete(string(e.ID), recursive)
	})
	if err != nil {
		a.efail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.WriteResult{ID: e.ID, Path: e.Path, Version: v})
}

func (a *entityAPI) restore(w http.ResponseWriter, r *http.Request) {
	var req api.RestoreRequest
	if err := decodeJSON(w, r, 64<<10, &req, `{"id": "<entity ID>"}`); err != nil {
		a.efail(w, r, err)
		return
	}
	v, err := a.tree.Update(r.Context(), func(tx *entity.Tx) error { return tx.Restore(req.ID) })
	if err != nil {
		a.efail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.WriteResult{ID: req.ID, Path: a.pathOf(req.ID), Version: v})
}

// fieldParams reads ?ref= and ?field=.
func fieldParams(r *http.Request) (string, string, error) {
	ref, err := ref(r, "")
	if err != nil {
		return "", "", err
	}
	f := r.URL.Query().Get("field")
	if f == "" {
		return "", "", api.BadRequestf("missing ?field=: give the field's name")
	}
	return ref, f, nil
}

func (a *entityAPI) getField(w http.ResponseWriter, r *http.Request) {
	ref, field, err := fieldParams(r)
	if err != nil {
		a.efail(w, r, err)
		return
	}
	e, err := a.tree.Get(ref)
	if err != nil {
		a.efail(w, r, err)
		return
	}
	f, ok := e.Fields[field]
	if !ok {
		a.efail(w, r, fmt.Errorf("%w: %s has no field %q", entity.ErrNoField, e.Path, field))
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (a *entityAPI) setField(w http.ResponseWriter, r *http.Request) {
	ref, field, err := fieldParams(r)
	if err != nil {
		a.efail(w, r, err)
		return
	}
	var body api.FieldBody
	if err := decodeJSON(w, r, a.cfg.MaxValueBytes, &body, `{"type": "int", "value": 42} or {"value": 42}`); err != nil {
		a.efail(w, r, err)
		return
	}
	e, err := a.tree.Get(ref)
	if err != nil {
		a.efail(w, r, err)
		return
	}
	val, err := a.value(e, field, body.Type, body.Value)
	if err != nil {
		a.efail(w, r, err)
		return
	}
	v, err := a.tree.Update(r.Context(), func(tx *entity.Tx) error { return tx.Set(string(e.ID), field, val) })
	if err != nil {
		a.efail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.WriteResult{ID: e.ID, Path: e.Path, Field: field, Version: v})
}

// value decodes a written value: with its given type, else the type the
// schema of e's type declares for field, else the JSON type (bool, int
// for integers, float, string, json for objects and arrays). JSON null
// clears the field.
func (a *entityAPI) value(e entity.Entity, field, typ string, raw json.RawMessage) (entity.Value, error) {
	raw = bytes.TrimSpace(raw)
	where := func(err error) error { return fmt.Errorf("%s: field %q: %w", e.Path, field, err) }
	if len(raw) == 0 {
		return entity.Value{}, where(api.BadRequestf(`"value" missing: want {"type": "int", "value": 42} or {"value": 42} (null clears the field)`))
	}
	if string(raw) == "null" {
		return entity.Null(), nil
	}
	var kind entity.Kind
	switch {
	case typ != "":
		k, err := entity.ParseKind(typ)
		if err != nil {
			return entity.Value{}, where(err)
		}
		kind = k
	default:
		if sc, ok := a.tree.Schema(e.Type); ok {
			if spec, ok := sc.Fields[field]; ok {
				kind = spec.Type
			}
		}
	}
	v, err := entity.ValueFromJSON(kind, raw) // KindNull: the JSON type decides
	if err != nil {
		return entity.Value{}, where(err)
	}
	return v, nil
}

func (a *entityAPI) batch(w http.ResponseWriter, r *http.Request) {
	var req api.BatchRequest
	const want = `{"writes": [{"ref": "/Factory/Line1", "field": "speed", "value": 42}, ...]} (each with an optional "type")`
	if err := decodeJSON(w, r, maxBatchBodyBytes, &req, want); err != nil {
		a.efail(w, r, err)
		return
	}
	switch {
	case len(req.Writes) == 0:
		a.efail(w, r, api.BadRequestf("no writes: want %s", want))
		return
	case len(req.Writes) > MaxBatchWrites:
		a.efail(w, r, fmt.Errorf("%w: %d writes in one batch, at most %d; split it", errBodyTooLarge, len(req.Writes), MaxBatchWrites))
		return
	}
	// Resolve and type every write first; the writes are then committed
	// by entity ID, so each lands on the entity its ref named here.
	ents := make(map[string]entity.Entity)
	vals := make([]entity.Value, len(req.Writes))
	results := make([]api.WriteResult, len(req.Writes))
	for i, wr := range req.Writes {
		fail := func(err error) { a.efail(w, r, fmt.Errorf("writes[%d]: %w", i, err)) }
		if wr.Ref == "" || wr.Field == "" {
			fail(api.BadRequestf(`"ref" and "field" are required`))
			return
		}
		e, ok := ents[wr.Ref]
		if !ok {
			var err error
			if e, err = a.tree.Get(wr.Ref); err != nil {
				fail(err)
				return
			}
			ents[wr.Ref] = e
		}
		v, err := a.value(e, wr.Field, wr.Type, wr.Value)
		if err != nil {
			fail(err)
			return
		}
		vals[i] = v
		results[i] = api.WriteResult{ID: e.ID, Path: e.Path, Field: wr.Field}
	}
	ver, err := a.tree.Update(r.Context(), func(tx *entity.Tx) error {
		for i, res := range results {
			if err := tx.Set(string(res.ID), res.Field, vals[i]); err != nil {
				return fmt.Errorf("writes[%d]: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		a.efail(w, r, err)
		return
	}
	for i := range results {
		results[i].Version = ver
	}
	writeJSON(w, http.StatusOK, api.BatchResult{Version: ver, Results: results})
}

func (a *entityAPI) schemas(w http.ResponseWriter, r *http.Request) {
	scs := a.tree.Schemas()
	if scs == nil {
		scs = []entity.Schema{}
	}
	writeJSON(w, http.StatusOK, api.SchemasResponse{Schemas: scs})
}

func (a *entityAPI) schema(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	sc, ok := a.tree.Schema(typ)
	if !ok {
		a.efail(w, r, fmt.Errorf("%w for type %q: apply one with PUT /v1/schemas (starling schema apply)", errNoSchema, typ))
		return
	}
	writeJSON(w, http.StatusOK, sc)
}

// putSchema applies one schema, or a JSON array of them in one
// transaction: all of them or none (a file of several schemas must not
// leave the tree half-migrated).
func (a *entityAPI) putSchema(w http.ResponseWriter, r *http.Request) {
	var raw json.RawMessage
	const want = `a schema: {"type": "sensor", "fields": {"temp": {"type": "float", "unit": "C", "min": -40, "max": 125}}}, or a list of them`
	if err := decodeJSON(w, r, a.cfg.MaxValueBytes, &raw, want); err != nil {
		a.efail(w, r, err)
		return
	}
	list := len(bytes.TrimSpace(raw)) > 0 && bytes.TrimSpace(raw)[0] == '['
	var scs []entity.Schema
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var err error
	if list {
		err = dec.Decode(&scs)
	} else {
		var sc entity.Schema
		err = dec.Decode(&sc)
		scs = []entity.Schema{sc}
	}
	if err != nil {
		a.efail(w, r, api.BadRequestf("body must be %s: %v", want, err))
		return
	}
	seen := map[string]bool{}
	for _, sc := range scs {
		if seen[sc.Type] {
			a.efail(w, r, api.BadRequestf("schema %q is given twice: give each type once", sc.Type))
			return
		}
		seen[sc.Type] = true
	}
	v, err := a.tree.Update(r.Context(), func(tx *entity.Tx) error {
		for _, sc := range scs {
			if err := tx.PutSchema(sc); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		a.efail(w, r, err)
		return
	}
	if !list {
		writeJSON(w, http.StatusOK, api.SchemaResult{Type: scs[0].Type, Version: v})
		return
	}
	out := make([]api.SchemaResult, 0, len(scs))
	for _, sc := range scs {
		out = append(out, api.SchemaResult{Type: sc.Type, Version: v})
	}
	writeJSON(w, http.StatusOK, out)
}

// watch streams the events under ?path= (a path or an entity ID, "/"
// by default) as Server-Sent Events until the client goes away or the
// node closes. The response headers are sent once the watch is set up,
// so a client that has them sees every later change.
func (a *entityAPI) watch(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSpace(r.URL.Query().Get("path"))
	switch {
	case path == "":
		path = "/"
	case !strings.HasPrefix(path, "/"):
		e, err := a.tree.Get(path) // an ID: watch where it is now
		if err != nil {
			a.efail(w, r, err)
			return
		}
		path = e.Path
	}
	release, ok := a.holdStream(w)
	if !ok {
		return
	}
	defer release()
	rc := http.NewResponseController(w)
	wt := a.tree.Watch(path, watchBuffer)
	defer wt.Close()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		a.log.Warn("watch: cannot stream", "err", err)
		return
	}
	tick := time.NewTicker(a.heartbeat)
	defer tick.Stop()
	var buf bytes.Buffer
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if _, err := io.WriteString(w, ": heartbeat\n\n"); err != nil {
				return
			}
		case ev, ok := <-wt.C():
			if !ok {
				return // the store closed: the node is stopping
			}
			buf.Reset()
			writeEvent(&buf, ev)
			// Events dropped while this stream fell behind: tell the
			// client to read again, as the store does after a reload.
			if wt.Overflowed() {
				writeEvent(&buf, entity.Event{Field: "$reload"})
			}
			// Send what else is queued in the same write.
			for more := true; more && buf.Len() < 64<<10; {
				select {
				case ev, ok := <-wt.C():
					if !ok {
						more = false
						break
					}
					writeEvent(&buf, ev)
				default:
					more = false
				}
			}
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// writeEvent appends one SSE event: "data: {json}" and a blank line.
func writeEvent(buf *bytes.Buffer, ev entity.Event) {
	b, err := json.Marshal(ev)
	if err != nil { // an Event always marshals; never send half a line
		return
	}
	buf.WriteString("data: ")
	buf.Write(b)
	buf.WriteString("\n\n")
}
