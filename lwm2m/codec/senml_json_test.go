package codec

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
)

func TestDecodeSenMLJSON(t *testing.T) {
	res := testResolver()
	temp := rp(3303, 0, 5700)
	tests := []struct {
		name    string
		base    lwm2m.Path
		payload string
		r       lwm2m.Resolver
		want    []lwm2m.Record
	}{
		{"empty pack", lwm2m.ObjectPath(3), `[]`, res, nil},
		{"time series keeps every value", temp,
			`[{"bn":"/3303/0/5700","bt":1367491215,"v":22.4},{"t":5,"v":22.9},{"t":10,"v":23.1}]`, res,
			[]lwm2m.Record{rec(temp, 22.4), rec(temp, 22.9), rec(temp, 23.1)}},
		{"full names without bn", lwm2m.Path{}, `[{"n":"/3/0/9","v":100},{"n":"/3303/0/5700","v":-5.5}]`, res,
			[]lwm2m.Record{rec(rp(3, 0, 9), int64(100)), rec(temp, -5.5)}},
		{"bn changes mid-pack", lwm2m.Path{}, `[{"bn":"/3/0/","n":"9","v":1},{"bn":"/3303/0/","n":"5700","v":2}]`, res,
			[]lwm2m.Record{rec(rp(3, 0, 9), int64(1)), rec(temp, 2.0)}},
		{"base value added", lwm2m.Path{}, `[{"bn":"/3303/0/","bv":20,"n":"5700","v":1.5},{"bn":"/3/0/","n":"9","v":5}]`, res,
			[]lwm2m.Record{rec(temp, 21.5), rec(rp(3, 0, 9), int64(25))}},
		{"integer from exponent form", rp(3, 0, 9), `[{"bn":"/3/0/9","v":1.0e2}]`, res, []lwm2m.Record{rec(rp(3, 0, 9), int64(100))}},
		{"integer beyond 2^53 exact", rp(3, 0, 9), `[{"bn":"/3/0/9","v":9007199254740993}]`, res,
			[]lwm2m.Record{rec(rp(3, 0, 9), int64(9007199254740993))}},
		{"unsigned max", rp(9000, 0, 2), `[{"bn":"/9000/0/2","v":18446744073709551615}]`, res,
			[]lwm2m.Record{rec(rp(9000, 0, 2), uint64(math.MaxUint64))}},
		{"time", rp(3, 0, 13), `[{"bn":"/3/0/13","v":1367491215}]`, res,
			[]lwm2m.Record{rec(rp(3, 0, 13), time.Unix(1367491215, 0))}},
		{"opaque unpadded base64url", rp(5, 0, 0), `[{"bn":"/5/0/0","vd":"-_8"}]`, res, []lwm2m.Record{rec(rp(5, 0, 0), []byte{0xfb, 0xff})}},
		{"opaque padded", rp(5, 0, 0), `[{"bn":"/5/0/0","vd":"-_8="}]`, res, []lwm2m.Record{rec(rp(5, 0, 0), []byte{0xfb, 0xff})}},
		{"opaque standard alphabet", rp(5, 0, 0), `[{"bn":"/5/0/0","vd":"+/8="}]`, res, []lwm2m.Record{rec(rp(5, 0, 0), []byte{0xfb, 0xff})}},
		{"opaque empty", rp(5, 0, 0), `[{"bn":"/5/0/0","vd":""}]`, res, []lwm2m.Record{rec(rp(5, 0, 0), []byte{})}},
		{"boolean", rp(1, 0, 6), `[{"bn":"/1/0/6","vb":true}]`, res, []lwm2m.Record{rec(rp(1, 0, 6), true)}},
		{"object link instances", rp(3, 0, 22), `[{"bn":"/3/0/22/","n":"0","vlo":"3:1"},{"n":"1","vlo":"4:0"}]`, res,
			[]lwm2m.Record{rec(rip(3, 0, 22, 0), lwm2m.ObjectLink{Object: 3, Instance: 1}), rec(rip(3, 0, 22, 1), lwm2m.ObjectLink{Object: 4})}},
		{"core link is a string", rp(9000, 0, 8), `[{"bn":"/9000/0/8","vs":"</3/0>"}]`, res, []lwm2m.Record{rec(rp(9000, 0, 8), "</3/0>")}},
		{"unknown resources typed by field", lwm2m.InstancePath(7, 0),
			`[{"bn":"/7/0/","n":"0","v":3},{"n":"1","vs":"x"},{"n":"2","vb":false},{"n":"3","vd":"AQI"},{"n":"4","vlo":"1:2"}]`, res,
			[]lwm2m.Record{rec(rp(7, 0, 0), 3.0), rec(rp(7, 0, 1), "x"), rec(rp(7, 0, 2), false),
				rec(rp(7, 0, 3), []byte{1, 2}), rec(rp(7, 0, 4), lwm2m.ObjectLink{Object: 1, Instance: 2})}},
		{"nil resolver", lwm2m.InstancePath(3, 0), `[{"bn":"/3/0/","n":"9","v":100},{"n":"13","v":1367491215}]`, nil,
			[]lwm2m.Record{rec(rp(3, 0, 9), 100.0), rec(rp(3, 0, 13), 1367491215.0)}},
		{"ignored fields", rp(3303, 0, 5700),
			`[{"bver":10,"bu":"Cel","bn":"/3303/0/5700","u":"Cel","ut":60,"x":{"y":[1,null]},"v":1}]`, res,
			[]lwm2m.Record{rec(temp, 1.0)}},
		{"whitespace", rp(3, 0, 9), " [ { \"bn\" : \"/3/0/9\" , \"v\" : 100 } ]\n", res, []lwm2m.Record{rec(rp(3, 0, 9), int64(100))}},
		{"escaped string", rp(3, 0, 0), `[{"bn":"/3/0/0","vs":"a\"b\\c\u00e9\n"}]`, res, []lwm2m.Record{rec(rp(3, 0, 0), "a\"b\\c\u00e9\n")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(lwm2m.FormatSenMLJSON, tc.base, []byte(tc.payload), tc.r)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			checkRecords(t, got, tc.want)
		})
	}
}

