package entity

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrSchema means a write or a schema change does not fit the schema.
var ErrSchema = errors.New("entity: schema violation")

// FieldSpec declares one field of a type.
type FieldSpec struct {
	Type Kind `json:"type"`
	// Default is read for the field while it has never been written. It
	// is a JSON value of Type (e.g. 20, "idle", true).
	Default json.RawMessage `json:"default,omitempty"`
	Unit    string          `json:"unit,omitempty"`
	// Min and Max bound int and float values, inclusive.
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
	Doc string   `json:"doc,omitempty"`
}

// defaultValue decodes Default; ok is false when there is none.
func (f FieldSpec) defaultValue() (Value, bool, error) {
	if len(f.Default) == 0 {
		return Value{}, false, nil
	}
	raw, err := json.Marshal(struct {
		Type  Kind            `json:"type"`
		Value json.RawMessage `json:"value"`
	}{f.Type, f.Default})
	if err != nil {
		return Value{}, false, err
	}
	var v Value
	if err := json.Unmarshal(raw, &v); err != nil {
		return Value{}, false, err
	}
	return v, true, nil
}

// Schema declares the fields of an entity type. Once a type has a schema,
// writes to entities of the type are checked against it; an entity whose
// type has no schema accepts any field.
//
// Schemas evolve by adding fields (and changing defaults, units, bounds
// and docs). Existing entities are not rewritten: a new field reads as its
// default, or as absent, until it is written. Removing a field or changing
// its type is refused, because values already written would no longer
// fit; add a field with a new name instead.
type Schema struct {
	Type   string               `json:"type"`
	Fields map[string]FieldSpec `json:"fields"`
}

// Validate reports every problem of the schema at once.
func (s Schema) Validate() error {
	var errs []error
	if err := ValidateIdent("type", s.Type); err != nil {
		errs = append(errs, err)
	}
	names := make([]string, 0, len(s.Fields))
	for n := range s.Fields {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := s.Fields[n]
		if err := ValidateIdent("field", n); err != nil {
			errs = append(errs, err)
			continue
		}
		if f.Type == KindNull || kindNames[f.Type] == "" {
			errs = append(errs, fmt.Errorf("%w: field %q: type must be one of %s", ErrSchema, n, KindNames))
			continue
		}
		if (f.Min != nil || f.Max != nil) && f.Type != KindInt && f.Type != KindFloat {
			errs = append(errs, fmt.Errorf("%w: field %q: min and max apply to int and float fields, not %s", ErrSchema, n, f.Type))
		}
		if f.Min != nil && f.Max != nil && *f.Min > *f.Max {
			errs = append(errs, fmt.Errorf("%w: field %q: min %v is above max %v", ErrSchema, n, *f.Min, *f.Max))
		}
		if d, ok, err := f.defaultValue(); err != nil {
			errs = append(errs, fmt.Errorf("%w: field %q: default %s is not a %s: %v", ErrSchema, n, f.Default, f.Type, err))
		} else if ok {
			if err := f.check(d); err != nil {
				errs = append(errs, fmt.Errorf("%w: field %q: default: %v", ErrSchema, n, err))
			}
		}
	}
	return errors.Join(errs...)
}

// check tests a value against the spec (kind and bounds).
func (f FieldSpec) check(v Value) error {
	if v.Kind == KindNull {
		return nil // clearing a field is always allowed
	}
	if v.Kind != f.Type {
		return fmt.Errorf("expected %s, got %s", f.Type, v.Kind)
	}
	var x float64
	switch v.Kind {
	case KindInt:
		x = float64(v.Int)
	case KindFloat:
		x = v.Float
	default:
		return nil
	}
	if f.Min != nil && x < *f.Min {
		return fmt.Errorf("%s is below the minimum %v", v, *f.Min)
	}
	if f.Max != nil && x > *f.Max {
		return fmt.Errorf("%s is above the maximum %v", v, *f.Max)
	}
	return nil
}

// Check tests a write of field on an entity (described by where, for the
// message) against the schema.
func (s Schema) Check(where, field string, v Value) error {
	f, ok := s.Fields[field]
	if !ok {
		known := make([]string, 0, len(s.Fields))
		for n := range s.Fields {
			known = append(known, n)
		}
		sort.Strings(known)
		return fmt.Errorf("%w: %s: field %q is not in the schema of type %s (fields: %s); add it to the schema first",
			ErrSchema, where, field, s.Type, strings.Join(known, ", "))
	}
	if err := f.check(v); err != nil {
		return fmt.Errorf("%w: %s: field %q of type %s: %v", ErrSchema, where, field, s.Type, err)
	}
	return nil
}

// CompatibleWith reports why s cannot replace old: a field removed or
// its type changed.
func (s Schema) CompatibleWith(old Schema) error {
	var errs []error
	names := make([]string, 0, len(old.Fields))
	for n := range old.Fields {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		of := old.Fields[n]
		nf, ok := s.Fields[n]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%w: type %s: field %q would be removed; schemas can only gain fields", ErrSchema, s.Type, n))
		case nf.Type != of.Type:
			errs = append(errs, fmt.Errorf("%w: type %s: field %q would change from %s to %s; add a field with a new name instead", ErrSchema, s.Type, n, of.Type, nf.Type))
		}
	}
	return errors.Join(errs...)
}
