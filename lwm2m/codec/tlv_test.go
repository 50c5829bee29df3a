package codec

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
)

func TestDecodeTLV(t *testing.T) {
	res := testResolver()
	tests := []struct {
		name    string
		base    lwm2m.Path
		payload string
		r       lwm2m.Resolver
		want    []lwm2m.Record
	}{
		{"single resource", rp(3, 0, 9), "C1 09 64", res, []lwm2m.Record{rec(rp(3, 0, 9), int64(100))}},
		{"non-minimal 8-bit length", rp(3, 0, 9), "C8 09 01 64", res, []lwm2m.Record{rec(rp(3, 0, 9), int64(100))}},
		{"16-bit length field", rp(3, 0, 0), "D0 00 00 02 68 69", res, []lwm2m.Record{rec(rp(3, 0, 0), "hi")}},
		{"24-bit length field", rp(3, 0, 0), "D8 00 00 00 02 68 69", res, []lwm2m.Record{rec(rp(3, 0, 0), "hi")}},
		{"2-byte integer", rp(3, 0, 9), "C2 09 FF 38", res, []lwm2m.Record{rec(rp(3, 0, 9), int64(-200))}},
		{"4-byte integer", rp(3, 0, 9), "C4 09 FF FF FF FF", res, []lwm2m.Record{rec(rp(3, 0, 9), int64(-1))}},
		{"8-byte integer", rp(3, 0, 9), "C8 09 08 7F FF FF FF FF FF FF FF", res,
			[]lwm2m.Record{rec(rp(3, 0, 9), int64(1<<63-1))}},
		{"unsigned 1 byte high bit", rp(9000, 0, 2), "C1 02 FF", res, []lwm2m.Record{rec(rp(9000, 0, 2), uint64(255))}},
		{"unsigned 8 bytes", rp(9000, 0, 2), "C8 02 08 FF FF FF FF FF FF FF FF", res,
			[]lwm2m.Record{rec(rp(9000, 0, 2), uint64(1<<64-1))}},
		{"float32 with 16-bit resource id", rp(3303, 0, 5700), "E4 16 44 41 B4 00 00", res,
			[]lwm2m.Record{rec(rp(3303, 0, 5700), 22.5)}},
		{"float64", rp(3303, 0, 5700), "E8 16 44 08 3F B9 99 99 99 99 99 9A", res,
			[]lwm2m.Record{rec(rp(3303, 0, 5700), 0.1)}},
		{"boolean", rp(1, 0, 6), "C1 06 00", res, []lwm2m.Record{rec(rp(1, 0, 6), false)}},
		{"time", rp(3, 0, 13), "C4 0D 51 82 42 8F", res, []lwm2m.Record{rec(rp(3, 0, 13), time.Unix(1367491215, 0))}},
		{"opaque", rp(5, 0, 0), "C3 00 01 02 03", res, []lwm2m.Record{rec(rp(5, 0, 0), []byte{1, 2, 3})}},
		{"empty string", rp(3, 0, 0), "C0 00", res, []lwm2m.Record{rec(rp(3, 0, 0), "")}},
		{"multiple resource", rp(3, 0, 6), "86 06 41 00 01 41 01 05", res,
			[]lwm2m.Record{rec(rip(3, 0, 6, 0), int64(1)), rec(rip(3, 0, 6, 1), int64(5))}},
		{"bare resource instances", rp(3, 0, 6), "41 00 01 41 01 05", res,
			[]lwm2m.Record{rec(rip(3, 0, 6, 0), int64(1)), rec(rip(3, 0, 6, 1), int64(5))}},
		{"empty multiple resource", rp(3, 0, 6), "80 06", res, nil},
		{"resource instance", rip(3, 0, 6, 1), "41 01 05", res, []lwm2m.Record{rec(rip(3, 0, 6, 1), int64(5))}},
		{"unknown resource is opaque", rp(3, 0, 99), "C1 63 2A", res, []lwm2m.Record{rec(rp(3, 0, 99), []byte{42})}},
		{"nil resolver", lwm2m.InstancePath(3, 0), "C1 09 64 83 0B 41 00 00", nil,
			[]lwm2m.Record{rec(rp(3, 0, 9), []byte{100}), rec(rip(3, 0, 11, 0), []byte{0})}},
		{"empty instance", lwm2m.InstancePath(3, 0), "", res, nil},
		{"empty object", lwm2m.ObjectPath(3), "", res, nil},
		{"wrapped instance", lwm2m.InstancePath(1, 3), "03 03 C1 00 05", res, []lwm2m.Record{rec(rp(1, 3, 0), int64(5))}},
		{"object without instance wrapper", lwm2m.ObjectPath(1), "C1 00 05 C1 07 55", res,
			[]lwm2m.Record{rec(rp(1, 0, 0), int64(5)), rec(rp(1, 0, 7), "U")}},
		{"16-bit instance id", lwm2m.ObjectPath(1), "23 01 00 C1 00 05", res, []lwm2m.Record{rec(rp(1, 256, 0), int64(5))}},
		{"length bits ignored with a length field", rp(3, 0, 9), "CF 09 01 64", res, []lwm2m.Record{rec(rp(3, 0, 9), int64(100))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(lwm2m.FormatTLV, tc.base, mustHex(t, tc.payload), tc.r)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			checkRecords(t, got, tc.want)
		})
	}
}

