package entity

import (
	"bytes"
	"testing"
)

func FuzzDecodeValue(f *testing.F) {
	for _, v := range []Value{Null(), Bool(true), Int(-5), Float(2.5), String("x"), BytesValue([]byte{1}), JSONValue(`{"a":1}`), RefValue(Root)} {
		f.Add(v.Encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeValue(b)
		if err != nil {
			return
		}
		if !bytes.Equal(v.Encode(), b) {
			t.Fatalf("re-encoding %v differs", v)
		}
		if _, err := v.MarshalJSON(); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseTimestamp(f *testing.F) {
	f.Add(Timestamp{Wall: 1 << 60, Logical: 7}.String())
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := ParseTimestamp(s)
		if err != nil {
			return
		}
		if ts.String() != s {
			t.Fatalf("%q -> %v -> %q", s, ts, ts.String())
		}
	})
}

func FuzzParseKey(f *testing.F) {
	v := Version{Timestamp: Timestamp{Wall: 5}, Writer: "n1"}
	f.Add(regKey{entity: Root, kind: 'f', name: "temp"}.key(v).String())
	f.Add(regKey{entity: Root, kind: 'a', name: attrParent}.key(v).String())
	f.Add(regKey{kind: 's', name: "Sensor"}.key(v).String())
	f.Fuzz(func(t *testing.T, s string) {
		r, ver, err := parseKey(s)
		if err != nil {
			return
		}
		if got := r.key(ver).String(); got != s {
			t.Fatalf("%q -> %q", s, got)
		}
	})
}

func FuzzDecodeParent(f *testing.F) {
	f.Add(parentValue{parent: Root, prev: Root}.encode())
	f.Add([]byte("x/"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeParent(b)
		if err != nil {
			return
		}
		if !bytes.Equal(p.encode(), b) {
			t.Fatalf("%q -> %q", b, p.encode())
		}
	})
}
