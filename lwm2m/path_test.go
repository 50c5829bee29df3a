package lwm2m

import (
	"math"
	"testing"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		in    string
		want  Path
		str   string
		error bool
	}{
		{in: "/", want: Path{}, str: "/"},
		{in: "", want: Path{}, str: "/"},
		{in: "/3", want: ObjectPath(3), str: "/3"},
		{in: "3/0", want: InstancePath(3, 0), str: "/3/0"},
		{in: "/3/0/1/", want: ResourcePath(3, 0, 1), str: "/3/0/1"},
		{in: "/3/0/7/1", want: ResourceInstancePath(3, 0, 7, 1), str: "/3/0/7/1"},
		{in: "/65534/0", want: InstancePath(65534, 0), str: "/65534/0"},
		{in: "/65535", error: true},
		{in: "/3/0/1/2/3", error: true},
		{in: "/a", error: true},
		{in: "/-1", error: true},
		{in: "/03", error: true},
		{in: "/3//1", error: true},
		{in: "/99999", error: true},
	}
	for _, tc := range tests {
		got, err := ParsePath(tc.in)
		if tc.error {
			if err == nil {
				t.Errorf("ParsePath(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("ParsePath(%q) = %v (%q), %v; want %v (%q)", tc.in, got, got.String(), err, tc.want, tc.str)
		}
	}
}

func TestPathParentAndContains(t *testing.T) {
	r := ResourceInstancePath(3, 1, 7, 2)
	if got := r.Parent(); got != ResourcePath(3, 1, 7) {
		t.Errorf("parent of %v = %v", r, got)
	}
	if got := r.Parent().Parent().Parent(); got != ObjectPath(3) {
		t.Errorf("object of %v = %v", r, got)
	}
	if got := (Path{}).Parent(); got != (Path{}) {
		t.Errorf("parent of root = %v", got)
	}
	cases := []struct {
		p, q Path
		want bool
	}{
		{InstancePath(3, 1), ResourcePath(3, 1, 7), true},
		{InstancePath(3, 1), InstancePath(3, 1), true},
		{InstancePath(3, 1), ResourcePath(3, 2, 7), false},
		{ResourcePath(3, 1, 7), InstancePath(3, 1), false},
		{Path{}, ObjectPath(5), true},
	}
	for _, c := range cases {
		if got := c.p.Contains(c.q); got != c.want {
			t.Errorf("%v.Contains(%v) = %v", c.p, c.q, got)
		}
	}
}

func TestAttributesRoundTrip(t *testing.T) {
	in := []string{"pmin=5", "pmax=60", "gt=20.5", "lt=-3", "st=0.5", "epmin=1", "epmax=9"}
	a, err := ParseAttributes(in)
	if err != nil {
		t.Fatal(err)
	}
	got := a.Query()
	if len(got) != len(in) {
		t.Fatalf("Query() = %v", got)
	}
	b, err := ParseAttributes(got)
	if err != nil || *b.Gt != 20.5 || *b.Lt != -3 || *b.Pmax != 60 {
		t.Errorf("round trip: %+v, %v", b, err)
	}
	for _, bad := range [][]string{{"pmin=-1"}, {"gt=abc"}, {"foo=1"}, {"pmax=1.5"}} {
		if _, err := ParseAttributes(bad); err == nil {
			t.Errorf("ParseAttributes(%v) accepted", bad)
		}
	}
	if !(Attributes{}).IsZero() || a.IsZero() {
		t.Error("IsZero wrong")
	}
}

func TestCoerceValue(t *testing.T) {
	tests := []struct {
		t    DataType
		in   any
		want any
		ok   bool
	}{
		{TypeInteger, float64(5), int64(5), true},
		{TypeInteger, 5.5, nil, false},
		{TypeInteger, uint64(math.MaxUint64), nil, false},
		{TypeUnsignedInteger, int64(-1), nil, false},
		{TypeUnsignedInteger, int64(7), uint64(7), true},
		{TypeFloat, int64(2), 2.0, true},
		{TypeBoolean, "true", nil, false},
		{TypeString, "x", "x", true},
		{TypeObjectLink, ObjectLink{3, 0}, ObjectLink{3, 0}, true},
	}
	for _, tc := range tests {
		got, err := CoerceValue(tc.t, tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("CoerceValue(%v, %v) = %v, %v", tc.t, tc.in, got, err)
		}
	}
}

func TestDataTypeNames(t *testing.T) {
	for _, name := range []string{"String", "Integer", "UnsignedInteger", "Float", "Boolean", "Opaque", "DateTime", "ObjectLink", "CoreLink", "None"} {
		dt, err := ParseDataType(name)
		if err != nil || dt.String() != name {
			t.Errorf("ParseDataType(%q) = %v, %v", name, dt, err)
		}
	}
	ddf := map[string]DataType{"Unsigned Integer": TypeUnsignedInteger, "Time": TypeTime, "Objlnk": TypeObjectLink, "Corelnk": TypeCoreLink}
	for name, want := range ddf {
		if dt, err := ParseDataType(name); err != nil || dt != want {
			t.Errorf("ParseDataType(%q) = %v, %v", name, dt, err)
		}
	}
	if _, err := ParseDataType("Double"); err == nil {
		t.Error("ParseDataType(Double) accepted")
	}
}

func TestCoerceValueFloatRange(t *testing.T) {
	for _, x := range []float64{1 << 63, -1 << 64, math.Inf(1), math.NaN()} {
		if v, err := CoerceValue(TypeInteger, x); err == nil {
			t.Errorf("CoerceValue(Integer, %g) = %v, want an error", x, v)
		}
	}
	if v, err := CoerceValue(TypeUnsignedInteger, float64(1<<64)); err == nil {
		t.Errorf("CoerceValue(UnsignedInteger, 2^64) = %v, want an error", v)
	}
}

func TestAttributesOverlay(t *testing.T) {
	five, nine := uint32(5), uint32(9)
	gt := 20.0
	base := Attributes{Pmin: &five, Gt: &gt}
	got := base.Overlay(Attributes{Pmin: &nine})
	if *got.Pmin != 9 || got.Gt == nil || *got.Gt != 20 || got.Pmax != nil {
		t.Errorf("overlay = %v", got.Query())
	}
	if *base.Pmin != 5 {
		t.Error("overlay changed its receiver")
	}
}

func TestNumeric(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want float64
		ok   bool
	}{{int64(-3), -3, true}, {uint64(4), 4, true}, {2.5, 2.5, true}, {math.NaN(), 0, false}, {"1", 0, false}, {true, 0, false}} {
		got, ok := Numeric(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("Numeric(%v) = %v, %v", tc.in, got, ok)
		}
	}
}
