package hypermedia

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/model"
)

// Field is one named member of an ordered object.
type Field struct {
	Name  string
	Value any
}

// Object is a JSON object whose members keep their order, so that an
// instance reads in the order of its definition.
type Object []Field

// MarshalJSON writes the members in order.
func (o Object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(f.Name)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(f.Value)
		if err != nil {
			return nil, fmt.Errorf("hypermedia: field %s: %w", f.Name, err)
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Get returns the value of the named member.
func (o Object) Get(name string) (any, bool) {
	for _, f := range o {
		if f.Name == name {
			return f.Value, true
		}
	}
	return nil, false
}

// fieldName is the name a resource has in representations.
func fieldName(def *model.Object, id uint16) string {
	if def != nil {
		if r, ok := def.Resource(id); ok {
			return r.SerialisationName
		}
	}
	return strconv.Itoa(int(id))
}

// JSONValue renders one typed LwM2M value as the REST API shows it:
// times in RFC 3339, opaque in base64, object links as "o:i".
func JSONValue(v any) any {
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case lwm2m.ObjectLink:
		return x.String()
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
	}
	return v
}

// ResourceFields renders records (all within one instance) as fields keyed
// by SerialisationName, in definition order; multiple resources become an
// array when their instance IDs are 0..n-1, else an object keyed by ID.
func ResourceFields(def *model.Object, recs []lwm2m.Record) Object {
	type multi struct {
		ids  []uint16
		vals []any
	}
	single := map[uint16]any{}
	multis := map[uint16]*multi{}
	var order []uint16
	seen := map[uint16]bool{}
	for _, r := range recs {
		id := r.Path.Resource
		if !seen[id] {
			seen[id] = true
			order = append(order, id)
		}
		if r.Path.Depth == lwm2m.DepthResourceInstance {
			m := multis[id]
			if m == nil {
				m = &multi{}
				multis[id] = m
			}
			m.ids = append(m.ids, r.Path.ResourceInstance)
			m.vals = append(m.vals, JSONValue(r.Value))
			continue
		}
		// A resource the definition says is multiple can arrive as a single
		// record when a device answers a resource-instance read.
		single[id] = JSONValue(r.Value)
	}
	rank := func(id uint16) int {
		if def != nil {
			for i, r := range def.Resources {
				if r.ID == id {
					return i
				}
			}
		}
		return math.MaxInt32 + int(id)
	}
	sort.SliceStable(order, func(a, b int) bool { return rank(order[a]) < rank(order[b]) })
	out := make(Object, 0, len(order))
	for _, id := range order {
		name := fieldName(def, id)
		if m, ok := multis[id]; ok {
			out = append(out, Field{name, multiValue(m.ids, m.vals)})
			continue
		}
		out = append(out, Field{name, single[id]})
	}
	return out
}

// multiValue is an array for dense IDs 0..n-1, else an object keyed by ID.
func multiValue(ids []uint16, vals []any) any {
	idx := make([]int, len(ids))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return ids[idx[a]] < ids[idx[b]] })
	dense := true
	for pos, i := range idx {
		if int(ids[i]) != pos {
			dense = false
		}
	}
	if dense {
		arr := make([]any, len(idx))
		for pos, i := range idx {
			arr[pos] = vals[i]
		}
		return arr
	}
	obj := make(Object, 0, len(idx))
	for _, i := range idx {
		obj = append(obj, Field{strconv.Itoa(int(ids[i])), vals[i]})
	}
	return obj
}

// FieldError names the fields of a request body that could not be used.
type FieldError struct {
	Fields []string
	Msg    string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("hypermedia: %s: %s", e.Msg, strings.Join(e.Fields, ", "))
}

// ParseResourceFields turns a decoded JSON body (json.Decoder with
// UseNumber) into records of instance inst, typed by def. Unknown fields,
// values of the wrong type, executable resources and (unless create, since
// a Create may initialise any resource) read-only resources are reported
// together in a *FieldError. InstanceID and Links are ignored.
func ParseResourceFields(def *model.Object, inst uint16, body map[string]any, create bool) ([]lwm2m.Record, error) {
	var recs []lwm2m.Record
	var bad []string
	names := make([]string, 0, len(body))
	for k := range body {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == "InstanceID" || name == "Links" {
			continue
		}
		res, ok := def.ResourceByName(name)
		if !ok || res.Executable() || (!create && !res.Writable()) {
			bad = append(bad, name)
			continue
		}
		rs, err := resourceRecords(res, lwm2m.ResourcePath(def.ID, inst, res.ID), body[name])
		if err != nil {
			bad = append(bad, name)
			continue
		}
		recs = append(recs, rs...)
	}
	if len(bad) > 0 {
		return nil, &FieldError{Fields: bad, Msg: "invalid fields"}
	}
	return recs, nil
}

