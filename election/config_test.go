package election

import (
	"testing"
	"time"
)

// TestLinkBudget: a quarter of each preset's pause tolerance, and the
// preset named from the timings (custom ones are "custom").
func TestLinkBudget(t *testing.T) {
	custom := LANConfig()
	custom.Timeout = 2 * time.Second
	for _, tt := range []struct {
		cfg    Config
		name   string
		budget time.Duration
	}{
		{LANConfig(), "lan", 150 * time.Millisecond},
		{WANConfig(), "wan", time.Second},
		{FastConfig(), "fast", 62500 * time.Microsecond},
		{Config{}, "lan", 150 * time.Millisecond}, // defaults are the LAN timings
		{custom, "custom", 450 * time.Millisecond},
	} {
		if got := tt.cfg.PresetName(); got != tt.name {
			t.Errorf("%+v: PresetName %q, want %q", tt.cfg, got, tt.name)
		}
		if got := tt.cfg.LinkBudget(); got != tt.budget {
			t.Errorf("%s: LinkBudget %v, want %v", tt.name, got, tt.budget)
		}
	}
}