func TestDecodeTLVErrors(t *testing.T) {
	tests := []struct {
		name    string
		base    lwm2m.Path
		payload string
		want    string // part of the error
	}{
		{"root path", lwm2m.Path{}, "C1 09 64", "TLV needs"},
		{"truncated header", rp(3, 0, 9), "C1", "header truncated"},
		{"truncated 16-bit id", rp(3, 0, 9), "E1 00", "header truncated"},
		{"truncated length field", rp(3, 0, 9), "D0 09 00", "header truncated"},
		{"value overruns payload", rp(3, 0, 9), "C2 09 64", "overruns"},
		{"length field overruns", rp(3, 0, 9), "C8 09 05 64", "overruns"},
		{"reserved id", rp(3, 0, 9), "E1 FF FF 64", "reserved"},
		{"empty at resource", rp(3, 0, 9), "", "empty payload"},
		{"wrong resource id", rp(3, 0, 9), "C1 0A 64", "has id 10"},
		{"two resource TLVs at resource", rp(3, 0, 9), "C1 09 64 C1 09 64", "want one resource TLV"},
		{"object instance at resource", rp(3, 0, 9), "01 09 64", "object instance"},
		{"3-byte integer", rp(3, 0, 9), "C3 09 00 00 01", "integer of 3 bytes"},
		{"empty integer", rp(3, 0, 9), "C0 09", "integer of 0 bytes"},
		{"5-byte unsigned", rp(9000, 0, 2), "C5 02 00 00 00 00 01", "unsigned integer of 5 bytes"},
		{"2-byte float", rp(3303, 0, 5700), "E2 16 44 00 00", "float of 2 bytes"},
		{"boolean 2", rp(1, 0, 6), "C1 06 02", "boolean"},
		{"boolean 2 bytes", rp(1, 0, 6), "C2 06 00 01", "boolean"},
		{"short object link", rp(66, 0, 2), "C3 02 00 43 00", "object link of 3 bytes"},
		{"short time", rp(3, 0, 13), "C3 0D 51 82 42", "integer of 3 bytes"},
		{"executable with value", rp(3, 0, 4), "C1 04 01", "carries no value"},
		{"multiple TLV for single resource", rp(3, 0, 9), "83 09 41 00 64", "single-instance"},
		{"instances for single resource", rp(3, 0, 9), "41 00 64", "single-instance"},
		{"single TLV for multiple resource", rp(3, 0, 6), "C1 06 01", "multiple resource"},
		{"resource TLV inside multiple", rp(3, 0, 6), "83 06 C1 00 01", "among resource instances"},
		{"duplicate resource instance", rp(3, 0, 6), "86 06 41 00 01 41 00 05", "appears twice"},
		{"broken multiple body", rp(3, 0, 6), "82 06 41 00", "overruns"},
		{"resource instance at instance", lwm2m.InstancePath(3, 0), "41 00 01", "among resources"},
		{"object instance inside instance", lwm2m.InstancePath(3, 0), "C1 09 64 03 00 C1 09 64", "among resources"},
		{"duplicate resource", lwm2m.InstancePath(3, 0), "C1 09 64 C1 09 63", "appears twice"},
		{"single and multiple same id", lwm2m.InstancePath(9000, 0), "C1 63 01 83 63 41 00 01", "appears twice"},
		{"wrapper with other id", lwm2m.InstancePath(1, 0), "03 01 C1 00 05", "does not match"},
		{"broken wrapper body", lwm2m.InstancePath(1, 0), "02 00 C1 00", "overruns"},
		{"duplicate instance", lwm2m.ObjectPath(1), "03 00 C1 00 05 03 00 C1 00 06", "appears twice"},
		{"resource among instances", lwm2m.ObjectPath(1), "03 00 C1 00 05 C1 00 05", "among object instance"},
		{"instance among resources", lwm2m.ObjectPath(1), "C1 00 05 03 00 C1 00 05", "among resources"},
		{"broken instance body", lwm2m.ObjectPath(1), "02 00 C1 00", "overruns"},
		{"bad value in instance", lwm2m.ObjectPath(1), "03 00 C1 06 05", "boolean"},
		{"resource instance wrong id", rip(3, 0, 6, 1), "41 00 05", "exactly one resource instance"},
		{"resource TLV at resource instance", rip(3, 0, 6, 1), "C1 06 05", "exactly one resource instance"},
		{"resource instance of single resource", rip(3, 0, 9, 0), "41 00 05", "single-instance"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(lwm2m.FormatTLV, tc.base, mustHex(t, tc.payload), testResolver())
			if err == nil {
				t.Fatalf("Decode = %s, want error containing %q", dumpRecords(got), tc.want)
			}
			if !strings.HasPrefix(err.Error(), "codec: decode TLV: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want prefix \"codec: decode TLV: \" and %q", err, tc.want)
			}
		})
	}
}

