package endpoint

import (
	"reflect"
	"strings"
	"testing"

	"github.com/deviceserver/deviceserver/lwm2m"
)

func TestParseRegister(t *testing.T) {
	obj := func(o uint16, ver string) lwm2m.LinkedObject {
		return lwm2m.LinkedObject{Path: lwm2m.ObjectPath(o), Version: ver}
	}
	inst := func(o, i uint16) lwm2m.LinkedObject {
		return lwm2m.LinkedObject{Path: lwm2m.InstancePath(o, i)}
	}
	tests := []struct {
		name    string
		query   []string
		payload string
		want    regParams
		wantErr string // substring of the diagnostic; "" for success
	}{
		{
			name:    "defaults",
			query:   []string{"ep=dev1"},
			payload: "</1/0>,</3/0>",
			want: regParams{Endpoint: "dev1", Lifetime: 86400, Version: "1.0", Binding: "U",
				Links: &linkInfo{RootPath: "/", Objects: []lwm2m.LinkedObject{inst(1, 0), inst(3, 0)}}},
		},
		{
			name:    "wakaama 1.1",
			query:   []string{"ep=wakaama", "lt=300", "lwm2m=1.1", "b=U"},
			payload: `</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303>;ver=1.1,</3303/0>`,
			want: regParams{Endpoint: "wakaama", Lifetime: 300, HasLifetime: true, Version: "1.1", Binding: "U", HasBinding: true,
				Links: &linkInfo{RootPath: "/", HasRoot: true, ContentFormats: []lwm2m.ContentFormat{110},
					Objects: []lwm2m.LinkedObject{inst(1, 0), inst(3, 0), obj(3303, "1.1"), inst(3303, 0)}}},
		},
		{
			name:    "anjay 1.2 without root link or binding",
			query:   []string{"ep=anjay", "lt=86400", "lwm2m=1.2"},
			payload: "</1>;ver=1.2,</1/1>,</3/0>",
			want: regParams{Endpoint: "anjay", Lifetime: 86400, HasLifetime: true, Version: "1.2", Binding: "U",
				Links: &linkInfo{RootPath: "/", Objects: []lwm2m.LinkedObject{obj(1, "1.2"), inst(1, 1), inst(3, 0)}}},
		},
		{
			name:    "alternate path, ct list, queue flag, sms, unknown params",
			query:   []string{"ep=alt", "lwm2m=1.1", "b=UN", "Q", "sms=+4412345", "apn=internet", "at=x"},
			payload: `</lwm2m>;rt="oma.lwm2m";ct="60 110 11542",</lwm2m/1/0>,</lwm2m/3/0>`,
			want: regParams{Endpoint: "alt", Lifetime: 86400, Version: "1.1", Binding: "UN", HasBinding: true,
				SMS: "+4412345", HasSMS: true, Queue: true,
				Links: &linkInfo{RootPath: "/lwm2m", HasRoot: true, ContentFormats: []lwm2m.ContentFormat{60, 110, 11542},
					Objects: []lwm2m.LinkedObject{inst(1, 0), inst(3, 0)}}},
		},
		{
			name:    "1.0 queue mode binding",
			query:   []string{"ep=q", "b=UQ"},
			payload: "</3/0>",
			want: regParams{Endpoint: "q", Lifetime: 86400, Version: "1.0", Binding: "UQ", HasBinding: true, Queue: true,
				Links: &linkInfo{RootPath: "/", Objects: []lwm2m.LinkedObject{inst(3, 0)}}},
		},
		{
			name:    "whitespace and trailing slash root",
			query:   []string{"ep=ws"},
			payload: "</lwm2m/>;rt=\"oma.lwm2m\", </lwm2m/3/0>,\n</lwm2m/4/0>",
			want: regParams{Endpoint: "ws", Lifetime: 86400, Version: "1.0", Binding: "U",
				Links: &linkInfo{RootPath: "/lwm2m", HasRoot: true, Objects: []lwm2m.LinkedObject{inst(3, 0), inst(4, 0)}}},
		},
		{
			name:  "empty payload",
			query: []string{"ep=empty"},
			want: regParams{Endpoint: "empty", Lifetime: 86400, Version: "1.0", Binding: "U",
				Links: &linkInfo{RootPath: "/"}},
		},
		{name: "missing ep", query: []string{"lt=60"}, payload: "</3/0>", wantErr: "missing endpoint name"},
		{name: "empty ep", query: []string{"ep="}, payload: "</3/0>", wantErr: "invalid endpoint name"},
		{name: "duplicate ep", query: []string{"ep=a", "ep=b"}, wantErr: "duplicate"},
		{name: "lt zero", query: []string{"ep=a", "lt=0"}, wantErr: "invalid lifetime"},
		{name: "lt negative", query: []string{"ep=a", "lt=-5"}, wantErr: "invalid lifetime"},
		{name: "lt not a number", query: []string{"ep=a", "lt=abc"}, wantErr: "invalid lifetime"},
		{name: "lt too large", query: []string{"ep=a", "lt=99999999999"}, wantErr: "invalid lifetime"},
		{name: "version 2.0", query: []string{"ep=a", "lwm2m=2.0"}, wantErr: "unsupported LwM2M version"},
		{name: "version empty", query: []string{"ep=a", "lwm2m="}, wantErr: "unsupported LwM2M version"},
		{name: "bad binding", query: []string{"ep=a", "b=X"}, wantErr: "invalid binding"},
		{name: "repeated binding letter", query: []string{"ep=a", "b=UU"}, wantErr: "repeated"},
		{name: "empty binding", query: []string{"ep=a", "b="}, wantErr: "empty binding"},
		{name: "Q with value", query: []string{"ep=a", "Q=1"}, wantErr: "takes no value"},
		{name: "empty query key", query: []string{"ep=a", "=x"}, wantErr: "malformed query"},
		{name: "malformed link", query: []string{"ep=a"}, payload: "</3/0", wantErr: "malformed link payload"},
		{name: "not a link", query: []string{"ep=a"}, payload: "hello", wantErr: "malformed link payload"},
		{name: "resource link", query: []string{"ep=a"}, payload: "</3/0/1>", wantErr: "invalid object link"},
		{name: "non-numeric link", query: []string{"ep=a"}, payload: "</foo>", wantErr: "invalid object link"},
		{name: "relative link", query: []string{"ep=a"}, payload: "<3/0>", wantErr: "absolute path"},
		{name: "link outside root", query: []string{"ep=a"}, payload: `</lwm2m>;rt="oma.lwm2m",</3/0>`, wantErr: "outside the LwM2M root"},
		{name: "two roots", query: []string{"ep=a"}, payload: `</>;rt="oma.lwm2m",</x>;rt="oma.lwm2m"`, wantErr: "more than one"},
		{name: "bad ct", query: []string{"ep=a"}, payload: `</>;rt="oma.lwm2m";ct=abc`, wantErr: "invalid content format"},
		{name: "bad ver", query: []string{"ep=a"}, payload: `</3>;ver=x`, wantErr: "invalid object version"},
		{name: "reserved id", query: []string{"ep=a"}, payload: `</65535/0>`, wantErr: "invalid object link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRegister(tt.query, []byte(tt.payload))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("parseRegister = %+v, want error containing %q", got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRegister: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("parseRegister =\n %+v %+v\nwant\n %+v %+v", got, got.Links, tt.want, tt.want.Links)
			}
		})
	}
}

