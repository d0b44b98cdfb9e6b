package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/starling-sync/starling/entity"
)

// entityErrorCodes maps the "code" of an entity endpoint's error back to
// the entity package's sentinel.
var entityErrorCodes = map[string]error{
	"not_found":  entity.ErrNotFound,
	"clock_skew": entity.ErrClockSkew,
	"no_field":   entity.ErrNoField,
	"exists":     entity.ErrExists,
	"not_empty":  entity.ErrNotEmpty,
	"cycle":      entity.ErrCycle,
	"too_large":  entity.ErrTooLarge,
	"schema":     entity.ErrSchema,
	"bad_name":   entity.ErrBadName,
	"bad_value":  entity.ErrBadValue,
	"bad_kind":   entity.ErrBadKind,
	"bad_id":     entity.ErrBadID,
	"closed":     entity.ErrClosed,
}

// EntityAPIError is an error answer of an entity endpoint: an *APIError
// (errors.As, and errors.Is with ErrNotFound, ErrBadRequest, ...) that
// also matches the entity package's sentinel the server named, e.g.
// errors.Is(err, entity.ErrSchema).
type EntityAPIError struct {
	*APIError
	// Code is the server's error code ("schema", "exists", ...; "" when
	// the server gave none, as for a refused token).
	Code string
}

// Unwrap returns the *APIError and the entity sentinel of Code.
func (e *EntityAPIError) Unwrap() []error {
	errs := []error{e.APIError}
	if s := entityErrorCodes[e.Code]; s != nil {
		errs = append(errs, s)
	}
	return errs
}

// entityDo sends a request with an optional JSON body and decodes a JSON
// answer of status want into out (when out is not nil).
func (c *Client) entityDo(ctx context.Context, method, path string, in any, want int, out any) error {
	resp, err := c.entitySend(ctx, method, path, in, want)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) entitySend(ctx context.Context, method, path string, in any, want int) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		return nil, c.unreachable(err)
	}
	if resp.StatusCode == want {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e EntityErrorResponse
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = fmt.Sprintf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil, &EntityAPIError{APIError: &APIError{StatusCode: resp.StatusCode, Message: e.Error}, Code: e.Code}
}