func TestEncodeTLV(t *testing.T) {
	res := testResolver()
	long := strings.Repeat("x", 300)
	huge := bytes.Repeat([]byte{7}, 70000)
	tests := []struct {
		name string
		base lwm2m.Path
		recs []lwm2m.Record
		r    lwm2m.Resolver
		want string // hex of the expected payload, or of its first bytes when prefix is set
		pre  bool
	}{
		{"smallest integer widths", lwm2m.InstancePath(9000, 0), []lwm2m.Record{
			rec(rip(9000, 0, 11, 0), int64(127)), rec(rip(9000, 0, 11, 1), int64(-128)),
			rec(rip(9000, 0, 11, 2), int64(128)), rec(rip(9000, 0, 11, 3), int64(-32769)),
			rec(rip(9000, 0, 11, 4), int64(1<<31)),
		}, res, "88 0B 1B 41 00 7F 41 01 80 42 02 00 80 44 03 FF FF 7F FF 48 04 08 00 00 00 00 80 00 00 00", false},
		{"unsigned widths", lwm2m.InstancePath(9000, 0), []lwm2m.Record{
			rec(rip(9000, 0, 12, 0), uint64(255)), rec(rip(9000, 0, 12, 1), uint64(256)),
			rec(rip(9000, 0, 12, 2), uint64(1<<16)), rec(rip(9000, 0, 12, 3), uint64(1<<32)),
		}, res, "88 0C 18 41 00 FF 42 01 01 00 44 02 00 01 00 00 48 03 08 00 00 00 01 00 00 00 00", false},
		{"float32 when lossless, else float64", lwm2m.InstancePath(3303, 0), []lwm2m.Record{
			rec(rp(3303, 0, 5700), 22.5),
		}, res, "E4 16 44 41 B4 00 00", false},
		{"float64", rp(3303, 0, 5700), []lwm2m.Record{rec(rp(3303, 0, 5700), 0.1)}, res,
			"E8 16 44 08 3F B9 99 99 99 99 99 9A", false},
		{"int converted for float resource", rp(3303, 0, 5700), []lwm2m.Record{rec(rp(3303, 0, 5700), 3)}, res,
			"E4 16 44 40 40 00 00", false},
		{"sorted canonical output", lwm2m.InstancePath(3, 0), []lwm2m.Record{
			rec(rip(3, 0, 6, 1), int64(5)), rec(rp(3, 0, 9), int64(100)), rec(rip(3, 0, 6, 0), int64(1)),
		}, res, "86 06 41 00 01 41 01 05 C1 09 64", false},
		{"16-bit resource instance id", rp(2, 0, 2), []lwm2m.Record{rec(rip(2, 0, 2, 310), int64(1))}, res,
			"84 02 61 01 36 01", false},
		{"empty multiple resource", rp(3, 0, 6), nil, res, "80 06", false},
		{"empty unknown resource", rp(3, 0, 99), nil, nil, "80 63", false},
		{"resource instance", rip(3, 0, 6, 1), []lwm2m.Record{rec(rip(3, 0, 6, 1), int64(5))}, res, "41 01 05", false},
		{"16-bit length", rp(3, 0, 0), []lwm2m.Record{rec(rp(3, 0, 0), long)}, res, "D0 00 01 2C 78 78", true},
		{"24-bit length", rp(5, 0, 0), []lwm2m.Record{rec(rp(5, 0, 0), huge)}, res, "D8 00 01 11 70 07 07", true},
		{"unknown resources by Go type", lwm2m.InstancePath(7, 0), []lwm2m.Record{
			rec(rp(7, 0, 0), "a"), rec(rp(7, 0, 1), int64(-1)), rec(rp(7, 0, 2), true),
			rec(rp(7, 0, 3), lwm2m.ObjectLink{Object: 1, Instance: 2}),
		}, nil, "C1 00 61 C1 01 FF C1 02 01 C4 03 00 01 00 02", false},
		{"object level wraps instances", lwm2m.ObjectPath(1), []lwm2m.Record{
			rec(rp(1, 1, 0), int64(2)), rec(rp(1, 0, 0), int64(1)),
		}, res, "03 00 C1 00 01 03 01 C1 00 02", false},
		{"empty object", lwm2m.ObjectPath(1), nil, res, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(lwm2m.FormatTLV, tc.base, tc.recs, tc.r)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			want := mustHex(t, tc.want)
			if tc.pre && len(got) > len(want) {
				got = got[:len(want)]
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Encode\n got % X\nwant % X", got, want)
			}
		})
	}
}

