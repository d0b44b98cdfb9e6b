package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// Backup streams a backup file of the node's data (GET /v1/store/backup)
// into w and returns its size. A stream cut off midway is an error; the
// file then fails `starling restore`'s checks too.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/store/backup", nil, http.StatusOK)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET /v1/store/backup: cut off after %d bytes: %w", n, err)
	}
	return n, nil
}
