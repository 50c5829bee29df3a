// Package codec encodes and decodes LwM2M payloads in every content format
// the server speaks, typed by the object model through an lwm2m.Resolver.
// One file per format; Encode and Decode dispatch on the content format.
//
// Every function takes the request's path as base: payloads are relative to
// it (a TLV read of /3/0 carries resource TLVs, a SenML base name is built
// from it) and records outside it are rejected. Records always carry full
// paths, depth 3 for single resources and depth 4 for resource instances.
package codec

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// ErrUnsupportedFormat is wrapped by Encode and Decode for content formats
// this package does not implement.
var ErrUnsupportedFormat = errors.New("codec: unsupported content format")

// Supported reports whether Encode and Decode implement f.
func Supported(f lwm2m.ContentFormat) bool {
	switch f {
	case lwm2m.FormatText, lwm2m.FormatOpaque, lwm2m.FormatTLV, lwm2m.FormatTLVLegacy, lwm2m.FormatSenMLJSON:
		return true
	}
	return false
}

// Encode renders recs, all at or below base, in content format f.
// r may be nil, in which case values are written according to their Go type.
func Encode(f lwm2m.ContentFormat, base lwm2m.Path, recs []lwm2m.Record, r lwm2m.Resolver) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	switch f {
	case lwm2m.FormatText:
		b, err = encodeText(base, recs, r)
	case lwm2m.FormatOpaque:
		b, err = encodeOpaque(base, recs, r)
	case lwm2m.FormatTLV, lwm2m.FormatTLVLegacy:
		b, err = encodeTLV(base, recs, r)
	case lwm2m.FormatSenMLJSON:
		b, err = encodeSenMLJSON(base, recs, r)
	default:
		return nil, fmt.Errorf("codec: encode: content format %d: %w", f, ErrUnsupportedFormat)
	}
	if err != nil {
		return nil, fmt.Errorf("codec: encode %s: %w", formatName(f), err)
	}
	return b, nil
}

// Decode parses payload, the answer to (or body of) a request on base, in
// content format f. r may be nil: every resource is then unknown and typed
// by what the format itself says (string for text, []byte for TLV, the
// value field for SenML).
func Decode(f lwm2m.ContentFormat, base lwm2m.Path, payload []byte, r lwm2m.Resolver) ([]lwm2m.Record, error) {
	var (
		recs []lwm2m.Record
		err  error
	)
	switch f {
	case lwm2m.FormatText:
		recs, err = decodeText(base, payload, r)
	case lwm2m.FormatOpaque:
		recs, err = decodeOpaque(base, payload, r)
	case lwm2m.FormatTLV, lwm2m.FormatTLVLegacy:
		recs, err = decodeTLV(base, payload, r)
	case lwm2m.FormatSenMLJSON:
		recs, err = decodeSenMLJSON(base, payload, r)
	default:
		return nil, fmt.Errorf("codec: decode: content format %d: %w", f, ErrUnsupportedFormat)
	}
	if err != nil {
		return nil, fmt.Errorf("codec: decode %s: %w", formatName(f), err)
	}
	return recs, nil
}

func formatName(f lwm2m.ContentFormat) string {
	switch f {
	case lwm2m.FormatText:
		return "text"
	case lwm2m.FormatOpaque:
		return "opaque"
	case lwm2m.FormatTLV, lwm2m.FormatTLVLegacy:
		return "TLV"
	case lwm2m.FormatSenMLJSON:
		return "SenML JSON"
	}
	return strconv.Itoa(int(f))
}

// resInfo is what the resolver says about one resource.
type resInfo struct {
	typ      lwm2m.DataType
	multiple bool
	known    bool
}

func lookup(r lwm2m.Resolver, p lwm2m.Path) resInfo {
	if r == nil {
		return resInfo{}
	}
	t, m, ok := r.ResourceType(p.Object, p.Resource)
	if !ok {
		return resInfo{}
	}
	return resInfo{typ: t, multiple: m, known: true}
}

// checkShape rejects a value at p that contradicts the model: a depth-3
// value for a multiple resource or a depth-4 value for a single one. Both
// directions are checked on encode and decode so that whatever decodes
// also re-encodes.
func checkShape(ri resInfo, p lwm2m.Path) error {
	if !ri.known {
		return nil
	}
	if p.Depth == lwm2m.DepthResource && ri.multiple {
		return fmt.Errorf("%s is a multiple resource: values must be at resource-instance paths", p)
	}
	if p.Depth == lwm2m.DepthResourceInstance && !ri.multiple {
		return fmt.Errorf("%s: resource %d of object %d is single-instance", p, p.Resource, p.Object)
	}
	return nil
}

