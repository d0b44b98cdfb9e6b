// Package api is everything a client of a Starling node needs: the wire
// types of the HTTP API and the Go client, as consul's api package is
// for its agent. The CLI's client commands, the chaos suite (which talks
// to real node processes) and the bench use it; it imports nothing of
// the daemon, only the data model's own types (entity, election, and the
// node-state vocabulary of nodestate), so that JSON encodings are
// defined once.
//
//   - Client (client.go, entity.go, election.go, sync.go) calls one node:
//     NewClient(addr, token), or ClientFromDataDir(dir), which finds a
//     running node from its data directory (api.json, api.token; the
//     names are in datadir.go).
//   - Errors: *APIError for any error answer, matching ErrNotFound,
//     ErrBadRequest and ErrUnauthorized with errors.Is; entity endpoints
//     answer *EntityAPIError, which also matches the entity package's
//     sentinel the server named (errors.Is(err, entity.ErrSchema)).
//   - Streams: Watch (entity changes) and WatchGroup/WatchCandidate
//     (election events) are Server-Sent Events read with Next.
package api