// withQuery builds "path?k=v&..." from pairs, leaving out empty values.
func withQuery(path string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// Entity reads an entity (a path like /Factory/Line1, or an ID) with its
// fields.
func (c *Client) Entity(ctx context.Context, ref string) (entity.Entity, error) {
	var e entity.Entity
	err := c.entityDo(ctx, http.MethodGet, withQuery("/v1/entities", "ref", ref), nil, http.StatusOK, &e)
	return e, err
}

// Children lists the entities directly under ref, without fields.
func (c *Client) Children(ctx context.Context, ref string) ([]entity.Entity, error) {
	var r EntitiesResponse
	err := c.entityDo(ctx, http.MethodGet, withQuery("/v1/entities/children", "ref", ref), nil, http.StatusOK, &r)
	return r.Entities, err
}

// Tree returns ref and the entities below it, down to depth levels (a
// negative depth: all), with their fields when fields is true.
func (c *Client) Tree(ctx context.Context, ref string, depth int, fields bool) (TreeNode, error) {
	d := ""
	if depth >= 0 {
		d = strconv.Itoa(depth)
	}
	var t TreeNode
	err := c.entityDo(ctx, http.MethodGet, withQuery("/v1/entities/tree", "ref", ref, "depth", d, "fields", strconv.FormatBool(fields)), nil, http.StatusOK, &t)
	return t, err
}

// CreateEntity makes an entity of type typ named name under parent (a
// path or an ID; "/" for the top level).
func (c *Client) CreateEntity(ctx context.Context, parent, typ, name string) (WriteResult, error) {
	var r WriteResult
	err := c.entityDo(ctx, http.MethodPost, "/v1/entities", CreateRequest{Parent: parent, Type: typ, Name: name}, http.StatusCreated, &r)
	return r, err
}

// RenameEntity gives an entity a new name under the same parent.
func (c *Client) RenameEntity(ctx context.Context, ref, name string) (WriteResult, error) {
	var r WriteResult
	err := c.entityDo(ctx, http.MethodPatch, withQuery("/v1/entities", "ref", ref), PatchRequest{Name: &name}, http.StatusOK, &r)
	return r, err
}

// MoveEntity puts an entity under a new parent.
func (c *Client) MoveEntity(ctx context.Context, ref, newParent string) (WriteResult, error) {
	var r WriteResult
	err := c.entityDo(ctx, http.MethodPatch, withQuery("/v1/entities", "ref", ref), PatchRequest{Parent: &newParent}, http.StatusOK, &r)
	return r, err
}

// DeleteEntity deletes an entity; one with children only when recursive
// (an error matching entity.ErrNotEmpty otherwise). The result's ID is
// what RestoreEntity takes.
func (c *Client) DeleteEntity(ctx context.Context, ref string, recursive bool) (WriteResult, error) {
	var r WriteResult
	rec := ""
	if recursive {
		rec = "true"
	}
	err := c.entityDo(ctx, http.MethodDelete, withQuery("/v1/entities", "ref", ref, "recursive", rec), nil, http.StatusOK, &r)
	return r, err
}

// DeletedEntities lists the deleted entities under path ("/" for all)
// that RestoreEntity can bring back, newest delete first, at most limit
// (0: the node's default, 1,000).
func (c *Client) DeletedEntities(ctx context.Context, path string, limit int) ([]entity.Deleted, error) {
	kv := []string{"path", path}
	if limit > 0 {
		kv = append(kv, "limit", strconv.Itoa(limit))
	}
	var r DeletedResponse
	err := c.entityDo(ctx, http.MethodGet, withQuery("/v1/entities/deleted", kv...), nil, http.StatusOK, &r)
	return r.Deleted, err
}

// RestoreEntity undeletes an entity by ID, with what was deleted with it.
func (c *Client) RestoreEntity(ctx context.Context, id entity.ID) (WriteResult, error) {
	var r WriteResult
	err := c.entityDo(ctx, http.MethodPost, "/v1/entities/restore", RestoreRequest{ID: id}, http.StatusOK, &r)
	return r, err
}

// Field reads one field with its version; an error matching
// entity.ErrNoField when the entity has no such field.
func (c *Client) Field(ctx context.Context, ref, field string) (entity.Field, error) {
	var f entity.Field
	err := c.entityDo(ctx, http.MethodGet, withQuery("/v1/fields", "ref", ref, "field", field), nil, http.StatusOK, &f)
	return f, err
}

// SetField writes a field (entity.Null() clears it) and returns the
// write's version.
func (c *Client) SetField(ctx context.Context, ref, field string, v entity.Value) (WriteResult, error) {
	var r WriteResult
	err := c.entityDo(ctx, http.MethodPut, withQuery("/v1/fields", "ref", ref, "field", field), v, http.StatusOK, &r)
	return r, err
}

// FieldWrite is one write of SetFields.
type FieldWrite struct {
	Ref   string
	Field string
	Value entity.Value
}

// SetFields commits writes as one atomic group with one version: all of
// them or, on an error, none.
func (c *Client) SetFields(ctx context.Context, writes []FieldWrite) (BatchResult, error) {
	req := BatchRequest{Writes: make([]BatchItem, len(writes))}
	for i, w := range writes {
		var tv FieldBody
		b, err := json.Marshal(w.Value)
		if err == nil {
			err = json.Unmarshal(b, &tv)
		}
		if err != nil {
			return BatchResult{}, fmt.Errorf("writes[%d]: %s field %q: %w", i, w.Ref, w.Field, err)
		}
		req.Writes[i] = BatchItem{Ref: w.Ref, Field: w.Field, Type: tv.Type, Value: tv.Value}
	}
	var r BatchResult
	err := c.entityDo(ctx, http.MethodPost, "/v1/fields/batch", req, http.StatusOK, &r)
	return r, err
}

// PutSchema applies a schema to its type (new, or gaining fields) and
// returns the write's version.
func (c *Client) PutSchema(ctx context.Context, sc entity.Schema) (entity.Version, error) {
	var r SchemaResult
	err := c.entityDo(ctx, http.MethodPut, "/v1/schemas", sc, http.StatusOK, &r)
	return r.Version, err
}

// PutSchemas applies several schemas in one write: all of them, or none
// when one is refused. It returns each type with the write's version.
func (c *Client) PutSchemas(ctx context.Context, scs []entity.Schema) ([]SchemaResult, error) {
	var r []SchemaResult
	err := c.entityDo(ctx, http.MethodPut, "/v1/schemas", scs, http.StatusOK, &r)
	return r, err
}

// Schemas lists every schema, by type.
func (c *Client) Schemas(ctx context.Context) ([]entity.Schema, error) {
	var r SchemasResponse
	err := c.entityDo(ctx, http.MethodGet, "/v1/schemas", nil, http.StatusOK, &r)
	return r.Schemas, err
}

// Schema returns the schema of a type; an error matching ErrNotFound
// when the type has none.
func (c *Client) Schema(ctx context.Context, typ string) (entity.Schema, error) {
	var sc entity.Schema
	err := c.entityDo(ctx, http.MethodGet, "/v1/schemas/"+url.PathEscape(typ), nil, http.StatusOK, &sc)
	return sc, err
}

// WatchStream is a watch of the entity tree over the API. It is not safe
// for concurrent use; Close may be called from another goroutine to end
// a blocked Next.
type WatchStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
}

// maxEventBytes bounds one event line: a field's old and new values
// (each up to the store's value limit) in JSON.
const maxEventBytes = 4 << 20

// Watch follows the changes under path (a path or an entity ID; "" for
// everything), local and remote. It returns once the node has set up
// the watch: every change made after that is delivered. The stream ends
// when ctx ends, on Close, or when the node stops.
func (c *Client) Watch(ctx context.Context, path string) (*WatchStream, error) {
	resp, err := c.entitySend(ctx, http.MethodGet, withQuery("/v1/watch", "path", path), nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventBytes)
	return &WatchStream{body: resp.Body, sc: sc}, nil
}

// Next blocks until the next event. An event with Field "$reload" means
// events were lost (the stream fell behind): read the state again. At
// the end of the stream Next returns io.EOF when the node closed it, or
// the context's or the connection's error.
func (w *WatchStream) Next() (entity.Event, error) {
	var data []byte
	for w.sc.Scan() {
		line := w.sc.Bytes()
		switch {
		case len(line) == 0: // end of an event
			if data == nil {
				continue
			}
			var ev entity.Event
			if err := json.Unmarshal(data, &ev); err != nil {
				return entity.Event{}, fmt.Errorf("watch: bad event %.80q: %w", data, err)
			}
			return ev, nil
		case line[0] == ':': // comment: heartbeat
		case bytes.HasPrefix(line, []byte("data:")):
			d := bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, d...)
		}
	}
	if err := w.sc.Err(); err != nil {
		return entity.Event{}, err
	}
	return entity.Event{}, io.EOF
}

// Close ends the stream. Safe to call twice.
func (w *WatchStream) Close() error {
	err := w.body.Close()
	if errors.Is(err, http.ErrBodyReadAfterClose) {
		return nil
	}
	return err
}
