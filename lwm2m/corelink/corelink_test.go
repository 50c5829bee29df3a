package corelink

import (
	"reflect"
	"strings"
	"testing"
)

func flag(k string) Param            { return Param{Key: k} }
func kv(k, v string) Param           { return Param{Key: k, Value: v, HasValue: true} }
func link(t string, p ...Param) Link { return Link{Target: t, Params: p} }

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Link
	}{
		{"empty", "", nil},
		{"whitespace only", " \r\n\t", nil},
		{"root with rt and ct", `</>;rt="oma.lwm2m";ct=110`,
			[]Link{link("/", kv("rt", "oma.lwm2m"), kv("ct", "110"))}},
		{"registration objects", `</1/0>,</3/0>,</3303>;ver=1.1`,
			[]Link{link("/1/0"), link("/3/0"), link("/3303", kv("ver", "1.1"))}},
		{"discover answer", `</3/0>;pmin=10,</3/0/1>,</3/0/6>;dim=2`,
			[]Link{link("/3/0", kv("pmin", "10")), link("/3/0/1"), link("/3/0/6", kv("dim", "2"))}},
		{"full registration", `</>;rt="oma.lwm2m";ct="60 110 112 11542",</1>;ver=1.1,</1/0>,</3/0>,</5/0>`,
			[]Link{link("/", kv("rt", "oma.lwm2m"), kv("ct", "60 110 112 11542")), link("/1", kv("ver", "1.1")),
				link("/1/0"), link("/3/0"), link("/5/0")}},
		{"alternate root path", `</lwm2m>;rt="oma.lwm2m",</lwm2m/1/0>`,
			[]Link{link("/lwm2m", kv("rt", "oma.lwm2m")), link("/lwm2m/1/0")}},
		{"quoted comma and semicolon", `</a>;title="x, y; z",</b>`,
			[]Link{link("/a", kv("title", "x, y; z")), link("/b")}},
		{"backslash escapes", `</a>;title="say \"hi\" \\ \x"`,
			[]Link{link("/a", kv("title", `say "hi" \ x`))}},
		{"bare flags", `</a>;obs;Q,</b>;obs`,
			[]Link{link("/a", flag("obs"), flag("Q")), link("/b", flag("obs"))}},
		{"empty value", `</a>;x=;y=""`,
			[]Link{link("/a", kv("x", ""), kv("y", ""))}},
		{"whitespace everywhere", " </1/0> ;\tver = 1.0 ,\r\n </3/0>\n",
			[]Link{link("/1/0", kv("ver", "1.0")), link("/3/0")}},
		{"attributes of a discover", `</3303/0/5700>;gt=20.5;lt=-3;st=0.1;epmin=1`,
			[]Link{link("/3303/0/5700", kv("gt", "20.5"), kv("lt", "-3"), kv("st", "0.1"), kv("epmin", "1"))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Parse(%q)\n got %#v\nwant %#v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"missing <", `/1/0>`},
		{"missing < after comma", `</1/0>,/3/0`},
		{"unterminated target", `</1/0`},
		{"empty target", `<>;ver=1.0`},
		{"space in target", `</1 /0>`},
		{"unterminated quote", `</>;rt="oma.lwm2m`},
		{"escape at end", `</>;rt="oma\`},
		{"trailing comma", `</1/0>,`},
		{"garbage after link", `</1/0> x`},
		{"garbage after quoted value", `</a>;rt="x"y`},
		{"empty param name", `</a>;=1`},
		{"trailing semicolon", `</a>;`},
		{"bad char in name", `</a>;p(x)=1`},
		{"quote inside token", `</a>;ct=1"2"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("Parse(%q) = %#v, want error", tc.in, got)
			}
			if !strings.HasPrefix(err.Error(), "corelink: parse: ") {
				t.Fatalf("error %q lacks the operation prefix", err)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name  string
		links []Link
		want  string
	}{
		{"none", nil, ""},
		{"root", []Link{link("/", kv("rt", "oma.lwm2m"), kv("ct", "110"))}, `</>;rt="oma.lwm2m";ct=110`},
		{"objects", []Link{link("/1/0"), link("/3/0"), link("/3303", kv("ver", "1.1"))}, `</1/0>,</3/0>,</3303>;ver=1.1`},
		{"discover", []Link{link("/3/0", kv("pmin", "10")), link("/3/0/1"), link("/3/0/6", kv("dim", "2"))},
			`</3/0>;pmin=10,</3/0/1>,</3/0/6>;dim=2`},
		{"needs quoting", []Link{link("/a", kv("ct", "60 110"), kv("x", `a"b\c`), kv("y", ""), kv("z", "a,b;c"), flag("obs"))},
			`</a>;ct="60 110";x="a\"b\\c";y="";z="a,b;c";obs`},
		{"negative and float numbers bare", []Link{link("/a", kv("lt", "-3.5"), kv("gt", "1e3"))}, `</a>;lt=-3.5;gt=1e3`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(Format(tc.links))
			if got != tc.want {
				t.Fatalf("Format\n got %s\nwant %s", got, tc.want)
			}
			back, err := Parse([]byte(got))
			if err != nil {
				t.Fatalf("Parse(Format) = %v", err)
			}
			if !reflect.DeepEqual(back, tc.links) {
				t.Fatalf("round trip\n got %#v\nwant %#v", back, tc.links)
			}
		})
	}
}

func TestLinkParam(t *testing.T) {
	l := link("/", kv("rt", "oma.lwm2m"), flag("obs"), kv("ct", "110"), kv("ct", "112"))
	tests := []struct {
		key    string
		want   string
		wantOK bool
	}{
		{"rt", "oma.lwm2m", true},
		{"RT", "oma.lwm2m", true},
		{"obs", "", true},
		{"ct", "110", true}, // the first occurrence wins
		{"ver", "", false},
	}
	for _, tc := range tests {
		got, ok := l.Param(tc.key)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("Param(%q) = %q, %v; want %q, %v", tc.key, got, ok, tc.want, tc.wantOK)
		}
	}
}

func FuzzParseCoreLink(f *testing.F) {
	for _, s := range []string{
		``, `</>;rt="oma.lwm2m";ct=110`, `</1/0>,</3/0>,</3303>;ver=1.1`,
		`</3/0>;pmin=10,</3/0/1>,</3/0/6>;dim=2`, `</a>;title="x, \"y\"; z";obs`, `</a>;x=;y=""`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		links, err := Parse(b)
		if err != nil {
			return
		}
		out := Format(links)
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Format(Parse(%q))) = %v (formatted %q)", b, err, out)
		}
		if len(links) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(links, again) {
			t.Fatalf("round trip of %q\n got %#v\nwant %#v", b, again, links)
		}
	})
}
