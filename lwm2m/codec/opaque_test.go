package codec

import (
	"bytes"
	"strings"
	"testing"

	"github.com/deviceserver/deviceserver/lwm2m"
)

func TestOpaque(t *testing.T) {
	fw := []byte{0x00, 0xff, 0x10}
	tests := []struct {
		name string
		base lwm2m.Path
		r    lwm2m.Resolver
	}{
		{"firmware package", rp(5, 0, 0), testResolver()},
		{"unknown resource", rp(5, 0, 99), testResolver()},
		{"nil resolver", rp(5, 0, 0), nil},
		{"multiple opaque instance", rip(9000, 0, 15, 3), testResolver()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(lwm2m.FormatOpaque, tc.base, fw, tc.r)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			checkRecords(t, got, []lwm2m.Record{rec(tc.base, fw)})
			enc, err := Encode(lwm2m.FormatOpaque, tc.base, got, tc.r)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(enc, fw) {
				t.Fatalf("Encode = % x, want % x", enc, fw)
			}
		})
	}
}

func TestOpaqueErrors(t *testing.T) {
	tests := []struct {
		name   string
		decode bool
		base   lwm2m.Path
		recs   []lwm2m.Record
		want   string
	}{
		{"decode string resource", true, rp(3, 0, 0), nil, "carries only Opaque"},
		{"decode instance path", true, lwm2m.InstancePath(5, 0), nil, "single resource value"},
		{"decode multiple resource", true, rp(9000, 0, 15), nil, "multiple resource"},
		{"encode string resource", false, rp(3, 0, 0), []lwm2m.Record{rec(rp(3, 0, 0), "x")}, "not Opaque"},
		{"encode string value", false, rp(5, 0, 0), []lwm2m.Record{rec(rp(5, 0, 0), "x")}, "not a valid Opaque"},
		{"encode unknown non-bytes", false, rp(7, 0, 0), []lwm2m.Record{rec(rp(7, 0, 0), int64(1))}, "not Opaque"},
		{"encode no record", false, rp(5, 0, 0), nil, "exactly one record"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			prefix := "codec: encode opaque: "
			if tc.decode {
				prefix = "codec: decode opaque: "
				_, err = Decode(lwm2m.FormatOpaque, tc.base, []byte{1}, testResolver())
			} else {
				_, err = Encode(lwm2m.FormatOpaque, tc.base, tc.recs, testResolver())
			}
			if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want prefix %q and %q", err, prefix, tc.want)
			}
		})
	}
}