func TestEncodeTLVErrors(t *testing.T) {
	tests := []struct {
		name string
		base lwm2m.Path
		recs []lwm2m.Record
		want string
	}{
		{"root path", lwm2m.Path{}, []lwm2m.Record{rec(rp(3, 0, 9), int64(1))}, "TLV needs"},
		{"outside base", lwm2m.InstancePath(3, 0), []lwm2m.Record{rec(rp(3, 1, 9), int64(1))}, "not under"},
		{"instance-level record", lwm2m.ObjectPath(3), []lwm2m.Record{rec(lwm2m.InstancePath(3, 0), int64(1))}, "resource or resource-instance"},
		{"duplicate", lwm2m.InstancePath(3, 0), []lwm2m.Record{rec(rp(3, 0, 9), int64(1)), rec(rp(3, 0, 9), int64(2))}, "appears twice"},
		{"value and instances", lwm2m.InstancePath(7, 0), []lwm2m.Record{rec(rp(7, 0, 1), int64(1)), rec(rip(7, 0, 1, 0), int64(2))}, "both a value and resource instances"},
		{"single value of multiple resource", lwm2m.InstancePath(3, 0), []lwm2m.Record{rec(rp(3, 0, 6), int64(1))}, "multiple resource"},
		{"instance of single resource", lwm2m.InstancePath(3, 0), []lwm2m.Record{rec(rip(3, 0, 9, 0), int64(1))}, "single-instance"},
		{"wrong Go type", rp(3, 0, 9), []lwm2m.Record{rec(rp(3, 0, 9), "100")}, "not a valid Integer"},
		{"unrepresentable Go type", rp(7, 0, 0), []lwm2m.Record{rec(rp(7, 0, 0), struct{}{})}, "no LwM2M representation"},
		{"nil value", rp(7, 0, 0), []lwm2m.Record{rec(rp(7, 0, 0), nil)}, "no LwM2M representation"},
		{"executable", rp(3, 0, 4), []lwm2m.Record{rec(rp(3, 0, 4), int64(1))}, "type None"},
		{"two at resource instance", rip(3, 0, 6, 0), []lwm2m.Record{rec(rip(3, 0, 6, 0), int64(1)), rec(rip(3, 0, 6, 0), int64(1))}, "appears twice"},
		{"none at resource instance", rip(3, 0, 6, 0), nil, "exactly one record"},
		{"none for single resource", rp(3, 0, 9), nil, "no record for single resource"},
		{"too long", rp(5, 0, 0), []lwm2m.Record{rec(rp(5, 0, 0), make([]byte, 1<<24))}, "exceeds the TLV maximum"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(lwm2m.FormatTLV, tc.base, tc.recs, testResolver())
			if err == nil {
				t.Fatalf("Encode = % X, want error containing %q", got, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "codec: encode TLV: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want prefix \"codec: encode TLV: \" and %q", err, tc.want)
			}
		})
	}
}
