package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// SenML JSON (content format 110): RFC 8428 as LwM2M 1.1 §7.4.4 profiles
// it. A record's name is its base name (sticky, from the last "bn") followed
// by "n", and must be an LwM2M path. LwM2M adds "vlo" for Object Links;
// "vd" is base64url without padding. Times (bt, t) are checked for syntax
// but not returned: Record has no timestamp, so a time series decodes as
// several records with the same path, in payload order.

// senmlValue is the one value field of a record.
type senmlValue struct {
	key string // "v", "vs", "vb", "vd" or "vlo"
	num string // the JSON number literal of "v"
	bv  string // base value literal in force, "" when none
	str string // "vs", "vd" and "vlo"
	b   bool   // "vb"
}

func decodeSenMLJSON(base lwm2m.Path, payload []byte, r lwm2m.Resolver) ([]lwm2m.Record, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := expectDelim(dec, '['); err != nil {
		return nil, err
	}
	var (
		recs   []lwm2m.Record
		bn, bv string
	)
	for i := 0; dec.More(); i++ {
		v, name, err := readSenMLRecord(dec, &bn, &bv)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		rec, err := senmlRecord(base, name, v, r)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		recs = append(recs, rec)
	}
	if err := expectDelim(dec, ']'); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the SenML pack")
	}
	return recs, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		got := fmt.Sprintf("'%v'", tok)
		if !ok {
			got = jsonKind(tok)
		}
		return fmt.Errorf("want '%c', got %s", want, got)
	}
	return nil
}

// readSenMLRecord reads one JSON object, updating the base name and base
// value that later records inherit, and returns its value and full name.
func readSenMLRecord(dec *json.Decoder, bn, bv *string) (senmlValue, string, error) {
	var (
		val  senmlValue
		n    string
		nVal int
	)
	if err := expectDelim(dec, '{'); err != nil {
		return val, "", err
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return val, "", fmt.Errorf("invalid JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return val, "", fmt.Errorf("invalid JSON: key %v", tok)
		}
		if seen[key] {
			return val, "", fmt.Errorf("field %q appears twice", key)
		}
		seen[key] = true
		var x any
		if err := dec.Decode(&x); err != nil {
			return val, "", fmt.Errorf("field %q: invalid JSON: %w", key, err)
		}
		switch key {
		case "bn", "n", "vs", "vd", "vlo", "bu", "u":
			s, ok := x.(string)
			if !ok {
				return val, "", fmt.Errorf("field %q: want a string, got %s", key, jsonKind(x))
			}
			switch key {
			case "bn":
				*bn = s
			case "n":
				n = s
			case "vs", "vd", "vlo":
				val.key, val.str = key, s
				nVal++
			}
		case "v", "bv", "bt", "t", "bver", "ut", "bs":
			num, ok := x.(json.Number)
			if !ok {
				return val, "", fmt.Errorf("field %q: want a number, got %s", key, jsonKind(x))
			}
			// Times and versions are not returned but must still be numbers
			// a receiver could use; reject overflows such as 1e999.
			f, err := strconv.ParseFloat(string(num), 64)
			if err != nil || math.IsInf(f, 0) {
				return val, "", fmt.Errorf("field %q: number %s out of range", key, num)
			}
			switch key {
			case "v":
				val.key, val.num = key, string(num)
				nVal++
			case "bv":
				*bv = string(num)
			}
		case "vb":
			b, ok := x.(bool)
			if !ok {
				return val, "", fmt.Errorf("field %q: want a boolean, got %s", key, jsonKind(x))
			}
			val.key, val.b = key, b
			nVal++
		case "s":
			return val, "", errors.New("sum values are not supported by LwM2M")
		default:
			// RFC 8428 §4.4: unknown fields ending in "_" must be understood.
			if strings.HasSuffix(key, "_") {
				return val, "", fmt.Errorf("unsupported must-understand field %q", key)
			}
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return val, "", err
	}
	switch nVal {
	case 0:
		return val, "", errors.New("no value field (v, vs, vb, vd or vlo)")
	case 1:
	default:
		return val, "", errors.New("more than one value field")
	}
	val.bv = *bv
	return val, *bn + n, nil
}

func jsonKind(x any) string {
	switch x.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	}
	return "an object"
}