func TestDecodeSenMLJSONErrors(t *testing.T) {
	tests := []struct {
		name    string
		base    lwm2m.Path
		payload string
		want    string
	}{
		{"empty payload", lwm2m.ObjectPath(3), ``, "invalid JSON"},
		{"not an array", lwm2m.ObjectPath(3), `{"n":"/3/0/9","v":1}`, "want '['"},
		{"not JSON", lwm2m.ObjectPath(3), `[{"n":"/3/0/9","v":1},]`, "invalid JSON"},
		{"unterminated", lwm2m.ObjectPath(3), `[{"n":"/3/0/9","v":1}`, "invalid JSON"},
		{"trailing data", lwm2m.ObjectPath(3), `[{"n":"/3/0/9","v":1}] []`, "data after"},
		{"array element not object", lwm2m.ObjectPath(3), `[1]`, "want '{'"},
		{"outside base", lwm2m.InstancePath(3, 0), `[{"n":"/3/1/9","v":1}]`, "not under /3/0"},
		{"name not a path", lwm2m.Path{}, `[{"n":"temperature","v":1}]`, "not an LwM2M path"},
		{"bad path id", lwm2m.Path{}, `[{"bn":"/3/0","n":"9","v":1}]`, "invalid id"},
		{"empty segment", lwm2m.Path{}, `[{"bn":"/3/0/","n":"/9","v":1}]`, "invalid id"},
		{"instance path", lwm2m.Path{}, `[{"n":"/3/0","v":1}]`, "resource or resource-instance"},
		{"no name", lwm2m.Path{}, `[{"v":1}]`, "not an LwM2M path"},
		{"two value fields", rp(3, 0, 9), `[{"n":"/3/0/9","v":1,"vs":"1"}]`, "more than one value"},
		{"no value", rp(3, 0, 9), `[{"n":"/3/0/9"}]`, "no value field"},
		{"duplicate key", rp(3, 0, 9), `[{"n":"/3/0/9","v":1,"v":2}]`, "appears twice"},
		{"vs for integer", rp(3, 0, 9), `[{"n":"/3/0/9","vs":"1"}]`, `needs "v"`},
		{"v for string", rp(3, 0, 0), `[{"n":"/3/0/0","v":1}]`, `needs "vs"`},
		{"fraction for integer", rp(3, 0, 9), `[{"n":"/3/0/9","v":1.5}]`, "not an integer"},
		{"integer out of range", rp(3, 0, 9), `[{"n":"/3/0/9","v":9223372036854775808}]`, "not an integer"},
		{"integer overflow with bv", rp(3, 0, 9), `[{"n":"/3/0/9","bv":9223372036854775807,"v":1}]`, "not an integer"},
		{"negative unsigned", rp(9000, 0, 2), `[{"n":"/9000/0/2","v":-1}]`, "not an unsigned"},
		{"unsigned overflow with bv", rp(9000, 0, 2), `[{"n":"/9000/0/2","bv":18446744073709551615,"v":1}]`, "not an unsigned"},
		{"fractional time", rp(3, 0, 13), `[{"n":"/3/0/13","v":1.5}]`, "not an integer"},
		{"huge number", rp(3303, 0, 5700), `[{"n":"/3303/0/5700","v":1e999}]`, "out of range"},
		{"huge time field", rp(3303, 0, 5700), `[{"n":"/3303/0/5700","t":1e999,"v":1}]`, "out of range"},
		{"bad base64", rp(5, 0, 0), `[{"n":"/5/0/0","vd":"!!"}]`, "not base64url"},
		{"bad object link", rp(66, 0, 2), `[{"n":"/66/0/2","vlo":"67"}]`, "object:instance"},
		{"object link out of range", rp(66, 0, 2), `[{"n":"/66/0/2","vlo":"67:65536"}]`, "0..65535"},
		{"sum", rp(3303, 0, 5700), `[{"n":"/3303/0/5700","s":1}]`, "sum"},
		{"must-understand field", rp(3303, 0, 5700), `[{"n":"/3303/0/5700","v":1,"foo_":1}]`, "must-understand"},
		{"bn not a string", lwm2m.Path{}, `[{"bn":3,"n":"/3/0/9","v":1}]`, `"bn": want a string, got a number`},
		{"v is a string", rp(3, 0, 9), `[{"n":"/3/0/9","v":"1"}]`, `"v": want a number, got a string`},
		{"vb null", rp(1, 0, 6), `[{"n":"/1/0/6","vb":null}]`, `"vb": want a boolean, got null`},
		{"t is an array", rp(3, 0, 9), `[{"n":"/3/0/9","v":1,"t":[1]}]`, "got an array"},
		{"executable", rp(3, 0, 4), `[{"n":"/3/0/4","vs":""}]`, "type None"},
		{"single value of multiple resource", rp(3, 0, 6), `[{"n":"/3/0/6","v":1}]`, "multiple resource"},
		{"instance of single resource", rp(3, 0, 9), `[{"n":"/3/0/9/0","v":1}]`, "single-instance"},
		{"error names the record", lwm2m.ObjectPath(3), `[{"n":"/3/0/9","v":1},{"n":"/3/0/9","v":"x"}]`, "record 1:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(lwm2m.FormatSenMLJSON, tc.base, []byte(tc.payload), testResolver())
			if err == nil {
				t.Fatalf("Decode = %s, want error containing %q", dumpRecords(got), tc.want)
			}
			if !strings.HasPrefix(err.Error(), "codec: decode SenML JSON: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want prefix \"codec: decode SenML JSON: \" and %q", err, tc.want)
			}
		})
	}
}

