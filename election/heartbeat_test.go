package election

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleHeartbeat() *Heartbeat {
	return &Heartbeat{
		NodeID: "plant1-edge", Incarnation: 1_700_000_000_123_456_789, Seq: 42, Warming: true,
		Candidates: []CandidateState{
			{Group: ClusterGroup, ID: "plant1-edge", Available: true, Healthy: true},
			{Group: "opcua", ID: "plant1-edge:a", Kind: KindEndpoint, Mode: ModeAllWarm, Healthy: true, Settling: true},
		},
		Views: []View{
			{Group: ClusterGroup, Leader: "plant0", LeaderPeer: "12D3KooWExample", Term: 7},
			{Group: "opcua", Term: 3},
		},
	}
}

func TestHeartbeatRoundTrip(t *testing.T) {
	for _, hb := range []*Heartbeat{
		sampleHeartbeat(),
		{NodeID: "n", Leaving: true, Seq: 1},
		{NodeID: "n"},
	} {
		got, err := DecodeHeartbeat(hb.Encode())
		if err != nil {
			t.Fatalf("decode %+v: %v", hb, err)
		}
		if !reflect.DeepEqual(got, hb) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, hb)
		}
	}
}

func TestDecodeHeartbeatRejects(t *testing.T) {
	good := sampleHeartbeat().Encode()
	mutate := func(f func(*Heartbeat)) []byte {
		hb := sampleHeartbeat()
		f(hb)
		return hb.Encode()
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"other version", append([]byte{3}, good[1:]...), "version 3"},
		{"unknown flag", append([]byte{1, 0x80}, good[2:]...), "flags"},
		{"truncated", good[:len(good)-3], "ErrBadHeartbeat"},
		{"trailing bytes", append(bytes.Clone(good), 0), "trailing"},
		{"too big", make([]byte, MaxHeartbeatSize+1), "limit"},
		{"bad node ID", mutate(func(h *Heartbeat) { h.NodeID = "a/b" }), "node ID"},
		{"node ID with instance", mutate(func(h *Heartbeat) { h.NodeID = "a:b" }), "node ID"},
		{"bad group", mutate(func(h *Heartbeat) { h.Candidates[0].Group = "../x" }), "group name"},
		{"bad kind", mutate(func(h *Heartbeat) { h.Candidates[0].Kind = 7 }), "kind"},
		{"duplicate candidate", mutate(func(h *Heartbeat) { h.Candidates[1] = h.Candidates[0] }), "twice"},
		{"duplicate view", mutate(func(h *Heartbeat) { h.Views[1].Group = ClusterGroup }), "twice"},
		{"leader without peer", mutate(func(h *Heartbeat) { h.Views[0].LeaderPeer = "" }), "peer"},
		{"huge string length", []byte{1, 0, 1, 1, 0xff, 0xff, 0x03}, "string of"},
		{"huge count", append(append([]byte{1, 0, 1, 1}, 1, 'n'), 0xff, 0xff, 0x03), "items"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeHeartbeat(tt.data)
			if !errors.Is(err, ErrBadHeartbeat) {
				t.Fatalf("err = %v, want ErrBadHeartbeat", err)
			}
			if tt.want != "ErrBadHeartbeat" && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// FuzzDecodeHeartbeat: any bytes decode without panic; whatever decodes
// encodes back to bytes that decode to the same heartbeat.
func FuzzDecodeHeartbeat(f *testing.F) {
	f.Add(sampleHeartbeat().Encode())
	f.Add((&Heartbeat{NodeID: "n", Leaving: true}).Encode())
	f.Add([]byte{1, 0, 0, 0, 1, 'x', 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		hb, err := DecodeHeartbeat(data)
		if err != nil {
			if !errors.Is(err, ErrBadHeartbeat) {
				t.Fatalf("error %v does not wrap ErrBadHeartbeat", err)
			}
			return
		}
		again, err := DecodeHeartbeat(hb.Encode())
		if err != nil {
			t.Fatalf("re-decode of %+v: %v", hb, err)
		}
		if !reflect.DeepEqual(hb, again) {
			t.Fatalf("round trip changed it:\n%+v\n%+v", hb, again)
		}
	})
}

// A version 1 heartbeat (no period) still decodes, with period 0 (the
// receiver's Interval); a period above the limit is refused.
func TestHeartbeatVersion1AndPeriod(t *testing.T) {
	v1 := []byte{1, 0, 7, 3, 2, 'n', '1', 0, 0}
	h, err := DecodeHeartbeat(v1)
	if err != nil {
		t.Fatalf("version 1: %v", err)
	}
	if h.NodeID != "n1" || h.Incarnation != 7 || h.Seq != 3 || h.Period != 0 {
		t.Errorf("version 1 decoded as %+v", h)
	}
	h.Period = 2500 * time.Millisecond
	back, err := DecodeHeartbeat(h.Encode())
	if err != nil || back.Period != h.Period {
		t.Fatalf("round trip of period %v: %+v, %v", h.Period, back, err)
	}
	h.Period = maxPeriod + time.Second
	if _, err := DecodeHeartbeat(h.Encode()); err == nil || !strings.Contains(err.Error(), "period") {
		t.Errorf("period above the limit: err = %v", err)
	}
}
