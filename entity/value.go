package entity

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind is the type of a field value.
type Kind uint8

// Kinds. The numbers are stored: never renumber.
const (
	KindNull   Kind = 0 // no value: the field was cleared
	KindBool   Kind = 1
	KindInt    Kind = 2 // int64
	KindFloat  Kind = 3 // float64, finite
	KindString Kind = 4 // UTF-8 text
	KindBytes  Kind = 5
	KindTime   Kind = 6 // instant, nanosecond precision, UTC
	KindJSON   Kind = 7 // any JSON document
	KindRef    Kind = 8 // the ID of another entity
)

var kindNames = map[Kind]string{
	KindNull: "null", KindBool: "bool", KindInt: "int", KindFloat: "float", KindString: "string",
	KindBytes: "bytes", KindTime: "time", KindJSON: "json", KindRef: "ref",
}

// KindNames lists the kinds a schema or a write may name.
const KindNames = "bool, int, float, string, bytes, time, json, ref"

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ErrBadKind means a type name is not one of KindNames.
var ErrBadKind = errors.New("entity: unknown type")

// ParseKind reads a kind name.
func ParseKind(s string) (Kind, error) {
	for k, n := range kindNames {
		if n == s && k != KindNull {
			return k, nil
		}
	}
	return 0, fmt.Errorf("%w %q: use one of %s", ErrBadKind, s, KindNames)
}

// MarshalText implements encoding.TextMarshaler.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *Kind) UnmarshalText(b []byte) error {
	if string(b) == "null" {
		*k = KindNull
		return nil
	}
	v, err := ParseKind(string(b))
	*k = v
	return err
}

// Value is a typed field value. Only the member for Kind is meaningful.
type Value struct {
	Kind  Kind
	Bool  bool
	Int   int64
	Float float64
	Str   string // KindString, KindJSON (the document) and KindRef (an entity ID)
	Bytes []byte
	Time  time.Time
}

// Constructors.
func Null() Value                  { return Value{Kind: KindNull} }
func Bool(b bool) Value            { return Value{Kind: KindBool, Bool: b} }
func Int(i int64) Value            { return Value{Kind: KindInt, Int: i} }
func Float(f float64) Value        { return Value{Kind: KindFloat, Float: f} }
func String(s string) Value        { return Value{Kind: KindString, Str: s} }
func BytesValue(b []byte) Value    { return Value{Kind: KindBytes, Bytes: b} }
func TimeValue(t time.Time) Value  { return Value{Kind: KindTime, Time: t.UTC()} }
func JSONValue(doc string) Value   { return Value{Kind: KindJSON, Str: doc} }
func RefValue(id ID) Value         { return Value{Kind: KindRef, Str: string(id)} }
func (v Value) IsNull() bool       { return v.Kind == KindNull }
func (v Value) Equal(o Value) bool { return bytes.Equal(v.Encode(), o.Encode()) }

// ErrBadValue means a value is not valid for its kind, or could not be
// decoded or parsed.
var ErrBadValue = errors.New("entity: bad value")

// The range of a time value: it is stored as nanoseconds since the Unix
// epoch in 64 bits, so an instant outside it would wrap (3000-01-01 would
// read back as 1830-11-23). Validate refuses one.
var (
	MinTime = time.Unix(0, math.MinInt64).UTC() // 1677-09-21T00:12:43.145224192Z
	MaxTime = time.Unix(0, math.MaxInt64).UTC() // 2262-04-11T23:47:16.854775807Z
)

// Validate checks the value itself (not against a schema).
func (v Value) Validate() error {
	switch v.Kind {
	case KindNull, KindBool, KindInt, KindBytes:
		return nil
	case KindTime:
		if v.Time.Before(MinTime) || v.Time.After(MaxTime) {
			return fmt.Errorf("%w: time %s is outside the range a time value can hold, %s to %s (nanoseconds since 1970 in 64 bits)",
				ErrBadValue, v.Time.Format(time.RFC3339Nano), MinTime.Format(time.RFC3339Nano), MaxTime.Format(time.RFC3339Nano))
		}
	case KindFloat:
		if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
			return fmt.Errorf("%w: float must be finite, got %v", ErrBadValue, v.Float)
		}
	case KindString:
		if !utf8.ValidString(v.Str) {
			return fmt.Errorf("%w: string is not valid UTF-8", ErrBadValue)
		}
	case KindJSON:
		if !json.Valid([]byte(v.Str)) {
			return fmt.Errorf("%w: not a valid JSON document: %.40q", ErrBadValue, v.Str)
		}
	case KindRef:
		if err := ID(v.Str).Validate(); err != nil {
			return fmt.Errorf("%w: reference: %v", ErrBadValue, err)
		}
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrBadValue, v.Kind)
	}
	return nil
}