// ParseResourceValue converts one JSON value for resource res at p.
func ParseResourceValue(res *model.Resource, p lwm2m.Path, v any) ([]lwm2m.Record, error) {
	return resourceRecords(res, p, v)
}

func resourceRecords(res *model.Resource, p lwm2m.Path, v any) ([]lwm2m.Record, error) {
	if !res.Multiple || p.Depth == lwm2m.DepthResourceInstance {
		x, err := typedValue(res.Type, v)
		if err != nil {
			return nil, err
		}
		return []lwm2m.Record{{Path: p, Value: x}}, nil
	}
	var recs []lwm2m.Record
	add := func(id uint16, raw any) error {
		x, err := typedValue(res.Type, raw)
		if err != nil {
			return err
		}
		recs = append(recs, lwm2m.Record{Path: lwm2m.ResourceInstancePath(p.Object, p.Instance, p.Resource, id), Value: x})
		return nil
	}
	switch vals := v.(type) {
	case []any:
		for i, raw := range vals {
			if err := add(uint16(i), raw); err != nil {
				return nil, err
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(vals))
		for k := range vals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			id, err := strconv.ParseUint(k, 10, 16)
			if err != nil || id == 65535 {
				return nil, fmt.Errorf("hypermedia: resource instance id %q", k)
			}
			if err := add(uint16(id), vals[k]); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("hypermedia: %s is multiple: want an array or object", res.SerialisationName)
	}
	return recs, nil
}

// typedValue converts a JSON value (json.Number, string, bool) to the Go
// type of t; strings holding numbers are accepted for numeric types.
func typedValue(t lwm2m.DataType, v any) (any, error) {
	num := func() (json.Number, bool) {
		switch x := v.(type) {
		case json.Number:
			return x, true
		case string:
			return json.Number(strings.TrimSpace(x)), true
		case float64:
			return json.Number(strconv.FormatFloat(x, 'g', -1, 64)), true
		}
		return "", false
	}
	switch t {
	case lwm2m.TypeString, lwm2m.TypeCoreLink:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case lwm2m.TypeInteger:
		if n, ok := num(); ok {
			if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
				return i, nil
			}
		}
	case lwm2m.TypeUnsignedInteger:
		if n, ok := num(); ok {
			if u, err := strconv.ParseUint(string(n), 10, 64); err == nil {
				return u, nil
			}
		}
	case lwm2m.TypeFloat:
		if n, ok := num(); ok {
			if f, err := strconv.ParseFloat(string(n), 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
				return f, nil
			}
		}
	case lwm2m.TypeBoolean:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string: // XML bodies carry every value as text
			if b, err := strconv.ParseBool(x); err == nil {
				return b, nil
			}
		}
	case lwm2m.TypeOpaque:
		if s, ok := v.(string); ok {
			if b, err := base64.StdEncoding.DecodeString(s); err == nil {
				return b, nil
			}
		}
	case lwm2m.TypeTime:
		switch x := v.(type) {
		case string:
			if tm, err := time.Parse(time.RFC3339, x); err == nil {
				return tm.UTC(), nil
			}
			// Unix seconds as text, as XML carries the JSON number form.
			if i, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
				return time.Unix(i, 0).UTC(), nil
			}
		case json.Number:
			if i, err := x.Int64(); err == nil {
				return time.Unix(i, 0).UTC(), nil
			}
		}
	case lwm2m.TypeObjectLink:
		if s, ok := v.(string); ok {
			o, i, found := strings.Cut(s, ":")
			ov, err1 := strconv.ParseUint(o, 10, 16)
			iv, err2 := strconv.ParseUint(i, 10, 16)
			if found && err1 == nil && err2 == nil {
				return lwm2m.ObjectLink{Object: uint16(ov), Instance: uint16(iv)}, nil
			}
		}
	}
	return nil, fmt.Errorf("hypermedia: %v is not a valid %s", v, t)
}

// Definitions looks up object definitions as an organisation sees them.
type Definitions interface {
	Lookup(org string, id uint16) (*model.Object, bool)
}

// NotificationValue returns a renderer of notification values: the
// records' fields keyed by SerialisationName, as in an instance representation.
func NotificationValue(defs Definitions) func(org string, p lwm2m.Path, recs []lwm2m.Record) any {
	return func(org string, p lwm2m.Path, recs []lwm2m.Record) any {
		def, _ := defs.Lookup(org, p.Object)
		return ResourceFields(def, recs)
	}
}
