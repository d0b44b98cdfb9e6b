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

func FuzzParseRecordKey(f *testing.F) {
	f.Add(recordKey(Version{Timestamp: Timestamp{Wall: 5}, Writer: "n1"}))
	f.Add("/r/x")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseRecordKey(s)
		if err != nil {
			return
		}
		if got := recordKey(v); got != s {
			t.Fatalf("%q -> %q", s, got)
		}
	})
}

// FuzzDecodeRecord: any bytes decode to an error or to writes that
// encode back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	ts := Timestamp{Wall: 1 << 40, Logical: 3}
	f.Add(encodeRecord([]write{
		{reg: regKey{entity: Root, kind: 'f', name: "temp"}, ts: ts, value: Int(21).Encode()},
		{reg: regKey{entity: Root, kind: 'a', name: attrParent}, ts: ts, value: parentValue{parent: Root}.encode()},
		{reg: regKey{kind: 's', name: "Sensor"}, ts: ts, value: []byte("{}")},
	}))
	f.Add([]byte("R1\x01f"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ws, err := decodeRecord(b)
		if err != nil {
			return
		}
		if got := encodeRecord(ws); !bytes.Equal(got, b) {
			t.Fatalf("%x -> %x", b, got)
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