// Encode returns the stored form: one kind byte, then the payload.
func (v Value) Encode() []byte {
	switch v.Kind {
	case KindBool:
		if v.Bool {
			return []byte{byte(KindBool), 1}
		}
		return []byte{byte(KindBool), 0}
	case KindInt:
		return binary.BigEndian.AppendUint64([]byte{byte(KindInt)}, uint64(v.Int))
	case KindFloat:
		return binary.BigEndian.AppendUint64([]byte{byte(KindFloat)}, math.Float64bits(v.Float))
	case KindTime:
		return binary.BigEndian.AppendUint64([]byte{byte(KindTime)}, uint64(v.Time.UnixNano()))
	case KindString, KindJSON, KindRef:
		return append([]byte{byte(v.Kind)}, v.Str...)
	case KindBytes:
		return append([]byte{byte(KindBytes)}, v.Bytes...)
	}
	return []byte{byte(KindNull)}
}

// DecodeValue reads Encode's form and validates it.
func DecodeValue(b []byte) (Value, error) {
	if len(b) == 0 {
		return Value{}, fmt.Errorf("%w: empty", ErrBadValue)
	}
	k, p := Kind(b[0]), b[1:]
	fixed := func(n int) error {
		if len(p) != n {
			return fmt.Errorf("%w: %s payload is %d bytes, want %d", ErrBadValue, k, len(p), n)
		}
		return nil
	}
	var v Value
	switch k {
	case KindNull:
		if err := fixed(0); err != nil {
			return Value{}, err
		}
		v = Null()
	case KindBool:
		if err := fixed(1); err != nil {
			return Value{}, err
		}
		if p[0] > 1 {
			return Value{}, fmt.Errorf("%w: bool byte %d", ErrBadValue, p[0])
		}
		v = Bool(p[0] == 1)
	case KindInt, KindFloat, KindTime:
		if err := fixed(8); err != nil {
			return Value{}, err
		}
		u := binary.BigEndian.Uint64(p)
		switch k {
		case KindInt:
			v = Int(int64(u))
		case KindFloat:
			v = Float(math.Float64frombits(u))
		default:
			v = TimeValue(time.Unix(0, int64(u)))
		}
	case KindString, KindJSON, KindRef:
		v = Value{Kind: k, Str: string(p)}
	case KindBytes:
		v = BytesValue(append([]byte(nil), p...))
	default:
		return Value{}, fmt.Errorf("%w: unknown kind byte %d", ErrBadValue, b[0])
	}
	return v, v.Validate()
}

// String renders the value for people: what the CLI prints.
func (v Value) String() string {
	switch v.Kind {
	case KindNull:
		return "null"
	case KindBool:
		return strconv.FormatBool(v.Bool)
	case KindInt:
		return strconv.FormatInt(v.Int, 10)
	case KindFloat:
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	case KindBytes:
		return base64.StdEncoding.EncodeToString(v.Bytes)
	case KindTime:
		return v.Time.Format(time.RFC3339Nano)
	}
	return v.Str
}

// ParseValue reads text as a value of kind k, as typed on a command line:
// bool (true/false), int, float, string (as is), bytes (base64), time
// (RFC 3339), json (a document), ref (an entity ID).
func ParseValue(k Kind, text string) (Value, error) {
	var v Value
	switch k {
	case KindBool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %q is not a bool (true or false)", ErrBadValue, text)
		}
		v = Bool(b)
	case KindInt:
		i, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
		if errors.Is(err, strconv.ErrRange) {
			return Value{}, intRangeError(text)
		}
		if err != nil {
			return Value{}, fmt.Errorf("%w: %q is not an int (64-bit integer)", ErrBadValue, text)
		}
		v = Int(i)
	case KindFloat:
		f, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %q is not a float", ErrBadValue, text)
		}
		v = Float(f)
	case KindString:
		v = String(text)
	case KindBytes:
		b, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %q is not base64 bytes", ErrBadValue, text)
		}
		v = BytesValue(b)
	case KindTime:
		t, err := time.Parse(time.RFC3339Nano, text)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %q is not an RFC 3339 time (e.g. 2026-11-21T10:00:00Z)", ErrBadValue, text)
		}
		v = TimeValue(t)
	case KindJSON:
		v = JSONValue(text)
	case KindRef:
		v = RefValue(ID(text))
	case KindNull:
		v = Null()
	default:
		return Value{}, fmt.Errorf("%w: unknown kind %d", ErrBadValue, k)
	}
	return v, v.Validate()
}