func senmlRecord(base lwm2m.Path, name string, v senmlValue, r lwm2m.Resolver) (lwm2m.Record, error) {
	if !strings.HasPrefix(name, "/") {
		return lwm2m.Record{}, fmt.Errorf("name %q is not an LwM2M path", name)
	}
	p, err := lwm2m.ParsePath(name)
	if err != nil {
		return lwm2m.Record{}, fmt.Errorf("name %q: %w", name, err)
	}
	if p.Depth != lwm2m.DepthResource && p.Depth != lwm2m.DepthResourceInstance {
		return lwm2m.Record{}, fmt.Errorf("name %q: values need a resource or resource-instance path", name)
	}
	if !base.Contains(p) {
		return lwm2m.Record{}, fmt.Errorf("name %q is not under %s", name, base)
	}
	ri := lookup(r, p)
	if err := checkShape(ri, p); err != nil {
		return lwm2m.Record{}, err
	}
	x, err := senmlTyped(ri, v)
	if err != nil {
		return lwm2m.Record{}, fmt.Errorf("%s: %w", p, err)
	}
	return lwm2m.Record{Path: p, Value: x}, nil
}

// senmlTyped converts the value field to the resource's Go type; for
// unknown resources the field decides.
func senmlTyped(ri resInfo, v senmlValue) (any, error) {
	want := ""
	switch ri.typ {
	case lwm2m.TypeString, lwm2m.TypeCoreLink:
		want = "vs"
	case lwm2m.TypeInteger, lwm2m.TypeUnsignedInteger, lwm2m.TypeFloat, lwm2m.TypeTime:
		want = "v"
	case lwm2m.TypeBoolean:
		want = "vb"
	case lwm2m.TypeOpaque:
		want = "vd"
	case lwm2m.TypeObjectLink:
		want = "vlo"
	case lwm2m.TypeNone:
		if ri.known {
			return nil, errors.New("resource of type None carries no value")
		}
	}
	if ri.known && v.key != want {
		return nil, fmt.Errorf("%s resource needs %q, got %q", ri.typ, want, v.key)
	}
	switch v.key {
	case "vs":
		return v.str, nil
	case "vb":
		return v.b, nil
	case "vlo":
		return parseObjectLink(v.str)
	case "vd":
		// Padding and the standard alphabet are tolerated: both appear in
		// the wild although LwM2M asks for unpadded base64url.
		s := strings.TrimRight(v.str, "=")
		enc := base64.RawURLEncoding
		if strings.ContainsAny(s, "+/") {
			enc = base64.RawStdEncoding
		}
		b, err := enc.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("vd is not base64url: %w", err)
		}
		return cloneBytes(b), nil
	}
	switch {
	case ri.typ == lwm2m.TypeInteger:
		return senmlInt(v)
	case ri.typ == lwm2m.TypeTime:
		n, err := senmlInt(v)
		if err != nil {
			return nil, err
		}
		return time.Unix(n, 0).UTC(), nil
	case ri.typ == lwm2m.TypeUnsignedInteger:
		return senmlUint(v)
	}
	return senmlFloat(v)
}

func senmlFloat(v senmlValue) (float64, error) {
	f, err := strconv.ParseFloat(v.num, 64)
	if err != nil {
		return 0, fmt.Errorf("number %s: %w", v.num, err)
	}
	if v.bv != "" {
		b, err := strconv.ParseFloat(v.bv, 64)
		if err != nil {
			return 0, fmt.Errorf("base value %s: %w", v.bv, err)
		}
		f += b
	}
	if math.IsInf(f, 0) {
		return 0, fmt.Errorf("number %s out of range", v.num)
	}
	return f, nil
}

// senmlInt reads integers exactly from the literal when it has integer
// syntax, so that values beyond 2^53 survive; otherwise through float64,
// which must then be integral.
func senmlInt(v senmlValue) (int64, error) {
	n, err := strconv.ParseInt(v.num, 10, 64)
	if err == nil && v.bv != "" {
		var b int64
		if b, err = strconv.ParseInt(v.bv, 10, 64); err == nil {
			if s := n + b; (s > n) == (b > 0) {
				return s, nil
			}
			err = strconv.ErrRange
		}
	}
	if err == nil {
		return n, nil
	}
	f, ferr := senmlFloat(v)
	if ferr != nil {
		return 0, ferr
	}
	if f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, fmt.Errorf("number %s is not an integer in range", v.num)
	}
	return int64(f), nil
}

