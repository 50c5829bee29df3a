package codec

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// sampleValues returns, for each data type, values that exercise its edges
// (integer width boundaries, negative zero, extreme floats, binary data...).
func sampleValues(t lwm2m.DataType) []any {
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	switch t {
	case lwm2m.TypeString:
		return []any{"", "Open Mobile Alliance", "é ✓ \"q\" \\ \n\t\x01 </>"}
	case lwm2m.TypeCoreLink:
		return []any{"</3/0>;ver=1.1,</1/0>", `</>;rt="oma.lwm2m"`}
	case lwm2m.TypeInteger:
		return []any{int64(0), int64(-1), int64(127), int64(-128), int64(128), int64(-129), int64(32767),
			int64(-32768), int64(32768), int64(math.MaxInt32), int64(math.MinInt32), int64(math.MaxInt32) + 1,
			int64(math.MaxInt64), int64(math.MinInt64)}
	case lwm2m.TypeUnsignedInteger:
		return []any{uint64(0), uint64(255), uint64(256), uint64(65535), uint64(65536), uint64(math.MaxUint32),
			uint64(math.MaxUint32) + 1, uint64(math.MaxUint64)}
	case lwm2m.TypeFloat:
		return []any{0.0, math.Copysign(0, -1), 22.5, 0.1, -1e-7, 1e21, math.MaxFloat64,
			math.SmallestNonzeroFloat64, float64(math.MaxFloat32), -123456.789}
	case lwm2m.TypeBoolean:
		return []any{true, false}
	case lwm2m.TypeOpaque:
		return []any{[]byte{}, []byte{0}, allBytes}
	case lwm2m.TypeTime:
		return []any{time.Unix(0, 0).UTC(), time.Unix(1367491215, 0).UTC(), time.Unix(-1, 0).UTC(), time.Unix(1<<40, 0).UTC()}
	case lwm2m.TypeObjectLink:
		return []any{lwm2m.ObjectLink{}, lwm2m.ObjectLink{Object: 3}, lwm2m.ObjectLink{Object: 65535, Instance: 65535}}
	}
	return nil
}

// TestRoundTrip encodes records of every data type in every format that can
// carry them, at every path depth the format allows, and decodes them back.
func TestRoundTrip(t *testing.T) {
	res := testResolver()
	type shape struct {
		name string
		base lwm2m.Path
		recs []lwm2m.Record
	}
	var shapes []shape
	var instance, object []lwm2m.Record
	for i, typ := range allTypes {
		single, multi := uint16(i), uint16(10+i)
		var multiRecs []lwm2m.Record
		for j, v := range sampleValues(typ) {
			p := rp(9000, 0, single)
			shapes = append(shapes, shape{fmt.Sprintf("%s/%d/resource", typ, j), p, []lwm2m.Record{rec(p, v)}})
			ip := rip(9000, 0, multi, uint16(j*100))
			shapes = append(shapes, shape{fmt.Sprintf("%s/%d/resource-instance", typ, j), ip, []lwm2m.Record{rec(ip, v)}})
			multiRecs = append(multiRecs, rec(ip, v))
		}
		shapes = append(shapes, shape{fmt.Sprintf("%s/multiple", typ), rp(9000, 0, multi), multiRecs})
		instance = append(instance, rec(rp(9000, 0, single), sampleValues(typ)[0]))
		instance = append(instance, multiRecs...)
	}
	sortRecords(instance)
	object = append(object, instance...)
	for _, r := range instance {
		r.Path.Instance = 7
		object = append(object, r)
	}
	shapes = append(shapes,
		shape{"instance", lwm2m.InstancePath(9000, 0), instance},
		shape{"object", lwm2m.ObjectPath(9000), object})

	formats := []lwm2m.ContentFormat{lwm2m.FormatText, lwm2m.FormatOpaque, lwm2m.FormatTLV, lwm2m.FormatSenMLJSON}
	for _, f := range formats {
		for _, s := range shapes {
			single := len(s.recs) == 1 && s.recs[0].Path == s.base
			_, isBytes := s.recs[0].Value.([]byte)
			switch {
			case f == lwm2m.FormatText && !single, f == lwm2m.FormatOpaque && !(single && isBytes):
				continue
			}
			t.Run(fmt.Sprintf("%s/%s", formatName(f), s.name), func(t *testing.T) {
				b, err := Encode(f, s.base, s.recs, res)
				if err != nil {
					t.Fatalf("Encode: %v", err)
				}
				got, err := Decode(f, s.base, b, res)
				if err != nil {
					t.Fatalf("Decode(%q): %v", b, err)
				}
				checkRecords(t, got, s.recs)
			})
		}
	}
}

// TestRoundTripTLVNonFinite covers the float values only TLV can carry.
func TestRoundTripTLVNonFinite(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		p := rp(3303, 0, 5700)
		b, err := Encode(lwm2m.FormatTLV, p, []lwm2m.Record{rec(p, f)}, testResolver())
		if err != nil {
			t.Fatalf("Encode(%v): %v", f, err)
		}
		got, err := Decode(lwm2m.FormatTLV, p, b, testResolver())
		if err != nil {
			t.Fatalf("Decode(%v): %v", f, err)
		}
		checkRecords(t, got, []lwm2m.Record{rec(p, f)})
	}
}