func TestParseUpdate(t *testing.T) {
	p, err := parseUpdate([]string{"lt=60", "b=U", "ep=ignored", "lwm2m=9.9"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := regParams{Lifetime: 60, HasLifetime: true, Binding: "U", HasBinding: true}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("parseUpdate = %+v, want %+v", p, want)
	}
	p, err = parseUpdate(nil, []byte("</3/0>,</5/0>"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Links == nil || len(p.Links.Objects) != 2 || p.HasLifetime {
		t.Fatalf("parseUpdate with payload = %+v", p)
	}
	if _, err := parseUpdate([]string{"lt=x"}, nil); err == nil {
		t.Fatal("parseUpdate accepted lt=x")
	}
}

func FuzzParseRegistration(f *testing.F) {
	f.Add("ep=dev&lt=300&lwm2m=1.1&b=U", `</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303>;ver=1.1`)
	f.Add("ep=x&Q", `</lwm2m>;rt="oma.lwm2m";ct="60 110",</lwm2m/3/0>`)
	f.Add("ep=x&lwm2m=2.0", "")
	f.Fuzz(func(t *testing.T, query, payload string) {
		q := strings.Split(query, "&")
		p, err := parseRegister(q, []byte(payload))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty diagnostic")
			}
			return
		}
		if p.Endpoint == "" || p.Lifetime == 0 || p.Links == nil {
			t.Fatalf("accepted registration without ep/lt/links: %+v", p)
		}
		switch p.Version {
		case "1.0", "1.1", "1.2":
		default:
			t.Fatalf("accepted version %q", p.Version)
		}
		if p.Links.RootPath == "" || p.Links.RootPath[0] != '/' {
			t.Fatalf("root path %q", p.Links.RootPath)
		}
		for _, o := range p.Links.Objects {
			if o.Path.Depth != lwm2m.DepthObject && o.Path.Depth != lwm2m.DepthInstance {
				t.Fatalf("object link of depth %d", o.Path.Depth)
			}
		}
		if _, err := parseUpdate(q, []byte(payload)); err != nil {
			t.Fatalf("update rejects what register accepts: %v", err)
		}
	})
}
