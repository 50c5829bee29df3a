package hypermedia

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/model"
)

const testOrg = "org-a"

// testRegistry has the built-ins plus object 30000 of testOrg, which has a
// writable resource of every data type.
func testRegistry(t testing.TB) *model.Registry {
	t.Helper()
	b, err := model.Builtins()
	if err != nil {
		t.Fatalf("built-ins: %v", err)
	}
	reg := model.NewRegistry(b)
	reg.Put(testOrg, &model.Object{ID: 30000, Name: "All Types", MultipleInstances: true,
		MIMEType: "application/vnd.oma.lwm2m.alltypes", SerialisationName: "AllTypes", Resources: []*model.Resource{
			{ID: 0, Name: "Text", SerialisationName: "Text", Operations: "RW", Type: lwm2m.TypeString},
			{ID: 1, Name: "Count", SerialisationName: "Count", Operations: "RW", Type: lwm2m.TypeInteger},
			{ID: 2, Name: "Size", SerialisationName: "Size", Operations: "RW", Type: lwm2m.TypeUnsignedInteger},
			{ID: 3, Name: "Level", SerialisationName: "Level", Operations: "RW", Type: lwm2m.TypeFloat},
			{ID: 4, Name: "On", SerialisationName: "On", Operations: "RW", Type: lwm2m.TypeBoolean},
			{ID: 5, Name: "Blob", SerialisationName: "Blob", Operations: "RW", Type: lwm2m.TypeOpaque},
			{ID: 6, Name: "When", SerialisationName: "When", Operations: "RW", Type: lwm2m.TypeTime},
			{ID: 7, Name: "Link", SerialisationName: "Link", Operations: "RW", Type: lwm2m.TypeObjectLink},
			{ID: 8, Name: "Links", SerialisationName: "CoreLinks", Operations: "RW", Type: lwm2m.TypeCoreLink},
			{ID: 9, Name: "Counts", SerialisationName: "Counts", Operations: "RW", Type: lwm2m.TypeInteger, Multiple: true},
			{ID: 10, Name: "Fire", SerialisationName: "Fire", Operations: "E", Type: lwm2m.TypeNone},
			{ID: 11, Name: "Serial", SerialisationName: "Serial", Operations: "R", Type: lwm2m.TypeString},
		}})
	return reg
}

func lookup(t testing.TB, reg *model.Registry, id uint16) *model.Object {
	t.Helper()
	o, ok := reg.Lookup(testOrg, id)
	if !ok {
		t.Fatalf("no definition of object %d", id)
	}
	return o
}

func rec(p lwm2m.Path, v any) lwm2m.Record { return lwm2m.Record{Path: p, Value: v} }

func res(r uint16) lwm2m.Path { return lwm2m.ResourcePath(3, 0, r) }

func ri(r, i uint16) lwm2m.Path { return lwm2m.ResourceInstancePath(3, 0, r, i) }