func senmlUint(v senmlValue) (uint64, error) {
	n, err := strconv.ParseUint(v.num, 10, 64)
	if err == nil && v.bv != "" {
		var b uint64
		if b, err = strconv.ParseUint(v.bv, 10, 64); err == nil {
			if s := n + b; s >= n {
				return s, nil
			}
			err = strconv.ErrRange
		}
	}
	if err == nil {
		return n, nil
	}
	f, ferr := senmlFloat(v)
	if ferr != nil {
		return 0, ferr
	}
	if f != math.Trunc(f) || f < 0 || f >= math.MaxUint64 {
		return 0, fmt.Errorf("number %s is not an unsigned integer in range", v.num)
	}
	return uint64(f), nil
}

func encodeSenMLJSON(base lwm2m.Path, recs []lwm2m.Record, r lwm2m.Resolver) ([]byte, error) {
	recs, err := prepareRecords(base, recs, r)
	if err != nil {
		return nil, err
	}
	// Names are relative to the request path as in the examples of LwM2M
	// 1.1 §7.4.4: bn "/3/0/" with n "0", "6/0"...; a resource read alone
	// (or a time series of it) is bn "/3/0/9" with no n. The rare mix of a
	// record at base and records below it uses bn "/3/0/7" with n "/0".
	bn := base.String() + "/"
	atBase := 0
	for _, rec := range recs {
		if rec.Path == base {
			atBase++
		}
	}
	switch {
	case base.Depth == lwm2m.DepthRoot:
		bn = ""
	case atBase > 0:
		bn = base.String()
	}
	prefix := len(bn)
	out := []byte{'['}
	for i, rec := range recs {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '{')
		sep := false
		if i == 0 && bn != "" {
			out = append(out, `"bn":`...)
			out = appendJSONString(out, bn)
			sep = true
		}
		if name := rec.Path.String(); len(name) > prefix {
			if sep {
				out = append(out, ',')
			}
			out = append(out, `"n":`...)
			out = appendJSONString(out, name[prefix:])
			sep = true
		}
		if sep {
			out = append(out, ',')
		}
		if out, err = appendSenMLValue(out, rec.Value); err != nil {
			return nil, fmt.Errorf("record %s: %w", rec.Path, err)
		}
		out = append(out, '}')
	}
	return append(out, ']'), nil
}

func appendSenMLValue(out []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		if !utf8.ValidString(x) {
			return nil, errors.New("string is not valid UTF-8")
		}
		return appendJSONString(append(out, `"vs":`...), x), nil
	case int64:
		return strconv.AppendInt(append(out, `"v":`...), x, 10), nil
	case uint64:
		return strconv.AppendUint(append(out, `"v":`...), x, 10), nil
	case time.Time:
		return strconv.AppendInt(append(out, `"v":`...), x.Unix(), 10), nil
	case float64:
		s, err := formatFloat(x)
		if err != nil {
			return nil, err
		}
		return append(append(out, `"v":`...), s...), nil
	case bool:
		return strconv.AppendBool(append(out, `"vb":`...), x), nil
	case []byte:
		return appendJSONString(append(out, `"vd":`...), base64.RawURLEncoding.EncodeToString(x)), nil
	case lwm2m.ObjectLink:
		return appendJSONString(append(out, `"vlo":`...), x.String()), nil
	}
	return nil, fmt.Errorf("value of Go type %T has no SenML form", v)
}

// appendJSONString quotes valid UTF-8 s, escaping only what JSON requires
// so that the output stays readable (encoding/json would also escape <>&).
func appendJSONString(out []byte, s string) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c == '\n':
			out = append(out, '\\', 'n')
		case c == '\r':
			out = append(out, '\\', 'r')
		case c == '\t':
			out = append(out, '\\', 't')
		case c < 0x20:
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}
