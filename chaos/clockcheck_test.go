package chaos

import (
	"testing"
	"time"

	"github.com/starling-sync/starling/entity"
)

// TestClockChecker: an honest host's write stamped years ahead of its
// acknowledgement is a clock jump; the skewed host's own writes while
// its fault holds, and a write stamped after a far-future version (the
// far stamps' counter bit), are not.
func TestClockChecker(t *testing.T) {
	end := time.Unix(101, 0) // eop's acknowledgement time
	years := entity.Timestamp{Wall: end.Add(10 * 365 * 24 * time.Hour).UnixNano()}
	after := entity.Timestamp{Wall: years.Wall, Logical: 1<<31 + 2}
	skewIn := Op{Process: NemesisProcess, Kind: KindInject, Key: "clock-skew", Value: "n3 clock +87600h0m0s", Start: time.Unix(90, 0), End: time.Unix(90, 0)}
	skewOut := Op{Process: NemesisProcess, Kind: KindHeal, Key: "clock-skew", Value: "n3 clock +87600h0m0s", Start: time.Unix(200, 0), End: time.Unix(200, 0)}
	for _, tt := range []struct {
		name string
		h    []Op
		ok   bool
	}{
		{"skewed host's own write", []Op{skewIn, setOp(ResultOK, "n3", vp(entity.Version{Timestamp: years, Writer: "n3"}), tS0, "f0", entity.Int(1)), skewOut}, true},
		{"honest overwrite of a far version", []Op{skewIn, setOp(ResultOK, "n1", vp(entity.Version{Timestamp: after, Writer: "n1"}), tS0, "f0", entity.Int(2)), skewOut}, true},
		{"honest host moved years ahead", []Op{skewIn, setOp(ResultOK, "n1", vp(entity.Version{Timestamp: entity.Timestamp{Wall: years.Wall, Logical: 5}, Writer: "n1"}), tS1, "f0", entity.Int(3)), skewOut}, false},
		{"honest host with no fault at all", []Op{setOp(ResultOK, "n2", vp(entity.Version{Timestamp: years, Writer: "n2"}), tS1, "f1", entity.Int(4))}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := entClockChecker{testEntityModel(t)}.Check(CheckInput{History: hist(tt.h...)}) // a model per case: it caches decoded ops by index
			if v.OK != tt.ok {
				t.Fatalf("OK = %v, want %v: %v", v.OK, tt.ok, v.Problems)
			}
		})
	}
}
