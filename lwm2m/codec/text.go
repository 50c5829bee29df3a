package codec

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// Plain text (content format 0) carries one resource value. Numbers are
// decimal, booleans "0"/"1", Time is Unix seconds, Objlnk "o:i" and Opaque
// base64 (LwM2M 1.1 §7.4.1). Unknown resources decode as strings.

func decodeText(base lwm2m.Path, payload []byte, r lwm2m.Resolver) ([]lwm2m.Record, error) {
	if err := needValuePath(base); err != nil {
		return nil, err
	}
	ri := lookup(r, base)
	if err := checkShape(ri, base); err != nil {
		return nil, err
	}
	t := lwm2m.TypeString
	if ri.known {
		t = ri.typ
	}
	v, err := parseText(t, string(payload))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", base, err)
	}
	return []lwm2m.Record{{Path: base, Value: v}}, nil
}

func parseText(t lwm2m.DataType, s string) (any, error) {
	switch t {
	case lwm2m.TypeString, lwm2m.TypeCoreLink:
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("%s value is not valid UTF-8", t)
		}
		return s, nil
	case lwm2m.TypeOpaque:
		// Padding is optional in practice; accept both forms.
		s = strings.TrimSpace(s)
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			b, err = base64.RawStdEncoding.DecodeString(s)
		}
		if err != nil {
			return nil, fmt.Errorf("opaque value is not base64: %w", err)
		}
		return b, nil
	}
	// Numeric and other scalar forms tolerate surrounding whitespace, as some
	// devices terminate their answers with a newline.
	s = strings.TrimSpace(s)
	switch t {
	case lwm2m.TypeInteger:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("integer value %q: %w", s, err)
		}
		return n, nil
	case lwm2m.TypeUnsignedInteger:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("unsigned integer value %q: %w", s, err)
		}
		return n, nil
	case lwm2m.TypeFloat:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("float value %q: %w", s, err)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("float value %q is not a finite number", s)
		}
		return f, nil
	case lwm2m.TypeBoolean:
		switch s {
		case "1", "true":
			return true, nil
		case "0", "false":
			return false, nil
		}
		return nil, fmt.Errorf("boolean value %q: want 0 or 1", s)
	case lwm2m.TypeTime:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("time value %q: want Unix seconds: %w", s, err)
		}
		return time.Unix(n, 0).UTC(), nil
	case lwm2m.TypeObjectLink:
		return parseObjectLink(s)
	}
	return nil, fmt.Errorf("resource of type %s has no text value", t)
}

func encodeText(base lwm2m.Path, recs []lwm2m.Record, r lwm2m.Resolver) ([]byte, error) {
	rec, _, err := singleRecord(base, recs, r)
	if err != nil {
		return nil, err
	}
	var s string
	switch v := rec.Value.(type) {
	case string:
		s = v
	case int64:
		s = strconv.FormatInt(v, 10)
	case uint64:
		s = strconv.FormatUint(v, 10)
	case float64:
		if s, err = formatFloat(v); err != nil {
			return nil, fmt.Errorf("%s: %w", base, err)
		}
	case bool:
		s = "0"
		if v {
			s = "1"
		}
	case []byte:
		s = base64.StdEncoding.EncodeToString(v)
	case time.Time:
		s = strconv.FormatInt(v.Unix(), 10)
	case lwm2m.ObjectLink:
		s = v.String()
	default:
		return nil, fmt.Errorf("%s: value of Go type %T has no text form", base, v)
	}
	return []byte(s), nil
}
