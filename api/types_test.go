package api

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestCleanKey(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"a", "a", true},
		{"/a/b", "a/b", true},
		{"a b/c-d.e_f", "a b/c-d.e_f", true},
		{"", "", false},
		{"/", "", false},
		{"a//b", "", false},
		{"a/./b", "", false},
		{"a/../b", "", false},
		{"a/", "", false},
		{"..", "", false},
	}
	for _, tt := range tests {
		got, err := CleanKey(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("CleanKey(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBadRequest) {
			t.Errorf("CleanKey(%q) error %v does not match ErrBadRequest", tt.in, err)
		}
	}
}

func TestEntryJSON(t *testing.T) {
	for _, e := range []Entry{
		{Key: "a", Value: []byte("plain text")},
		{Key: "b", Value: []byte{0xff, 0xfe, 0}},
		{Key: "c", Value: nil},
	} {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var got Entry
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.Key != e.Key || string(got.Value) != string(e.Value) {
			t.Errorf("round trip %v -> %s -> %v", e, b, got)
		}
	}
	var e Entry
	if err := json.Unmarshal([]byte(`{"key":"k","value":"x","encoding":"rot13"}`), &e); err == nil {
		t.Error("unknown encoding accepted")
	}
}