func TestResourceFields(t *testing.T) {
	reg := testRegistry(t)
	device := lookup(t, reg, 3)
	all := lookup(t, reg, 30000)
	at := func(r uint16) lwm2m.Path { return lwm2m.ResourcePath(30000, 0, r) }
	cet := time.FixedZone("CET", 3600)
	tests := []struct {
		name string
		def  *model.Object
		recs []lwm2m.Record
		want string
	}{
		{"no records", device, nil, `{}`},
		{"definition order, not record order", device,
			[]lwm2m.Record{rec(res(9), int64(87)), rec(res(14), "+01:00"), rec(res(0), "Acme"), rec(res(1), "X1")},
			`{"Manufacturer":"Acme","ModelNumber":"X1","BatteryLevel":87,"UTCOffset":"+01:00"}`},
		{"dense multiple resource is an array", device,
			[]lwm2m.Record{rec(ri(6, 1), int64(5)), rec(res(0), "Acme"), rec(ri(6, 0), int64(1))},
			`{"Manufacturer":"Acme","AvailablePowerSources":[1,5]}`},
		{"several multiple resources", device,
			[]lwm2m.Record{rec(ri(7, 0), int64(3800)), rec(ri(6, 0), int64(1)), rec(ri(7, 1), int64(5000)), rec(ri(6, 1), int64(5))},
			`{"AvailablePowerSources":[1,5],"PowerSourceVoltage":[3800,5000]}`},
		{"sparse multiple resource is an object keyed by id", device,
			[]lwm2m.Record{rec(ri(11, 7), int64(2)), rec(ri(11, 2), int64(1))},
			`{"ErrorCode":{"2":1,"7":2}}`},
		{"single instance not at 0 is sparse", device,
			[]lwm2m.Record{rec(ri(11, 1), int64(0))},
			`{"ErrorCode":{"1":0}}`},
		{"time in RFC 3339 UTC", device,
			[]lwm2m.Record{rec(res(13), time.Date(2026, 11, 22, 5, 6, 7, 0, cet))},
			`{"CurrentTime":"2026-11-22T04:06:07Z"}`},
		{"object links as o:i", device,
			[]lwm2m.Record{rec(ri(22, 0), lwm2m.ObjectLink{Object: 3, Instance: 1}), rec(ri(22, 1), lwm2m.ObjectLink{Object: 65535, Instance: 65535})},
			`{"ExtDevInfo":["3:1","65535:65535"]}`},
		{"unknown resources keyed by id, after known ones", device,
			[]lwm2m.Record{rec(res(9999), "x"), rec(res(100), int64(1)), rec(res(0), "Acme")},
			`{"Manufacturer":"Acme","100":1,"9999":"x"}`},
		{"no definition: every resource keyed by id", nil,
			[]lwm2m.Record{rec(res(5), true), rec(res(1), "b"), rec(ri(2, 0), int64(1))},
			`{"1":"b","2":[1],"5":true}`},
		{"every type", all, []lwm2m.Record{
			rec(at(11), "S1"), rec(at(8), "</3/0>"), rec(at(7), lwm2m.ObjectLink{Object: 3, Instance: 0}),
			rec(at(6), time.Unix(0, 0)), rec(at(5), []byte("hello")), rec(at(4), false), rec(at(3), 21.5),
			rec(at(2), uint64(math.MaxUint64)), rec(at(1), int64(-3)), rec(at(0), "a<b>&c"),
		}, `{"Text":"a<b>&c","Count":-3,"Size":18446744073709551615,"Level":21.5,"On":false,"Blob":"aGVsbG8=",` +
			`"When":"1970-01-01T00:00:00Z","Link":"3:0","CoreLinks":"</3/0>","Serial":"S1"}`},
		{"empty opaque", all, []lwm2m.Record{rec(at(5), []byte{})}, `{"Blob":""}`},
		{"non-finite floats are strings", all, []lwm2m.Record{rec(at(3), math.Inf(1))}, `{"Level":"+Inf"}`},
		{"NaN is a string", all, []lwm2m.Record{rec(at(3), math.NaN())}, `{"Level":"NaN"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := ResourceFields(tt.def, tt.recs)
			enc := &strings.Builder{}
			e := json.NewEncoder(enc)
			e.SetEscapeHTML(false) // as the server writes
			if err := e.Encode(obj); err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal([]byte(enc.String()), &got); err != nil {
				t.Fatalf("invalid JSON %s: %v", enc, err)
			}
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %s\nwant %s", enc, tt.want)
			}
			// Member order is part of the contract.
			var names []string
			for _, f := range obj {
				names = append(names, f.Name)
			}
			if wantNames := keysInOrder(t, tt.want); !slices.Equal(names, wantNames) {
				t.Errorf("member order %v, want %v", names, wantNames)
			}
		})
	}
}

// keysInOrder lists the top-level member names of a JSON object in order.
func keysInOrder(t *testing.T, s string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	var names []string
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

func TestNotificationValue(t *testing.T) {
	render := NotificationValue(testRegistry(t))
	got := render(testOrg, lwm2m.ResourcePath(3303, 0, 5700), []lwm2m.Record{rec(lwm2m.ResourcePath(3303, 0, 5700), 21.5)})
	b, _ := json.Marshal(got)
	if string(b) != `{"SensorValue":21.5}` {
		t.Errorf("notification value %s", b)
	}
	got = render(testOrg, lwm2m.ResourcePath(42424, 0, 1), []lwm2m.Record{rec(lwm2m.ResourcePath(42424, 0, 1), "x")})
	if b, _ = json.Marshal(got); string(b) != `{"1":"x"}` {
		t.Errorf("unknown object notification value %s", b)
	}
}

// body decodes a request body as the server does (UseNumber).
func body(t testing.TB, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

func TestParseResourceFields(t *testing.T) {
	reg := testRegistry(t)
	device := lookup(t, reg, 3)
	server := lookup(t, reg, 1)
	all := lookup(t, reg, 30000)
	at := func(r uint16) lwm2m.Path { return lwm2m.ResourcePath(30000, 4, r) }
	atRI := func(r, i uint16) lwm2m.Path { return lwm2m.ResourceInstancePath(30000, 4, r, i) }
	srv := func(r uint16) lwm2m.Path { return lwm2m.ResourcePath(1, 4, r) }
	dev := func(r uint16) lwm2m.Path { return lwm2m.ResourcePath(3, 4, r) }
	tests := []struct {
		name   string
		def    *model.Object
		body   string
		create bool
		want   []lwm2m.Record
		bad    []string // the FieldError's fields, in order; nil when valid
	}{
		{"empty body", device, `{}`, false, nil, nil},
		{"InstanceID and Links are ignored", device, `{"InstanceID":"4","Links":[{"rel":"self"}],"UTCOffset":"+01:00"}`, false,
			[]lwm2m.Record{rec(dev(14), "+01:00")}, nil},
		{"several writable resources", device, `{"UTCOffset":"+01:00","Timezone":"Europe/Paris"}`, false,
			[]lwm2m.Record{rec(dev(14), "+01:00"), rec(dev(15), "Europe/Paris")}, nil},
		{"names are case-insensitive", device, `{"utcoffset":"Z"}`, false, []lwm2m.Record{rec(dev(14), "Z")}, nil},
		{"resource ID as the name", device, `{"14":"Z"}`, false, []lwm2m.Record{rec(dev(14), "Z")}, nil},
		{"RFC 3339 time in UTC", device, `{"CurrentTime":"2026-11-22T05:06:07+01:00"}`, false,
			[]lwm2m.Record{rec(dev(13), time.Date(2026, 11, 22, 4, 6, 7, 0, time.UTC))}, nil},
		{"time as Unix seconds", device, `{"CurrentTime":1700000000}`, false,
			[]lwm2m.Record{rec(dev(13), time.Unix(1700000000, 0).UTC())}, nil},
		{"read-only on write", device, `{"Manufacturer":"Acme"}`, false, nil, []string{"Manufacturer"}},
		{"read-only on create", device, `{"Manufacturer":"Acme","BatteryLevel":"90"}`, true,
			[]lwm2m.Record{rec(dev(9), int64(90)), rec(dev(0), "Acme")}, nil},
		{"executable on write", device, `{"Reboot":""}`, false, nil, []string{"Reboot"}},
		{"executable on create", device, `{"Reboot":null}`, true, nil, []string{"Reboot"}},
		{"unknown field", device, `{"Colour":"red"}`, false, nil, []string{"Colour"}},
		{"unknown resource ID", device, `{"9999":1}`, true, nil, []string{"9999"}},
		{"every bad field is listed", device,
			`{"Colour":"red","Reboot":"","Manufacturer":"Acme","CurrentTime":true,"UTCOffset":5,"Timezone":"UTC"}`, false, nil,
			[]string{"Colour", "CurrentTime", "Manufacturer", "Reboot", "UTCOffset"}},
		{"string for a string", device, `{"UTCOffset":5}`, false, nil, []string{"UTCOffset"}},
		{"bad time", device, `{"CurrentTime":"yesterday"}`, false, nil, []string{"CurrentTime"}},
		{"time without zone", device, `{"CurrentTime":"2026-11-22T05:06:07"}`, false, nil, []string{"CurrentTime"}},
		{"fractional Unix time", device, `{"CurrentTime":1.5}`, false, nil, []string{"CurrentTime"}},

		{"integer", server, `{"Lifetime":300}`, false, []lwm2m.Record{rec(srv(1), int64(300))}, nil},
		{"numeric string for an integer", server, `{"Lifetime":" 300 "}`, false, []lwm2m.Record{rec(srv(1), int64(300))}, nil},
		{"negative integer", server, `{"Lifetime":-1}`, false, []lwm2m.Record{rec(srv(1), int64(-1))}, nil},
		{"fraction for an integer", server, `{"Lifetime":3.5}`, false, nil, []string{"Lifetime"}},
		{"word for an integer", server, `{"Lifetime":"five"}`, false, nil, []string{"Lifetime"}},
		{"boolean for an integer", server, `{"Lifetime":true}`, false, nil, []string{"Lifetime"}},
		{"integer overflow", server, `{"Lifetime":9223372036854775808}`, false, nil, []string{"Lifetime"}},
		{"boolean", server, `{"NotificationStoringWhenDisabledOrOffline":true}`, false, []lwm2m.Record{rec(srv(6), true)}, nil},
		{"non-boolean string for a boolean", server, `{"NotificationStoringWhenDisabledOrOffline":"yes"}`, false, nil,
			[]string{"NotificationStoringWhenDisabledOrOffline"}},
		{"number for a boolean", server, `{"NotificationStoringWhenDisabledOrOffline":1}`, false, nil,
			[]string{"NotificationStoringWhenDisabledOrOffline"}},
		{"object link", server, `{"APNLink":"11:2"}`, false, []lwm2m.Record{rec(srv(10), lwm2m.ObjectLink{Object: 11, Instance: 2})}, nil},
		{"object link without instance", server, `{"APNLink":"11"}`, false, nil, []string{"APNLink"}},
		{"object link out of range", server, `{"APNLink":"70000:1"}`, false, nil, []string{"APNLink"}},
		{"object link as a number", server, `{"APNLink":11}`, false, nil, []string{"APNLink"}},
		{"resources without operations are not writable", server, `{"RegistrationPriorityOrder":1}`, false, nil,
			[]string{"RegistrationPriorityOrder"}},

		{"unsigned", all, `{"Size":"18446744073709551615"}`, false, []lwm2m.Record{rec(at(2), uint64(math.MaxUint64))}, nil},
		{"negative unsigned", all, `{"Size":-1}`, false, nil, []string{"Size"}},
		{"float", all, `{"Level":21.5}`, false, []lwm2m.Record{rec(at(3), 21.5)}, nil},
		{"numeric string for a float", all, `{"Level":"-0.25e1"}`, false, []lwm2m.Record{rec(at(3), -2.5)}, nil},
		{"integer for a float", all, `{"Level":7}`, false, []lwm2m.Record{rec(at(3), 7.0)}, nil},
		{"NaN for a float", all, `{"Level":"NaN"}`, false, nil, []string{"Level"}},
		{"infinite float", all, `{"Level":1e400}`, false, nil, []string{"Level"}},
		{"base64 opaque", all, `{"Blob":"aGVsbG8="}`, false, []lwm2m.Record{rec(at(5), []byte("hello"))}, nil},
		{"empty opaque", all, `{"Blob":""}`, false, []lwm2m.Record{rec(at(5), []byte{})}, nil},
		{"opaque not base64", all, `{"Blob":"not base64!"}`, false, nil, []string{"Blob"}},
		{"opaque as a number", all, `{"Blob":12}`, false, nil, []string{"Blob"}},
		{"core link", all, `{"CoreLinks":"</3/0>"}`, false, []lwm2m.Record{rec(at(8), "</3/0>")}, nil},
		{"multiple as an array", all, `{"Counts":[1,"2",3]}`, false,
			[]lwm2m.Record{rec(atRI(9, 0), int64(1)), rec(atRI(9, 1), int64(2)), rec(atRI(9, 2), int64(3))}, nil},
		{"multiple as an object keyed by id", all, `{"Counts":{"7":1,"3":2}}`, false,
			[]lwm2m.Record{rec(atRI(9, 3), int64(2)), rec(atRI(9, 7), int64(1))}, nil},
		{"empty multiple", all, `{"Counts":[]}`, false, nil, nil},
		{"multiple with a bad element", all, `{"Counts":[1,"x"]}`, false, nil, []string{"Counts"}},
		{"multiple with a bad id", all, `{"Counts":{"a":1}}`, false, nil, []string{"Counts"}},
		{"multiple with id 65535", all, `{"Counts":{"65535":1}}`, false, nil, []string{"Counts"}},
		{"scalar for a multiple", all, `{"Counts":1}`, false, nil, []string{"Counts"}},
		{"array for a single", all, `{"Count":[1]}`, false, nil, []string{"Count"}},
		{"object for a single", all, `{"Text":{"a":"b"}}`, false, nil, []string{"Text"}},
		{"null for a single", all, `{"Text":null}`, false, nil, []string{"Text"}},
		{"read-only of a custom object", all, `{"Serial":"x","Fire":"y","Text":"ok"}`, false, nil, []string{"Fire", "Serial"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResourceFields(tt.def, 4, body(t, tt.body), tt.create)
			if tt.bad != nil {
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("got %v, %v; want a *FieldError", got, err)
				}
				if !slices.Equal(fe.Fields, tt.bad) {
					t.Errorf("invalid fields %v, want %v", fe.Fields, tt.bad)
				}
				for _, f := range tt.bad {
					if !strings.Contains(fe.Error(), f) {
						t.Errorf("error %q does not name %s", fe, f)
					}
				}
				if got != nil {
					t.Errorf("records %v returned with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseResourceFields: %v", err)
			}
			sortRecords(got)
			sortRecords(tt.want)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("records\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func sortRecords(rs []lwm2m.Record) {
	slices.SortFunc(rs, func(a, b lwm2m.Record) int { return strings.Compare(a.Path.String(), b.Path.String()) })
}

func TestParseResourceValue(t *testing.T) {
	all := lookup(t, testRegistry(t), 30000)
	counts, _ := all.Resource(9)
	// A resource-instance path takes one value of the element type.
	p := lwm2m.ResourceInstancePath(30000, 0, 9, 4)
	got, err := ParseResourceValue(counts, p, json.Number("12"))
	if err != nil || !reflect.DeepEqual(got, []lwm2m.Record{rec(p, int64(12))}) {
		t.Errorf("resource instance value: %v, %v", got, err)
	}
	if _, err := ParseResourceValue(counts, p, []any{json.Number("1")}); err == nil {
		t.Error("an array for one resource instance was accepted")
	}
}

// FuzzParseResourceFields decodes random bodies as the server does and
// checks that they are either records of object 3 or a *FieldError.
func FuzzParseResourceFields(f *testing.F) {
	f.Add([]byte(`{"UTCOffset":"+01:00"}`), false)
	f.Add([]byte(`{"Manufacturer":"Acme","AvailablePowerSources":{"0":1,"9":"5"}}`), true)
	device := lookup(f, testRegistry(f), 3)
	f.Fuzz(func(t *testing.T, raw []byte, create bool) {
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return // the server answers 400 before parsing fields
		}
		recs, err := ParseResourceFields(device, 0, m, create)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || len(fe.Fields) == 0 || recs != nil {
				t.Fatalf("ParseResourceFields(%s) = %v, %v; want records or a *FieldError with fields", raw, recs, err)
			}
			for _, name := range fe.Fields {
				if _, ok := m[name]; !ok {
					t.Fatalf("FieldError names %q, not in the body %s", name, raw)
				}
			}
			return
		}
		for _, r := range recs {
			if r.Path.Object != 3 || r.Path.Instance != 0 || r.Path.Depth < lwm2m.DepthResource {
				t.Fatalf("record %v outside /3/0", r)
			}
			res, ok := device.Resource(r.Path.Resource)
			if !ok || res.Executable() || (!create && !res.Writable()) {
				t.Fatalf("record %v for a resource that cannot be written", r)
			}
			if err := checkType(res.Type, r.Value); err != nil {
				t.Fatalf("record %v: %v", r, err)
			}
		}
		// What was accepted renders back without error.
		if _, err := json.Marshal(ResourceFields(device, recs)); err != nil {
			t.Fatalf("render %v: %v", recs, err)
		}
	})
}

func checkType(t lwm2m.DataType, v any) error {
	ok := false
	switch t {
	case lwm2m.TypeString, lwm2m.TypeCoreLink:
		_, ok = v.(string)
	case lwm2m.TypeInteger:
		_, ok = v.(int64)
	case lwm2m.TypeUnsignedInteger:
		_, ok = v.(uint64)
	case lwm2m.TypeFloat:
		_, ok = v.(float64)
	case lwm2m.TypeBoolean:
		_, ok = v.(bool)
	case lwm2m.TypeOpaque:
		_, ok = v.([]byte)
	case lwm2m.TypeTime:
		_, ok = v.(time.Time)
	case lwm2m.TypeObjectLink:
		_, ok = v.(lwm2m.ObjectLink)
	}
	if !ok {
		return errors.New("value of type " + reflect.TypeOf(v).String() + " for a " + t.String())
	}
	return nil
}
