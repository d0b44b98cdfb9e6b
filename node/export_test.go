package node

import (
	"time"

	"github.com/starling-sync/starling/internal/version"
)

// WithJoinRetry sets statesync's JoinRetry (tests: a retry too slow to
// matter shows that a new connection alone starts the join).
func WithJoinRetry(d time.Duration) Option {
	return func(o *openOptions) { o.joinRetry = d }
}

// WithBuild makes the node say it runs build b (tests of mixed versions).
func WithBuild(b version.Info) Option {
	return func(o *openOptions) { o.build = &b }
}
