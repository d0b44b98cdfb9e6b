package entity

import (
	"encoding/json"
	"errors"
	"math/rand"
	"strings"
	"testing"
	"time"
)

func TestValueRoundTrips(t *testing.T) {
	vals := []Value{Null(), Bool(true), Bool(false), Int(-42), Float(21.5), String("héllo"),
		BytesValue([]byte{0, 1, 2}), TimeValue(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)), JSONValue(`{"a":[1,2]}`), RefValue(Root)}
	for _, v := range vals {
		d, err := DecodeValue(v.Encode())
		if err != nil || !d.Equal(v) {
			t.Errorf("binary %v: %v, %v", v, d, err)
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var back Value
		if err := json.Unmarshal(j, &back); err != nil || !back.Equal(v) {
			t.Errorf("json %s: %v, %v", j, back, err)
		}
		if v.Kind != KindNull {
			p, err := ParseValue(v.Kind, v.String())
			if err != nil || !p.Equal(v) {
				t.Errorf("text %q as %s: %v, %v", v.String(), v.Kind, p, err)
			}
		}
	}
}

func TestValueErrors(t *testing.T) {
	for _, c := range []struct {
		k    Kind
		text string
	}{{KindInt, "1.5"}, {KindBool, "yes"}, {KindFloat, "x"}, {KindTime, "yesterday"}, {KindJSON, "{"}, {KindRef, "nope"}, {KindBytes, "%%"}} {
		if _, err := ParseValue(c.k, c.text); !errors.Is(err, ErrBadValue) {
			t.Errorf("%s %q: %v", c.k, c.text, err)
		}
	}
	var v Value
	if err := json.Unmarshal([]byte(`{"type":"int","value":"x"}`), &v); !errors.Is(err, ErrBadValue) {
		t.Errorf("json int from string: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"type":"color","value":1}`), &v); err == nil {
		t.Error("unknown type accepted")
	}
	if _, err := ParseKind("color"); !errors.Is(err, ErrBadKind) {
		t.Error("ParseKind accepted color")
	}
	infer := func(s string) Kind { v, _ := InferValue(s); return v.Kind }
	if infer("12") != KindInt || infer("1.5") != KindFloat || infer("true") != KindBool || infer("x") != KindString {
		t.Error("InferValue")
	}
}

func TestTimestampOrderAndClock(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 1000; i++ {
		a := Timestamp{Wall: r.Int63(), Logical: r.Uint32()}
		b := Timestamp{Wall: r.Int63(), Logical: r.Uint32()}
		if i%3 == 0 {
			b.Wall = a.Wall
		}
		if (a.String() < b.String()) != a.Less(b) {
			t.Fatalf("encoding order differs: %v %v", a, b)
		}
	}
	fc := newFakeClock()
	c := NewClock(fc.Now)
	t1 := c.Now()
	fc.Add(-time.Hour) // physical clock jumps back
	t2 := c.Now()
	if !t1.Less(t2) {
		t.Fatalf("clock went backwards: %v then %v", t1, t2)
	}
	future := Timestamp{Wall: t2.Wall + int64(time.Minute)}
	c.Observe(future)
	if t3 := c.Now(); !future.Less(t3) {
		t.Fatalf("Now %v not after observed %v", t3, future)
	}
}

func TestNewIDs(t *testing.T) {
	seen := map[ID]bool{}
	for i := 0; i < 1000; i++ {
		id, err := newID(time.Now().UnixMilli(), nil)
		if err != nil || id.Validate() != nil || seen[id] {
			t.Fatalf("id %q: %v", id, err)
		}
		seen[id] = true
	}
	a, _ := newID(5, &seqReader{})
	b, _ := newID(5, &seqReader{})
	if a != b {
		t.Fatal("same seed, different IDs")
	}
	if Root.Validate() != nil {
		t.Fatal("Root is not a valid ID")
	}
}

// marshalRaw is what the HTTP handler did to a value before it had
// ValueFromJSON: marshal it as a json.RawMessage (compacting it and
// escaping <, > and &) and decode the result again.
func marshalRaw(t testing.TB, raw string) []byte {
	b, err := json.Marshal(json.RawMessage(raw))
	if err != nil {
		t.Fatalf("marshal %q: %v", raw, err)
	}
	return b
}

func TestValueFromJSON(t *testing.T) {
	for _, c := range []struct {
		k    Kind
		raw  string
		want Value
		bad  bool
	}{
		{KindNull, `42`, Int(42), false},
		{KindNull, ` 4.5 `, Float(4.5), false},
		{KindNull, `"a<b"`, String("a<b"), false},
		{KindNull, `true`, Bool(true), false},
		{KindNull, `{ "a" : [1, 2] }`, JSONValue(`{"a":[1,2]}`), false},
		{KindNull, `{"h": "<b>&"}`, JSONValue(`{"h":"\u003cb\u003e\u0026"}`), false},
		{KindNull, `null`, Null(), false},
		{KindInt, `null`, Null(), false},
		{KindInt, `7`, Int(7), false},
		{KindInt, `"7"`, Value{}, true},
		{KindFloat, `7`, Float(7), false},
		{KindString, `"x"`, String("x"), false},
		{KindJSON, `[1, {"b": 2}]`, JSONValue(`[1,{"b":2}]`), false},
		{KindJSON, `"s"`, JSONValue(`"s"`), false},
		{KindBytes, `"AAEC"`, BytesValue([]byte{0, 1, 2}), false},
		{KindTime, `"2026-01-02T03:04:05Z"`, TimeValue(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), false},
		{KindRef, `"nope"`, Value{}, true},
		{KindBool, `1`, Value{}, true},
	} {
		got, err := ValueFromJSON(c.k, []byte(c.raw))
		if c.bad {
			if !errors.Is(err, ErrBadValue) {
				t.Errorf("%s %s: %v, %v; want ErrBadValue", c.k, c.raw, got, err)
			}
			continue
		}
		if err != nil || !got.Equal(c.want) {
			t.Errorf("%s %s: %v (%q), %v; want %v", c.k, c.raw, got, got.Str, err, c.want)
		}
		// What the handler used to compute: the same value from the
		// marshalled form.
		old, err := ValueFromJSON(c.k, marshalRaw(t, c.raw))
		if err != nil || !old.Equal(got) {
			t.Errorf("%s %s: %v from the raw value, %v, %v from its marshalled form", c.k, c.raw, got, old, err)
		}
	}
}

// TestTimeOutsideRangeRefused: a time the 64-bit nanosecond encoding
// cannot hold is refused where it is made, naming the range, instead of
// wrapping (3000-01-01 read back as 1830-11-23).
func TestTimeOutsideRangeRefused(t *testing.T) {
	for _, text := range []string{"3000-01-01T00:00:00Z", "1600-01-01T00:00:00Z", "2262-04-11T23:47:16.854775808Z"} {
		if _, err := ParseValue(KindTime, text); !errors.Is(err, ErrBadValue) || !strings.Contains(err.Error(), "1677-09-21") || !strings.Contains(err.Error(), "2262-04-11") {
			t.Errorf("ParseValue(time, %s) = %v, want ErrBadValue naming the range", text, err)
		}
		if v, err := ValueFromJSON(KindTime, []byte(`"`+text+`"`)); !errors.Is(err, ErrBadValue) {
			t.Errorf("ValueFromJSON(time, %s) = %v, %v, want ErrBadValue", text, v, err)
		}
		var v Value
		if err := json.Unmarshal([]byte(`{"type":"time","value":"`+text+`"}`), &v); !errors.Is(err, ErrBadValue) {
			t.Errorf("json %s: %v", text, err)
		}
	}
	for _, edge := range []time.Time{MinTime, MaxTime, time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)} {
		v, err := ParseValue(KindTime, edge.Format(time.RFC3339Nano))
		if err != nil {
			t.Fatalf("%v: %v", edge, err)
		}
		if back, err := DecodeValue(v.Encode()); err != nil || !back.Time.Equal(edge) {
			t.Errorf("%v read back as %v, %v", edge, back.Time, err)
		}
	}
}