func TestEncodeSenMLJSON(t *testing.T) {
	res := testResolver()
	temp := rp(3303, 0, 5700)
	tests := []struct {
		name string
		base lwm2m.Path
		recs []lwm2m.Record
		r    lwm2m.Resolver
		want string
	}{
		{"empty", lwm2m.InstancePath(3, 0), nil, res, `[]`},
		{"root base uses full names", lwm2m.Path{}, []lwm2m.Record{rec(rp(3, 0, 9), int64(100)), rec(temp, 22.5)}, res,
			`[{"n":"/3/0/9","v":100},{"n":"/3303/0/5700","v":22.5}]`},
		{"object base", lwm2m.ObjectPath(3303), []lwm2m.Record{rec(temp, 22.5), rec(rp(3303, 1, 5700), 1e-7)}, res,
			`[{"bn":"/3303/","n":"0/5700","v":22.5},{"n":"1/5700","v":1e-07}]`},
		{"time series at base", temp, []lwm2m.Record{rec(temp, 1.0), rec(temp, -0.5)}, res,
			`[{"bn":"/3303/0/5700","v":1},{"v":-0.5}]`},
		{"resource instance base", rip(3, 0, 7, 1), []lwm2m.Record{rec(rip(3, 0, 7, 1), int64(5000))}, res,
			`[{"bn":"/3/0/7/1","v":5000}]`},
		{"value and instances of an unknown resource", rp(7, 0, 1), []lwm2m.Record{rec(rp(7, 0, 1), "a"), rec(rip(7, 0, 1, 0), "b")}, nil,
			`[{"bn":"/7/0/1","vs":"a"},{"n":"/0","vs":"b"}]`},
		{"every kind", lwm2m.InstancePath(9000, 0), []lwm2m.Record{
			rec(rp(9000, 0, 0), "<\"é\">\x01"), rec(rp(9000, 0, 1), int64(math.MinInt64)), rec(rp(9000, 0, 2), uint64(math.MaxUint64)),
			rec(rp(9000, 0, 3), 1e21), rec(rp(9000, 0, 4), true), rec(rp(9000, 0, 5), []byte{0xfb, 0xff}),
			rec(rp(9000, 0, 6), time.Unix(-1, 0)), rec(rp(9000, 0, 7), lwm2m.ObjectLink{Object: 65535, Instance: 65535}),
			rec(rp(9000, 0, 8), "</3/0>"),
		}, res, `[{"bn":"/9000/0/","n":"0","vs":"<\"é\">\u0001"},{"n":"1","v":-9223372036854775808},` +
			`{"n":"2","v":18446744073709551615},{"n":"3","v":1e+21},{"n":"4","vb":true},{"n":"5","vd":"-_8"},` +
			`{"n":"6","v":-1},{"n":"7","vlo":"65535:65535"},{"n":"8","vs":"</3/0>"}]`},
		{"input order kept", lwm2m.InstancePath(3, 0), []lwm2m.Record{rec(rp(3, 0, 9), int64(1)), rec(rp(3, 0, 0), "x")}, res,
			`[{"bn":"/3/0/","n":"9","v":1},{"n":"0","vs":"x"}]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(lwm2m.FormatSenMLJSON, tc.base, tc.recs, tc.r)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("Encode\n got %s\nwant %s", got, tc.want)
			}
			back, err := Decode(lwm2m.FormatSenMLJSON, tc.base, got, tc.r)
			if err != nil {
				t.Fatalf("Decode(Encode): %v", err)
			}
			if tc.r != nil {
				checkRecords(t, back, tc.recs)
			}
		})
	}
}

func TestEncodeSenMLJSONErrors(t *testing.T) {
	tests := []struct {
		name string
		base lwm2m.Path
		recs []lwm2m.Record
		want string
	}{
		{"NaN", rp(3303, 0, 5700), []lwm2m.Record{rec(rp(3303, 0, 5700), math.NaN())}, "cannot be represented"},
		{"infinity", rp(3303, 0, 5700), []lwm2m.Record{rec(rp(3303, 0, 5700), math.Inf(1))}, "cannot be represented"},
		{"invalid UTF-8", rp(3, 0, 0), []lwm2m.Record{rec(rp(3, 0, 0), "\xff")}, "UTF-8"},
		{"outside base", rp(3, 0, 0), []lwm2m.Record{rec(rp(3, 0, 1), "x")}, "not under"},
		{"wrong Go type", rp(3, 0, 9), []lwm2m.Record{rec(rp(3, 0, 9), true)}, "not a valid Integer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(lwm2m.FormatSenMLJSON, tc.base, tc.recs, testResolver())
			if err == nil {
				t.Fatalf("Encode = %s, want error containing %q", got, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "codec: encode SenML JSON: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want prefix \"codec: encode SenML JSON: \" and %q", err, tc.want)
			}
		})
	}
}
