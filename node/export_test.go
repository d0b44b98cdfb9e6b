package node

import "time"

// WithJoinRetry sets statesync's JoinRetry (tests: a retry too slow to
// matter shows that a new connection alone starts the join).
func WithJoinRetry(d time.Duration) Option {
	return func(o *openOptions) { o.joinRetry = d }
}
