package codec

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
)

func TestDecodeText(t *testing.T) {
	res := testResolver()
	tests := []struct {
		name    string
		base    lwm2m.Path
		payload string
		r       lwm2m.Resolver
		want    any
	}{
		{"string", rp(3, 0, 0), "Open Mobile Alliance", res, "Open Mobile Alliance"},
		{"string keeps spaces", rp(3, 0, 0), " a \n", res, " a \n"},
		{"empty string", rp(3, 0, 0), "", res, ""},
		{"integer", rp(3, 0, 9), "100", res, int64(100)},
		{"negative integer", rp(3, 0, 9), "-9223372036854775808", res, int64(math.MinInt64)},
		{"integer with newline", rp(3, 0, 9), "42\n", res, int64(42)},
		{"unsigned", rp(9000, 0, 2), "18446744073709551615", res, uint64(math.MaxUint64)},
		{"float", rp(3303, 0, 5700), "22.5", res, 22.5},
		{"float exponent", rp(3303, 0, 5700), "-1.5e-7", res, -1.5e-7},
		{"float integral", rp(3303, 0, 5700), "3", res, 3.0},
		{"boolean 1", rp(1, 0, 6), "1", res, true},
		{"boolean 0", rp(1, 0, 6), "0", res, false},
		{"boolean true", rp(1, 0, 6), "true", res, true},
		{"boolean false", rp(1, 0, 6), "false", res, false},
		{"time", rp(3, 0, 13), "1367491215", res, time.Unix(1367491215, 0)},
		{"object link", rp(66, 0, 2), "67:0", res, lwm2m.ObjectLink{Object: 67}},
		{"opaque base64", rp(5, 0, 0), "AQID", res, []byte{1, 2, 3}},
		{"opaque unpadded", rp(5, 0, 0), "AQI", res, []byte{1, 2}},
		{"opaque padded", rp(5, 0, 0), "AQI=", res, []byte{1, 2}},
		{"core link", rp(9000, 0, 8), "</3/0>;ver=1.1", res, "</3/0>;ver=1.1"},
		{"resource instance", rip(3, 0, 7, 1), "5000", res, int64(5000)},
		{"unknown resource is string", rp(3, 0, 99), "100", res, "100"},
		{"nil resolver", rp(3, 0, 9), "100", nil, "100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(lwm2m.FormatText, tc.base, []byte(tc.payload), tc.r)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			checkRecords(t, got, []lwm2m.Record{rec(tc.base, tc.want)})
		})
	}
}

func TestDecodeTextErrors(t *testing.T) {
	tests := []struct {
		name    string
		base    lwm2m.Path
		payload string
		want    string
	}{
		{"instance path", lwm2m.InstancePath(3, 0), "x", "single resource value"},
		{"invalid UTF-8", rp(3, 0, 0), "\xff", "UTF-8"},
		{"integer", rp(3, 0, 9), "1.5", "integer value"},
		{"integer overflow", rp(3, 0, 9), "9223372036854775808", "integer value"},
		{"empty integer", rp(3, 0, 9), "", "integer value"},
		{"negative unsigned", rp(9000, 0, 2), "-1", "unsigned integer value"},
		{"float", rp(3303, 0, 5700), "abc", "float value"},
		{"NaN", rp(3303, 0, 5700), "NaN", "not a finite"},
		{"infinity", rp(3303, 0, 5700), "+Inf", "not a finite"},
		{"float overflow", rp(3303, 0, 5700), "1e999", "float value"},
		{"boolean", rp(1, 0, 6), "2", "want 0 or 1"},
		{"time", rp(3, 0, 13), "2013-05-02T10:40:15Z", "Unix seconds"},
		{"object link", rp(66, 0, 2), "67", "object:instance"},
		{"object link range", rp(66, 0, 2), "-1:0", "0..65535"},
		{"opaque", rp(5, 0, 0), "!!", "not base64"},
		{"executable", rp(3, 0, 4), "", "no text value"},
		{"multiple resource", rp(3, 0, 6), "1", "multiple resource"},
		{"instance of single resource", rip(3, 0, 9, 0), "1", "single-instance"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(lwm2m.FormatText, tc.base, []byte(tc.payload), testResolver())
			if err == nil {
				t.Fatalf("Decode = %s, want error containing %q", dumpRecords(got), tc.want)
			}
			if !strings.HasPrefix(err.Error(), "codec: decode text: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want prefix \"codec: decode text: \" and %q", err, tc.want)
			}
		})
	}
}

func TestEncodeText(t *testing.T) {
	res := testResolver()
	tests := []struct {
		name string
		base lwm2m.Path
		v    any
		r    lwm2m.Resolver
		want string
	}{
		{"string", rp(3, 0, 0), "Open Mobile Alliance", res, "Open Mobile Alliance"},
		{"integer", rp(3, 0, 9), int64(-5), res, "-5"},
		{"int widened", rp(3, 0, 9), 7, res, "7"},
		{"unsigned", rp(9000, 0, 2), uint64(math.MaxUint64), res, "18446744073709551615"},
		{"float", rp(3303, 0, 5700), 22.5, res, "22.5"},
		{"float integral", rp(3303, 0, 5700), 3.0, res, "3"},
		{"float large", rp(3303, 0, 5700), 1e300, res, "1e+300"},
		{"float from integer", rp(3303, 0, 5700), int64(2), res, "2"},
		{"boolean", rp(1, 0, 6), true, res, "1"},
		{"boolean false", rp(1, 0, 6), false, res, "0"},
		{"time", rp(3, 0, 13), time.Unix(1367491215, 0), res, "1367491215"},
		{"time from integer", rp(3, 0, 13), int64(1367491215), res, "1367491215"},
		{"object link", rp(66, 0, 2), lwm2m.ObjectLink{Object: 67, Instance: 1}, res, "67:1"},
		{"opaque", rp(5, 0, 0), []byte{1, 2, 3}, res, "AQID"},
		{"unknown by Go type", rp(7, 0, 0), uint8(200), nil, "200"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(lwm2m.FormatText, tc.base, []lwm2m.Record{rec(tc.base, tc.v)}, tc.r)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("Encode = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEncodeTextErrors(t *testing.T) {
	tests := []struct {
		name string
		base lwm2m.Path
		recs []lwm2m.Record
		want string
	}{
		{"no record", rp(3, 0, 0), nil, "exactly one record"},
		{"two records", rp(3, 0, 0), []lwm2m.Record{rec(rp(3, 0, 0), "a"), rec(rp(3, 0, 0), "b")}, "exactly one record"},
		{"record elsewhere", rp(3, 0, 0), []lwm2m.Record{rec(rp(3, 0, 1), "a")}, "not at /3/0/0"},
		{"instance path", lwm2m.InstancePath(3, 0), []lwm2m.Record{rec(rp(3, 0, 0), "a")}, "single resource value"},
		{"NaN", rp(3303, 0, 5700), []lwm2m.Record{rec(rp(3303, 0, 5700), math.NaN())}, "cannot be represented"},
		{"wrong type", rp(1, 0, 6), []lwm2m.Record{rec(rp(1, 0, 6), "1")}, "not a valid Boolean"},
		{"multiple resource", rp(3, 0, 6), []lwm2m.Record{rec(rp(3, 0, 6), int64(1))}, "multiple resource"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(lwm2m.FormatText, tc.base, tc.recs, testResolver())
			if err == nil {
				t.Fatalf("Encode = %q, want error containing %q", got, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "codec: encode text: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want prefix \"codec: encode text: \" and %q", err, tc.want)
			}
		})
	}
}