// InferValue reads text with no declared type: true/false as bool, an
// integer as int, a number as float, anything else as string. A number
// is taken as one only when it reads back as the same text, so that a
// write keeps what was typed: "007", "+7", "01234", "1.10" or "1e3" stay
// strings (serial numbers, versions, codes), while "7", "-3", "21.5" and
// "1.0" are numbers ("1.0" is how a whole float is written). Use a schema
// or an explicit type (ParseValue) to store such text as a number. An
// integer outside the int64 range is refused (intRangeError) rather than
// turned into a float that would not hold it exactly.
func InferValue(text string) (Value, error) {
	if b, err := strconv.ParseBool(text); err == nil && (text == "true" || text == "false") {
		return Bool(b), nil
	}
	i, err := strconv.ParseInt(text, 10, 64)
	if err == nil {
		if strconv.FormatInt(i, 10) == text {
			return Int(i), nil
		}
		return String(text), nil
	}
	if errors.Is(err, strconv.ErrRange) && canonicalInt(text) {
		return Value{}, intRangeError(text)
	}
	if f, err := strconv.ParseFloat(text, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) && canonicalFloat(f, text) {
		return Float(f), nil
	}
	return String(text), nil
}

// NumberKeptAsText reports whether InferValue kept text as a string
// though it parses as a number (it would not read back the same): the
// CLI says so, and how to store a number instead.
func NumberKeptAsText(text string) bool {
	if _, err := strconv.ParseFloat(text, 64); err != nil && !errors.Is(err, strconv.ErrRange) {
		return false
	}
	v, err := InferValue(text)
	return err == nil && v.Kind == KindString
}

