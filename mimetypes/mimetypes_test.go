package mimetypes

import (
	"errors"
	"strings"
	"testing"
)

const client = "application/vnd.imgtec.client"

var (
	jsonOnly   = Negotiator{Formats: []Format{JSON}}
	jsonAndXML = Negotiator{Formats: []Format{JSON, XML}}
	xmlFirst   = Negotiator{Formats: []Format{XML, JSON}}
)

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name   string
		neg    Negotiator
		accept string
		want   string // ContentType; "" means 406
		format Format
	}{
		{"absent Accept gives the vendor JSON type", jsonOnly, "", client + "+json", JSON},
		{"blank Accept gives the vendor JSON type", jsonOnly, "   ", client + "+json", JSON},
		{"absent Accept gives the first format", xmlFirst, "", client + "+xml", XML},
		{"any type", jsonOnly, "*/*", client + "+json", JSON},
		{"any application type", jsonOnly, "application/*", client + "+json", JSON},
		{"plain JSON", jsonOnly, "application/json", client + "+json", JSON},
		{"plain JSON with charset", jsonOnly, "application/json; charset=utf-8", client + "+json", JSON},
		{"upper-case plain JSON", jsonOnly, "APPLICATION/JSON", client + "+json", JSON},
		{"vendor type without suffix", jsonOnly, client, client + "+json", JSON},
		{"vendor type with +json", jsonOnly, client + "+json", client + "+json", JSON},
		{"vendor type with version echoes the version", jsonOnly, client + "-v1", client + "-v1+json", JSON},
		{"vendor type with version and +json", jsonOnly, client + "-v1+json", client + "-v1+json", JSON},
		{"vendor type upper case", jsonOnly, "Application/Vnd.Imgtec.Client-V1+JSON", client + "-v1+json", JSON},
		{"leading zero version is answered canonically", jsonOnly, client + "-v01+json", client + "-v1+json", JSON},
		{"vendor type newer than Newest", jsonOnly, client + "-v2", "", 0},
		{"vendor type newer than Newest with +json", jsonOnly, client + "-v2+json", "", 0},
		{"version zero", jsonOnly, client + "-v0", "", 0},
		{"negative version", jsonOnly, client + "-v-1", "", 0},
		{"version without digits", jsonOnly, client + "-v+json", "", 0},
		{"+xml when only JSON is produced", jsonOnly, client + "+xml", "", 0},
		{"+xml when XML is produced", jsonAndXML, client + "+xml", client + "+xml", XML},
		{"-v1+xml when XML is produced", jsonAndXML, client + "-v1+xml", client + "-v1+xml", XML},
		{"application/xml when only JSON is produced", jsonOnly, "application/xml", "", 0},
		{"text/xml when XML is produced", jsonAndXML, "text/xml", client + "+xml", XML},
		{"unknown suffix", jsonOnly, client + "+yaml", "", 0},
		{"another resource's type", jsonOnly, "application/vnd.imgtec.accesskey", "", 0},
		{"the list type of the resource", jsonOnly, client + "s", "", 0},
		{"html", jsonOnly, "text/html", "", 0},
		{"higher q wins over order", jsonAndXML, "application/json;q=0.2, application/xml;q=0.9", client + "+xml", XML},
		{"equal q keeps the order", jsonAndXML, "application/xml, application/json", client + "+xml", XML},
		{"default q is 1", jsonAndXML, "application/xml;q=0.5, application/json", client + "+json", JSON},
		{"q picks the versioned vendor type", jsonOnly, "application/json;q=0.5, " + client + "-v1;q=0.8", client + "-v1+json", JSON},
		{"q=0 excludes the only range", jsonOnly, "application/json;q=0", "", 0},
		{"q=0 excludes the vendor type", jsonOnly, client + ";q=0", "", 0},
		{"q=0 on everything", jsonOnly, "*/*;q=0", "", 0},
		{"q=0 JSON is not brought back by */*", jsonOnly, "application/json;q=0, */*", "", 0},
		{"q=0 JSON with */* picks XML", jsonAndXML, "application/json;q=0, */*;q=0.1", client + "+xml", XML},
		{"q=0 vendor JSON is not brought back by application/json", jsonOnly, client + "+json;q=0, application/json", "", 0},
		{"q=0 XML with */* picks JSON", xmlFirst, "application/xml;q=0, */*", client + "+json", JSON},
		{"first ranges unacceptable", jsonOnly, "text/html, application/xhtml+xml, " + client + "-v2, application/xml;q=0.9, application/json;q=0.8", client + "+json", JSON},
		{"first vendor range unacceptable", jsonOnly, client + "+xml, " + client + "-v1", client + "-v1+json", JSON},
		{"malformed parameters keep the type", jsonOnly, "application/json;;;=", client + "+json", JSON},
		{"malformed q is taken as 1", jsonOnly, "application/json;q=abc", client + "+json", JSON},
		{"q out of range is taken as 1", jsonAndXML, "application/xml;q=5, application/json;q=0.9", client + "+xml", XML},
		{"empty ranges are skipped", jsonOnly, ",, ,application/json,", client + "+json", JSON},
		{"only commas", jsonOnly, ",,,", "", 0},
		{"no slash", jsonOnly, "application", "", 0},
		{"garbage", jsonOnly, "\x00\xff;;", "", 0},
		{"parameter only", jsonOnly, ";q=1", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.neg.Negotiate(tt.accept, client)
			if tt.want == "" {
				if !errors.Is(err, ErrNotAcceptable) {
					t.Fatalf("Negotiate(%q) = %+v, %v; want ErrNotAcceptable", tt.accept, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Negotiate(%q): %v", tt.accept, err)
			}
			if got.ContentType != tt.want || got.Format != tt.format {
				t.Errorf("Negotiate(%q) = %q (format %v), want %q (format %v)", tt.accept, got.ContentType, got.Format, tt.want, tt.format)
			}
		})
	}
}

