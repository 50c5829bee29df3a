package lwm2m

import (
	"fmt"
	"math"
	"time"
)

// DataType is the type of a resource as an object definition declares it.
type DataType uint8

// The LwM2M resource data types. The String form is the REST API's name.
const (
	TypeNone DataType = iota
	TypeString
	TypeInteger
	TypeUnsignedInteger
	TypeFloat
	TypeBoolean
	TypeOpaque
	TypeTime
	TypeObjectLink
	TypeCoreLink
)

var typeNames = [...]string{"None", "String", "Integer", "UnsignedInteger", "Float", "Boolean", "Opaque", "DateTime", "ObjectLink", "CoreLink"}

// String returns the REST name of the type (e.g. "UnsignedInteger", "DateTime").
func (t DataType) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("DataType(%d)", t)
}

// ParseDataType accepts both the REST names and the OMA DDF names
// ("Unsigned Integer", "Time", "Objlnk", "Corelnk", "none").
func ParseDataType(s string) (DataType, error) {
	switch s {
	case "None", "none", "":
		return TypeNone, nil
	case "String":
		return TypeString, nil
	case "Integer":
		return TypeInteger, nil
	case "UnsignedInteger", "Unsigned Integer":
		return TypeUnsignedInteger, nil
	case "Float":
		return TypeFloat, nil
	case "Boolean":
		return TypeBoolean, nil
	case "Opaque":
		return TypeOpaque, nil
	case "DateTime", "Time":
		return TypeTime, nil
	case "ObjectLink", "Objlnk":
		return TypeObjectLink, nil
	case "CoreLink", "Corelnk":
		return TypeCoreLink, nil
	}
	return TypeNone, fmt.Errorf("lwm2m: unknown data type %q", s)
}

// ObjectLink is the value of an Objlnk resource: a reference to /Object/Instance.
type ObjectLink struct {
	Object, Instance uint16
}

// String renders the link as "object:instance", as LwM2M text and SenML do.
func (l ObjectLink) String() string { return fmt.Sprintf("%d:%d", l.Object, l.Instance) }

// Record is one resource or resource-instance value at a full path
// (depth 3 for single resources, depth 4 for instances of multiple resources).
//
// Value holds the Go type of the resource's DataType:
// String and CoreLink → string, Integer → int64, UnsignedInteger → uint64,
// Float → float64, Boolean → bool, Opaque → []byte, Time → time.Time,
// ObjectLink → ObjectLink, None → nil.
type Record struct {
	Path  Path
	Value any
}

// Resolver tells codecs how a resource is typed. ok is false for resources
// the object model does not know; codecs then fall back to what the format
// itself says (SenML value kinds) or to Opaque (TLV).
type Resolver interface {
	ResourceType(object, resource uint16) (t DataType, multiple bool, ok bool)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(object, resource uint16) (DataType, bool, bool)

// ResourceType calls f.
func (f ResolverFunc) ResourceType(object, resource uint16) (DataType, bool, bool) {
	return f(object, resource)
}

// ContentFormat is a CoAP Content-Format number.
type ContentFormat uint16

// The content formats LwM2M 1.0–1.2 use.
const (
	FormatText       ContentFormat = 0
	FormatLinkFormat ContentFormat = 40
	FormatOpaque     ContentFormat = 42
	FormatCBOR       ContentFormat = 60
	FormatSenMLJSON  ContentFormat = 110
	FormatSenMLCBOR  ContentFormat = 112
	FormatTLVLegacy  ContentFormat = 1542
	FormatJSONLegacy ContentFormat = 1543
	FormatTLV        ContentFormat = 11542
	FormatJSON       ContentFormat = 11543
)

// CoerceValue converts v (as decoded from JSON, text or another format) to
// the Go type of t, returning an error when it cannot be represented.
func CoerceValue(t DataType, v any) (any, error) {
	switch t {
	case TypeString, TypeCoreLink:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case TypeInteger:
		switch x := v.(type) {
		case int64:
			return x, nil
		case uint64:
			if x <= 1<<63-1 {
				return int64(x), nil
			}
		case float64:
			// Range first: converting an out-of-range float is undefined in Go.
			if x >= -(1<<63) && x < 1<<63 && x == math.Trunc(x) {
				return int64(x), nil
			}
		}
	case TypeUnsignedInteger:
		switch x := v.(type) {
		case uint64:
			return x, nil
		case int64:
			if x >= 0 {
				return uint64(x), nil
			}
		case float64:
			if x >= 0 && x < 1<<64 && x == math.Trunc(x) {
				return uint64(x), nil
			}
		}
	case TypeFloat:
		switch x := v.(type) {
		case float64:
			return x, nil
		case int64:
			return float64(x), nil
		case uint64:
			return float64(x), nil
		}
	case TypeBoolean:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case TypeOpaque:
		if b, ok := v.([]byte); ok {
			return b, nil
		}
	case TypeTime:
		switch x := v.(type) {
		case time.Time:
			return x, nil
		case int64:
			return time.Unix(x, 0).UTC(), nil
		case float64:
			return time.Unix(int64(x), 0).UTC(), nil
		}
	case TypeObjectLink:
		if l, ok := v.(ObjectLink); ok {
			return l, nil
		}
	case TypeNone:
		return nil, nil
	}
	return nil, fmt.Errorf("lwm2m: value %v (%T) is not a valid %s", v, v, t)
}

// MarshalText renders the REST name, so stored and shown definitions read well.
func (t DataType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText accepts the REST and DDF names.
func (t *DataType) UnmarshalText(b []byte) error {
	v, err := ParseDataType(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// Numeric returns a numeric record value as float64, for gt/lt/st
// comparisons; NaN and non-numbers report false.
func Numeric(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case int64:
		f = float64(x)
	case uint64:
		f = float64(x)
	case float64:
		f = x
	case int:
		f = float64(x)
	case float32:
		f = float64(x)
	default:
		return 0, false
	}
	return f, !math.IsNaN(f)
}
