// Package httpapi serves a node's HTTP API and its web page.
//
// NewAPIHandler builds the handler from an APIConfig whose parts are
// small interfaces the node satisfies (KV, PeerSet, StatusSource,
// EntityStore, ClusterSource, SyncControl) plus the election runner, so
// the handlers are tested with fakes. Wire types come from package api.
//
//   - api.go: auth (a bearer token; the web page's session cookie), raw
//     keys, status and peers.
//   - entity_api.go: the entity tree, fields, schemas and the watch
//     stream.
//   - election_api.go: the leader election's groups, candidates and
//     watch streams, for services in any language.
//   - transfer_api.go: join/resync progress.
//   - web.go and web/: the one-page UI and its one-time login codes.
//
// Errors are JSON {"error": "..."}; entity errors carry a "code" naming
// the entity package's sentinel so clients can test for it.
package httpapi
