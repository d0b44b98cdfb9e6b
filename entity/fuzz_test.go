package entity

import (
	"bytes"
	"encoding/json"
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

// FuzzValueFromJSON: no input panics, and a valid JSON value decodes the
// same as its marshalled form (what the HTTP handler decoded before it
// called ValueFromJSON on the raw value).
func FuzzValueFromJSON(f *testing.F) {
	for _, s := range []string{`42`, `4.5`, `"a<b"`, `{ "a" : [1, 2] }`, `null`, `true`, `"AAEC"`, `"2026-01-02T03:04:05Z"`} {
		f.Add(uint8(0), s)
		f.Add(uint8(KindJSON), s)
	}
	f.Fuzz(func(t *testing.T, k uint8, raw string) {
		kind := Kind(k % uint8(KindRef+1))
		got, err := ValueFromJSON(kind, []byte(raw))
		if !json.Valid([]byte(raw)) {
			return
		}
		old, oerr := ValueFromJSON(kind, marshalRaw(t, raw))
		if (err == nil) != (oerr == nil) || (err == nil && !got.Equal(old)) {
			t.Fatalf("%s %q: %v, %v from the raw value; %v, %v from its marshalled form", kind, raw, got, err, old, oerr)
		}
	})
}
