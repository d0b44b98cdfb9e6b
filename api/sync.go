package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/starling-sync/starling/nodestate"
)

// SyncProgress returns the node's join/resync state.
func (c *Client) SyncProgress(ctx context.Context) (nodestate.SyncProgress, error) {
	var p nodestate.SyncProgress
	err := c.getJSON(ctx, "/v1/sync", &p)
	return p, err
}

// Resync starts a full state transfer on the node, from peerID or any
// connected peer ("").
func (c *Client) Resync(ctx context.Context, peerID string) (nodestate.SyncProgress, error) {
	body, _ := json.Marshal(map[string]string{"peer": peerID})
	resp, err := c.do(ctx, http.MethodPost, "/v1/sync/resync", bytes.NewReader(body), http.StatusAccepted)
	if err != nil {
		return nodestate.SyncProgress{}, err
	}
	defer resp.Body.Close()
	var p nodestate.SyncProgress
	err = json.NewDecoder(resp.Body).Decode(&p)
	return p, err
}