// canonicalInt: digits with an optional '-', no leading zero.
func canonicalInt(text string) bool {
	d := strings.TrimPrefix(text, "-")
	if d == "" || (d[0] == '0' && len(d) > 1) {
		return false
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// canonicalFloat: text is how f is written back (shortest form), or a
// whole number with ".0".
func canonicalFloat(f float64, text string) bool {
	if text == strconv.FormatFloat(f, 'f', -1, 64) || text == strconv.FormatFloat(f, 'g', -1, 64) {
		return true
	}
	return f == math.Trunc(f) && text == strconv.FormatFloat(f, 'f', 1, 64)
}

// intRangeError refuses an integer literal outside int64.
func intRangeError(text string) error {
	return fmt.Errorf("%w: %.40s is not an int: it is outside the int range (%d to %d); to store it exactly, send it as a string (or as a float, e.g. 1.5e19, if an approximation will do)",
		ErrBadValue, text, int64(math.MinInt64), int64(math.MaxInt64))
}

// isIntLiteral reports whether raw is a JSON number with no fraction or
// exponent: an integer.
func isIntLiteral(raw []byte) bool {
	if len(raw) > 0 && raw[0] == '-' {
		raw = raw[1:]
	}
	if len(raw) == 0 {
		return false
	}
	for _, c := range raw {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// jsonValue is a value's JSON form: {"type": "int", "value": 42}.
type jsonValue struct {
	Type  Kind            `json:"type"`
	Value json.RawMessage `json:"value"`
}

// MarshalJSON implements json.Marshaler.
func (v Value) MarshalJSON() ([]byte, error) {
	var raw []byte
	var err error
	switch v.Kind {
	case KindNull:
		raw = []byte("null")
	case KindBool:
		raw, err = json.Marshal(v.Bool)
	case KindInt:
		raw, err = json.Marshal(v.Int)
	case KindFloat:
		raw, err = json.Marshal(v.Float)
	case KindJSON:
		raw = []byte(v.Str)
	case KindBytes:
		raw, err = json.Marshal(v.Bytes) // base64
	case KindTime:
		raw, err = json.Marshal(v.Time.Format(time.RFC3339Nano))
	default:
		raw, err = json.Marshal(v.Str)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(jsonValue{Type: v.Kind, Value: raw})
}

// UnmarshalJSON implements json.Unmarshaler. "type" may be omitted: the
// JSON type then decides (bool, int for integers, float, string). See
// ValueFromJSON.
func (v *Value) UnmarshalJSON(b []byte) error {
	var jv struct {
		Type  *Kind           `json:"type"`
		Value json.RawMessage `json:"value"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&jv); err != nil {
		return fmt.Errorf("%w: want {\"type\": \"int\", \"value\": 42}: %v", ErrBadValue, err)
	}
	k := KindNull // the JSON type decides
	if jv.Type != nil {
		if *jv.Type == KindNull {
			*v = Null()
			return nil
		}
		k = *jv.Type
	}
	out, err := ValueFromJSON(k, jv.Value)
	if err != nil {
		return err
	}
	*v = out
	return nil
}

// ValueFromJSON decodes a value from the JSON of its "value" member (raw,
// as in {"type": "int", "value": 42}) as kind k, in one pass over raw:
// for a caller that has the member already (the HTTP API's handlers).
// With k KindNull the JSON type decides: bool, int for integers, float,
// string, json for objects and arrays. JSON null is Null whatever k. A
// JSON document is kept as encoding/json writes it (compact, with <, >
// and & escaped), so the same document is the same value however it was
// spaced.
func ValueFromJSON(k Kind, raw []byte) (Value, error) {
	raw = bytes.TrimSpace(raw)
	var out Value
	if k == KindNull {
		err := out.inferJSON(raw)
		return out, err
	}
	if string(raw) == "null" {
		return Null(), nil // clearing a field of any type
	}
	var err error
	switch k {
	case KindJSON:
		if len(raw) == 0 {
			return Value{}, fmt.Errorf("%w: json value missing", ErrBadValue)
		}
		out = JSONValue(compactJSON(raw))
	case KindBool:
		out.Kind = k
		err = json.Unmarshal(raw, &out.Bool)
	case KindInt:
		out.Kind = k
		if isIntLiteral(raw) {
			if _, perr := strconv.ParseInt(string(raw), 10, 64); errors.Is(perr, strconv.ErrRange) {
				return Value{}, intRangeError(string(raw))
			}
		}
		err = json.Unmarshal(raw, &out.Int)
	case KindFloat:
		out.Kind = k
		err = json.Unmarshal(raw, &out.Float)
	case KindBytes:
		out.Kind = k
		err = json.Unmarshal(raw, &out.Bytes)
	case KindTime:
		var s string
		if err = json.Unmarshal(raw, &s); err == nil {
			out, err = ParseValue(KindTime, s)
		}
	default: // string, ref
		var s string
		if err = json.Unmarshal(raw, &s); err == nil {
			out, err = ParseValue(k, s)
		}
	}
	if err != nil {
		if errors.Is(err, ErrBadValue) {
			return Value{}, err
		}
		return Value{}, fmt.Errorf("%w: %s is not a valid %s", ErrBadValue, raw, k)
	}
	if err := out.Validate(); err != nil {
		return Value{}, err
	}
	return out, nil
}

// compactJSON returns doc as encoding/json writes a json.RawMessage:
// compact, with <, >, &, U+2028 and U+2029 escaped. Invalid JSON is
// returned as it is, for Validate to refuse.
func compactJSON(doc []byte) string {
	if !bytes.ContainsAny(doc, " \t\r\n<>&\u2028\u2029") {
		return string(doc)
	}
	var c, e bytes.Buffer
	if err := json.Compact(&c, doc); err != nil {
		return string(doc)
	}
	json.HTMLEscape(&e, c.Bytes())
	return e.String()
}

func (v *Value) inferJSON(raw []byte) error {
	if len(raw) == 0 || string(raw) == "null" {
		*v = Null()
		return nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%w: %v", ErrBadValue, err)
		}
		*v = String(s)
	case 't', 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return fmt.Errorf("%w: %v", ErrBadValue, err)
		}
		*v = Bool(b)
	case '{', '[':
		*v = JSONValue(compactJSON(raw))
		return v.Validate()
	default:
		i, err := strconv.ParseInt(string(raw), 10, 64)
		if err == nil {
			*v = Int(i)
			return nil
		}
		if errors.Is(err, strconv.ErrRange) && isIntLiteral(raw) {
			return intRangeError(string(raw))
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return fmt.Errorf("%w: %s", ErrBadValue, raw)
		}
		*v = Float(f)
	}
	return nil
}