// prepareRecords validates recs for encoding below base and returns a copy
// whose values have the Go type of the resource (or of themselves when the
// resource is unknown).
func prepareRecords(base lwm2m.Path, recs []lwm2m.Record, r lwm2m.Resolver) ([]lwm2m.Record, error) {
	out := make([]lwm2m.Record, len(recs))
	for i, rec := range recs {
		p := rec.Path
		if p.Depth != lwm2m.DepthResource && p.Depth != lwm2m.DepthResourceInstance {
			return nil, fmt.Errorf("record %s: values need a resource or resource-instance path", p)
		}
		if !base.Contains(p) {
			return nil, fmt.Errorf("record %s is not under %s", p, base)
		}
		ri := lookup(r, p)
		if err := checkShape(ri, p); err != nil {
			return nil, err
		}
		v, err := normalizeValue(ri, rec.Value)
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", p, err)
		}
		out[i] = lwm2m.Record{Path: p, Value: v}
	}
	return out, nil
}

// normalizeValue converts v to the Go type of the resource's data type.
// Small Go integer and float kinds are widened as a convenience for callers
// building records by hand.
func normalizeValue(ri resInfo, v any) (any, error) {
	switch x := v.(type) {
	case int:
		v = int64(x)
	case int8:
		v = int64(x)
	case int16:
		v = int64(x)
	case int32:
		v = int64(x)
	case uint:
		v = uint64(x)
	case uint8:
		v = uint64(x)
	case uint16:
		v = uint64(x)
	case uint32:
		v = uint64(x)
	case float32:
		v = float64(x)
	}
	if ri.known {
		if ri.typ == lwm2m.TypeNone {
			return nil, fmt.Errorf("resource has no value (type None)")
		}
		return lwm2m.CoerceValue(ri.typ, v)
	}
	switch v.(type) {
	case string, int64, uint64, float64, bool, []byte, time.Time, lwm2m.ObjectLink:
		return v, nil
	}
	return nil, fmt.Errorf("value %v of Go type %T has no LwM2M representation", v, v)
}

// singleRecord checks the shape text and opaque payloads allow: exactly one
// record, at base, which is a resource or resource instance.
func singleRecord(base lwm2m.Path, recs []lwm2m.Record, r lwm2m.Resolver) (lwm2m.Record, resInfo, error) {
	if err := needValuePath(base); err != nil {
		return lwm2m.Record{}, resInfo{}, err
	}
	if len(recs) != 1 {
		return lwm2m.Record{}, resInfo{}, fmt.Errorf("need exactly one record, got %d", len(recs))
	}
	if recs[0].Path != base {
		return lwm2m.Record{}, resInfo{}, fmt.Errorf("record %s is not at %s", recs[0].Path, base)
	}
	out, err := prepareRecords(base, recs, r)
	if err != nil {
		return lwm2m.Record{}, resInfo{}, err
	}
	return out[0], lookup(r, base), nil
}

func needValuePath(base lwm2m.Path) error {
	if base.Depth != lwm2m.DepthResource && base.Depth != lwm2m.DepthResourceInstance {
		return fmt.Errorf("path %s: format carries a single resource value, need a resource or resource-instance path", base)
	}
	return nil
}

// parseObjectLink parses the "object:instance" form text and SenML use.
func parseObjectLink(s string) (lwm2m.ObjectLink, error) {
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return lwm2m.ObjectLink{}, fmt.Errorf("object link %q: want object:instance", s)
	}
	o, err1 := strconv.ParseUint(s[:i], 10, 16)
	n, err2 := strconv.ParseUint(s[i+1:], 10, 16)
	if err1 != nil || err2 != nil {
		return lwm2m.ObjectLink{}, fmt.Errorf("object link %q: ids must be 0..65535", s)
	}
	return lwm2m.ObjectLink{Object: uint16(o), Instance: uint16(n)}, nil
}

// formatFloat writes f the way JSON encoders do (plain decimal, exponent
// only for very large or small magnitudes), which is valid for both SenML
// JSON and LwM2M plain text.
func formatFloat(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", fmt.Errorf("float %v cannot be represented", f)
	}
	fmtc := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		fmtc = 'e'
	}
	return strconv.FormatFloat(f, fmtc, -1, 64), nil
}

// sortRecords orders records by path, a resource before its instances,
// so that formats which group by instance and resource can do so in one pass.
func sortRecords(recs []lwm2m.Record) {
	slices.SortStableFunc(recs, func(a, b lwm2m.Record) int { return comparePath(a.Path, b.Path) })
}

func comparePath(a, b lwm2m.Path) int {
	ka := [5]int{int(a.Object), int(a.Instance), int(a.Resource), int(a.Depth), int(a.ResourceInstance)}
	kb := [5]int{int(b.Object), int(b.Instance), int(b.Resource), int(b.Depth), int(b.ResourceInstance)}
	return slices.Compare(ka[:], kb[:])
}
