package testutil

import (
	"slices"
	"testing"
)

func TestRepeatedKeys(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
	}{
		{`{"msg":"x","component":"p2p","node":"n1"}`, nil},
		{`{"msg":"x","component":"p2p","component":"p2p","node":"n1","node":"n1"}`, []string{"component", "node"}},
		{`{"a":{"b":1,"b":2},"c":[1,2]}`, nil}, // nested objects are not this check's business
	} {
		got, err := RepeatedKeys([]byte(tc.line))
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("RepeatedKeys(%s) = %v, %v; want %v", tc.line, got, err, tc.want)
		}
	}
	if _, err := RepeatedKeys([]byte(`time=x level=INFO`)); err == nil {
		t.Error("a text line passed as JSON")
	}
}