// TestIntOutsideRangeRefused: an integer literal above int64 is refused
// with a clear error, never turned into a float.
func TestIntOutsideRangeRefused(t *testing.T) {
	for _, lit := range []string{"9223372036854775808", "-9223372036854775809", "123456789012345678901234567890"} {
		check := func(what string, v Value, err error) {
			t.Helper()
			if !errors.Is(err, ErrBadValue) || !strings.Contains(err.Error(), "outside the int range") {
				t.Errorf("%s %s = %v (%s), %v; want ErrBadValue saying it is outside the int range", what, lit, v, v.Kind, err)
			}
		}
		v, err := ValueFromJSON(KindNull, []byte(lit))
		check("ValueFromJSON(untyped)", v, err)
		v, err = ValueFromJSON(KindInt, []byte(lit))
		check("ValueFromJSON(int)", v, err)
		v, err = InferValue(lit)
		check("InferValue", v, err)
		v, err = ParseValue(KindInt, lit)
		check("ParseValue(int)", v, err)
	}
	for lit, want := range map[string]Kind{"9223372036854775807": KindInt, "-9223372036854775808": KindInt, "1e19": KindFloat, "1.5": KindFloat} {
		if v, err := ValueFromJSON(KindNull, []byte(lit)); err != nil || v.Kind != want {
			t.Errorf("ValueFromJSON(%s) = %v (%s), %v; want a %s", lit, v, v.Kind, err, want)
		}
	}
	if v, err := ValueFromJSON(KindFloat, []byte("9223372036854775808")); err != nil || v.Kind != KindFloat {
		t.Errorf("a large integer sent as a float: %v, %v", v, err)
	}
}

// TestInferValueKeepsText: a schemaless write keeps what was typed. A
// number is inferred only when it reads back as the same text; "007"
// must not become 7 (issue 17).
func TestInferValueKeepsText(t *testing.T) {
	for text, want := range map[string]Value{
		"7": Int(7), "-3": Int(-3), "0": Int(0), "21.5": Float(21.5), "1.0": Float(1), "-0.25": Float(-0.25),
		"1e+21": Float(1e21),
		"007":   String("007"), "01234": String("01234"), "+7": String("+7"), "-0": String("-0"),
		"1.10": String("1.10"), "1e3": String("1e3"), ".5": String(".5"), "1.": String("1."),
		"00000000000000000000001": String("00000000000000000000001"),
	} {
		v, err := InferValue(text)
		if err != nil || v.Kind != want.Kind || v.String() != want.String() {
			t.Errorf("InferValue(%q) = %v (%s), %v; want %v (%s)", text, v, v.Kind, err, want, want.Kind)
		}
		if kept := NumberKeptAsText(text); kept != (want.Kind == KindString) {
			t.Errorf("NumberKeptAsText(%q) = %v", text, kept)
		}
	}
	if NumberKeptAsText("hello") {
		t.Error("NumberKeptAsText(hello) = true")
	}
}