func TestRequestFormat(t *testing.T) {
	key := Type(AccessKey)
	sub := Type(Subscription)
	tests := []struct {
		name  string
		neg   Negotiator
		ct    string
		bases []string
		want  Format
		ok    bool
	}{
		{"plain JSON", jsonOnly, "application/json", []string{key}, JSON, true},
		{"plain JSON with charset", jsonOnly, "application/json; charset=utf-8", []string{key}, JSON, true},
		{"plain JSON upper case with charset", jsonOnly, "Application/JSON;Charset=UTF-8", []string{key}, JSON, true},
		{"vendor type", jsonOnly, key, []string{key}, JSON, true},
		{"vendor type +json", jsonOnly, key + "+json", []string{key}, JSON, true},
		{"vendor type -v1", jsonOnly, key + "-v1", []string{key}, JSON, true},
		{"vendor type -v1+json with charset", jsonOnly, key + "-v1+json; charset=utf-8", []string{key}, JSON, true},
		{"second base", jsonOnly, sub + "+json", []string{key, sub}, JSON, true},
		{"vendor type -v2", jsonOnly, key + "-v2+json", []string{key}, 0, false},
		{"vendor +xml, JSON only", jsonOnly, key + "+xml", []string{key}, 0, false},
		{"vendor +xml, XML produced", jsonAndXML, key + "+xml", []string{key}, XML, true},
		{"plain XML, JSON only", jsonOnly, "application/xml", []string{key}, 0, false},
		{"plain XML, XML produced", jsonAndXML, "application/xml; charset=utf-8", []string{key}, XML, true},
		{"another route's type", jsonOnly, Type(Client) + "+json", []string{key}, 0, false},
		{"list type for a single", jsonOnly, Type(AccessKeys), []string{key}, 0, false},
		{"no bases, vendor type", jsonOnly, key, nil, 0, false},
		{"absent", jsonOnly, "", []string{key}, 0, false},
		{"text/plain", jsonOnly, "text/plain", []string{key}, 0, false},
		{"form", jsonOnly, "application/x-www-form-urlencoded", []string{key}, 0, false},
		{"wildcard", jsonOnly, "*/*", []string{key}, 0, false},
		{"garbage", jsonOnly, "garbage", []string{key}, 0, false},
		{"parameters only", jsonOnly, ";;", []string{key}, 0, false},
		{"broken parameter", jsonOnly, "application/json; charset", []string{key}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.neg.RequestFormat(tt.ct, tt.bases...)
			if !tt.ok {
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("RequestFormat(%q) = %v, %v; want ErrUnsupported", tt.ct, got, err)
				}
				if !strings.Contains(err.Error(), tt.ct) {
					t.Errorf("error %q does not name the Content-Type %q", err, tt.ct)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("RequestFormat(%q) = %v, %v; want %v", tt.ct, got, err, tt.want)
			}
		})
	}
}

func TestTypes(t *testing.T) {
	tests := []struct{ got, want string }{
		{Type(Client), "application/vnd.imgtec.client"},
		{Type(BadRequest), "application/vnd.imgtec.badrequest"},
		{Type(Subscription), "application/vnd.oma.lwm2m.subscription"},
		{Type(Subscriptions), "application/vnd.oma.lwm2m.subscriptions"},
		{Type(Group), "application/vnd.imgtec.group"},
		{Type(Groups), "application/vnd.imgtec.groups"},
		{Plural("application/vnd.oma.lwm2m.device"), "application/vnd.oma.lwm2m.devices"},
		{JSON.Suffix(), "+json"},
		{XML.Suffix(), "+xml"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

var fuzzBases = []string{Type(Client), Type(Subscription), "application/vnd.oma.lwm2m.device", Type(API)}

func FuzzNegotiate(f *testing.F) {
	f.Add("", uint8(0))
	f.Add("application/vnd.imgtec.client-v1+json;q=0.5, */*;q=0", uint8(0))
	f.Fuzz(func(t *testing.T, accept string, which uint8) {
		base := fuzzBases[int(which)%len(fuzzBases)]
		for _, n := range []Negotiator{jsonOnly, jsonAndXML, xmlFirst} {
			c, err := n.Negotiate(accept, base)
			if err != nil {
				if !errors.Is(err, ErrNotAcceptable) {
					t.Fatalf("Negotiate(%q): unexpected error %v", accept, err)
				}
			} else {
				if !strings.HasPrefix(c.ContentType, base) {
					t.Fatalf("Negotiate(%q) = %q, not of base %q", accept, c.ContentType, base)
				}
				if !n.can(c.Format) || !strings.HasSuffix(c.ContentType, c.Format.Suffix()) {
					t.Fatalf("Negotiate(%q) = %+v with formats %v", accept, c, n.Formats)
				}
				if rest := strings.TrimSuffix(strings.TrimPrefix(c.ContentType, base), c.Format.Suffix()); rest != "" && rest != "-v1" {
					t.Fatalf("Negotiate(%q) = %q: unexpected version part %q", accept, c.ContentType, rest)
				}
			}
			// The same text as a request Content-Type never panics either.
			f, err := n.RequestFormat(accept, base)
			if err != nil && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("RequestFormat(%q): unexpected error %v", accept, err)
			}
			if err == nil && !n.can(f) {
				t.Fatalf("RequestFormat(%q) = %v, not produced by %v", accept, f, n.Formats)
			}
		}
	})
}
