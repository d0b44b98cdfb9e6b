package api

import (
	"encoding/json"

	"github.com/starling-sync/starling/entity"
)

// WriteResult is the answer of an entity write: the entity, its path
// after the write, the field (for field writes), and the version of the
// write (HLC timestamp and writer), the same on every node, which wins
// against every version it compares above.
type WriteResult struct {
	ID      entity.ID      `json:"id,omitempty"`
	Path    string         `json:"path,omitempty"`
	Field   string         `json:"field,omitempty"`
	Version entity.Version `json:"version"`
}

// BatchResult is the answer of a batch write: every write carries the
// version of the batch, committed as one atomic group.
type BatchResult struct {
	Version entity.Version `json:"version"`
	Results []WriteResult  `json:"results"`
}

// TreeNode is an entity with the entities below it, as GET
// /v1/entities/tree returns it.
type TreeNode struct {
	entity.Entity
	Children []TreeNode `json:"children,omitempty"`
}

// SchemaResult is the answer of PUT /v1/schemas.
type SchemaResult struct {
	Type    string         `json:"type"`
	Version entity.Version `json:"version"`
}

// CreateRequest is the body of POST /v1/entities.
type CreateRequest struct {
	Parent string `json:"parent"`
	Type   string `json:"type"`
	Name   string `json:"name"`
}

// PatchRequest is the body of PATCH /v1/entities.
type PatchRequest struct {
	Name   *string `json:"name,omitempty"`
	Parent *string `json:"parent,omitempty"`
}

// RestoreRequest is the body of POST /v1/entities/restore.
type RestoreRequest struct {
	ID entity.ID `json:"id"`
}

// FieldBody is the body of PUT /v1/fields: a value with its type, or a
// bare JSON value whose type comes from the schema or from JSON.
type FieldBody struct {
	Type  string          `json:"type,omitempty"`
	Value json.RawMessage `json:"value"`
}

// BatchItem is one write of POST /v1/fields/batch.
type BatchItem struct {
	Ref   string          `json:"ref"`
	Field string          `json:"field"`
	Type  string          `json:"type,omitempty"`
	Value json.RawMessage `json:"value"`
}

type BatchRequest struct {
	Writes []BatchItem `json:"writes"`
}

type EntitiesResponse struct {
	Entities []entity.Entity `json:"entities"`
}

// SearchResponse is the answer of GET /v1/entities/search: entities
// without fields, parents first; More is true when the limit cut the list.
type SearchResponse struct {
	Entities []entity.Entity `json:"entities"`
	More     bool            `json:"more,omitempty"`
}

// DeletedResponse is the answer of GET /v1/entities/deleted.
type DeletedResponse struct {
	Deleted []entity.Deleted `json:"deleted"`
}

type SchemasResponse struct {
	Schemas []entity.Schema `json:"schemas"`
}

// EntityErrorResponse is an entity endpoint's error: the message and a
// code naming the entity package's sentinel, so that clients can test
// for it without reading the message.
type EntityErrorResponse struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}
