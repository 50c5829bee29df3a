package mimetypes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/hypermedia"
)

// mustTree parses a JSON literal into an ordered tree, as hypermedia.Tree
// gives the encoder.
func mustTree(t testing.TB, js string) any {
	t.Helper()
	tree, err := hypermedia.ParseTree(strings.NewReader(js))
	if err != nil {
		t.Fatalf("bad test tree %s: %v", js, err)
	}
	return tree
}

// readBack is what decoding gives for an encoded tree: every scalar a
// string, and nil, "", empty arrays and empty objects all "".
func readBack(v any) any {
	switch x := v.(type) {
	case nil:
		return ""
	case json.Number:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	case hypermedia.Object:
		if len(x) == 0 {
			return ""
		}
		out := make(hypermedia.Object, len(x))
		for i, f := range x {
			out[i] = hypermedia.Field{Name: f.Name, Value: readBack(f.Value)}
		}
		return out
	case []any:
		if len(x) == 0 {
			return ""
		}
		out := make([]any, len(x))
		for i, it := range x {
			out[i] = readBack(it)
		}
		return out
	}
	return v
}

// plain is the value DecodeXML gives into *any for a read-back tree.
func plain(v any) any {
	switch x := v.(type) {
	case hypermedia.Object:
		m := map[string]any{}
		for _, f := range x {
			m[f.Name] = plain(f.Value)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, it := range x {
			out[i] = plain(it)
		}
		return out
	}
	return v
}

func encode(t testing.TB, root string, tree any) string {
	t.Helper()
	var b bytes.Buffer
	if err := EncodeXML(&b, root, tree); err != nil {
		t.Fatalf("EncodeXML: %v", err)
	}
	return b.String()
}

func TestXMLName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"application/vnd.imgtec.client", "Client"},
		{"clients", "Clients"},
		{"application/vnd.oma.lwm2m.device", "Device"},
		{"application/vnd.oma.lwm2m.devices", "Devices"},
		{"accesskeys", "AccessKeys"},
		{"objectdefinition", "ObjectDefinition"},
		{"resourcecreated", "ResourceCreated"},
		{"resourcescreated", "ResourcesCreated"},
		{"pskidentities", "PSKIdentities"},
		{"pskidentity", "PSKIdentity"},
		{"badrequest", "BadRequest"},
		{"api", "API"},
		{"notifications", "Notifications"},
		{"oauthtoken", "OAuthToken"},
		{"application/vnd.oma.lwm2m.subscription", "Subscription"},
		{"application/vnd.imgtec.groups+xml", "Groups"},
		{"application/vnd.imgtec.group-v1+xml", "Group"},
		{"application/vnd.imgtec.client-v1+xml", "Client"},
		{"application/vnd.imgtec.accesskey+json; charset=utf-8", "AccessKey"},
		{"Application/Vnd.Imgtec.ObjectTypes", "ObjectTypes"},
		{"application/vnd.acme.temperatureSensor", "TemperatureSensor"},
		{"application/vnd.acme.3d printer", "_d_printer"},
		{"", "Item"},
	}
	for _, tt := range tests {
		if got := XMLName(tt.in); got != tt.want {
			t.Errorf("XMLName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, e := range Registry() {
		for _, name := range []string{e.Singular, e.Plural} {
			if name == "" {
				continue
			}
			if got := XMLName(Type(strings.ToLower(name))); got != name {
				t.Errorf("XMLName(Type(%q)) = %q", name, got)
			}
		}
	}
}

func TestItemName(t *testing.T) {
	tests := []struct{ name, root, want string }{
		{"Items", "Clients", "Client"},
		{"Items", "AccessKeys", "AccessKey"},
		{"Items", "PSKIdentities", "PSKIdentity"},
		{"Items", "Groups", "Group"},
		{"Endpoints", "Group", "Endpoint"},
		{"Items", "ResourcesCreated", "ResourceCreated"},
		{"Items", "API", "Item"},
		{"Items", "Items", "Item"},
		{"Properties", "ObjectDefinition", "Property"},
		{"Components", "X", "Component"},
		{"InvalidFields", "BadRequest", "InvalidField"},
		{"AvailablePowerSources", "Device", "AvailablePowerSource"},
		{"Endpoints", "X", "Endpoint"},
		{"Links", "X", "Link"},
		{"Addresses", "X", "Address"},
		{"Address", "X", "Item"},
		{"Value", "X", "Item"},
		{"s", "X", "Item"},
		{"12s", "X", "Item"},
		{"", "X", "Item"},
	}
	for _, tt := range tests {
		if got := itemName(tt.name, tt.root); got != tt.want {
			t.Errorf("itemName(%q, %q) = %q, want %q", tt.name, tt.root, got, tt.want)
		}
	}
}

// goldenTrees are representative representations; their XML is in
// testdata/xml/NAME.xml.
func goldenTrees() []struct{ name, root, json string } {
	return []struct{ name, root, json string }{
		{"client", "Client", `{"Name":"thermostat-1","ClientID":"c9f1","Lifetime":86400,"LwM2MVersion":"1.1",
		"BindingMode":"U","QueueMode":false,"RegisteredAt":"2024-05-01T10:00:00Z","Online":true,
		"Address":"192.0.2.7:5683","Groups":["building-a","floor-3"],"Manufacturer":"Acme & Sons <Ltd>",
		"Links":[{"rel":"self","href":"https://ds.example/clients/c9f1","type":"application/vnd.imgtec.client"},
		{"rel":"remove","href":"https://ds.example/clients/c9f1"},
		{"rel":"objecttypes","href":"https://ds.example/clients/c9f1/objecttypes","type":"application/vnd.imgtec.objecttypes"}]}`},
		{"clients", "Clients", `{"PageInfo":{"TotalCount":25,"ItemsCount":2,"StartIndex":10,
		"Links":[{"rel":"first","href":"https://ds.example/clients?startIndex=0&pageSize=2"},
		{"rel":"next","href":"https://ds.example/clients?startIndex=12&pageSize=2"}]},
		"Items":[{"Name":"dev-1","ClientID":"a1","Online":true,"Links":[{"rel":"self","href":"https://ds.example/clients/a1","type":"application/vnd.imgtec.client"}]},
		{"Name":"dev-2","ClientID":"a2","Online":false,"Groups":[],"Links":[{"rel":"self","href":"https://ds.example/clients/a2","type":"application/vnd.imgtec.client"}]}],
		"Links":[{"rel":"self","href":"https://ds.example/clients?startIndex=10&pageSize=2","type":"application/vnd.imgtec.clients"}]}`},
		{"instance", "Device", `{"InstanceID":"0","Manufacturer":"Acme","ModelNumber":"T-1000","BatteryLevel":100,
		"AvailablePowerSources":[1,5],"PowerSourceVoltage":{"0":3800,"12":5000},"ErrorCode":[0],
		"CurrentTime":"2024-05-01T10:00:00Z","UTCOffset":null,
		"Links":[{"rel":"self","href":"https://ds.example/clients/c9f1/objecttypes/3/instances/0","type":"application/vnd.oma.lwm2m.device"},
		{"rel":"execute","href":"https://ds.example/clients/c9f1/objecttypes/3/instances/0/resources/4","title":"Reboot"}]}`},
		{"badrequest", "BadRequest", `{"ErrorCode":1,"ErrorMessage":"Invalid fields","InvalidFields":["Url","Attributes.Pmin"]}`},
	}
}

func TestEncodeXMLGolden(t *testing.T) {
	for _, g := range goldenTrees() {
		t.Run(g.name, func(t *testing.T) {
			tree := mustTree(t, g.json)
			want, err := os.ReadFile(filepath.Join("testdata", "xml", g.name+".xml"))
			if err != nil {
				t.Fatal(err)
			}
			if got := encode(t, g.root, tree); got != string(want) {
				t.Errorf("EncodeXML:\n got %s\nwant %s", got, want)
			}

			root, back, err := parseXML(bytes.NewReader(want))
			if err != nil {
				t.Fatalf("parseXML(golden): %v", err)
			}
			if root != g.root || !reflect.DeepEqual(back, readBack(tree)) {
				t.Errorf("parseXML(golden) = %s %#v\nwant %s %#v", root, back, g.root, readBack(tree))
			}
			var v any
			if err := DecodeXML(bytes.NewReader(want), &v); err != nil {
				t.Fatalf("DecodeXML(golden): %v", err)
			}
			if !reflect.DeepEqual(v, plain(readBack(tree))) {
				t.Errorf("DecodeXML(golden) = %#v\nwant %#v", v, plain(readBack(tree)))
			}
		})
	}
}

func TestEncodeXMLShapes(t *testing.T) {
	tests := []struct {
		name, root string
		tree       any
		want       string // the document after the XML declaration
	}{
		{"empty object", "Client", hypermedia.Object{}, `<Client/>`},
		{"nil", "Client", nil, `<Client/>`},
		{"text root", "Version", "1.0", `<Version>1.0</Version>`},
		{"escaping", "A", mustTree(t, `{"S":"<a href=\"x\">&'</a>","T":"a\tb\r\nc"}`),
			`<A><S>&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt;</S><T>a&#x9;b&#xD;&#xA;c</T></A>`},
		{"scalars", "A", mustTree(t, `{"N":-1.5e3,"T":true,"F":false,"Z":null,"E":"","EA":[],"EO":{}}`),
			`<A><N>-1.5e3</N><T>true</T><F>false</F><Z/><E/><EA/><EO/></A>`},
		{"names that are not XML names", "A", mustTree(t, `{"0":"a","12":"b","":"c","a b":"d","x:y":"e","ü":"f","Entry":"g"}`),
			`<A><Entry key="0">a</Entry><Entry key="12">b</Entry><Entry key="">c</Entry><Entry key="a b">d</Entry><Entry key="x:y">e</Entry><Entry key="ü">f</Entry><Entry>g</Entry></A>`},
		{"object that would read as an array", "A", mustTree(t, `{"Props":{"Prop":1},"Vals":{"Item":1,"Item":2},"Entries":{"Entry":1}}`),
			`<A><Props><Entry key="Prop">1</Entry></Props><Vals><Entry key="Item">1</Entry><Entry key="Item">2</Entry></Vals><Entries><Entry key="Entry">1</Entry></Entries></A>`},
		{"nested arrays", "A", mustTree(t, `{"Values":[[1,2],[3]]}`),
			`<A><Values><Value><Item>1</Item><Item>2</Item></Value><Value><Item>3</Item></Value></Values></A>`},
		{"root array", "Clients", mustTree(t, `[{"Name":"a"},"b"]`), `<Clients><Client><Name>a</Name></Client><Client>b</Client></Clients>`},
		{"items of an unknown root", "API", mustTree(t, `{"Items":[1]}`), `<API><Items><Item>1</Item></Items></API>`},
		{"links omit empty attributes", "A", mustTree(t, `{"Links":[{"rel":"a","href":"h","type":"","title":"T \"1\""}]}`),
			`<A><Links><Link rel="a" href="h" title="T &#34;1&#34;"/></Links></A>`},
		{"links items that are not links", "A", mustTree(t, `{"Links":["x",{"rel":"a","extra":"b"},{"rel":1}]}`),
			`<A><Links><Link>x</Link><Link><rel>a</rel><extra>b</extra></Link><Link><rel>1</rel></Link></Links></A>`},
		{"map members sorted", "A", map[string]any{"b": "2", "a": []any{"1"}, "1": nil},
			`<A><Entry key="1"/><a><Item>1</Item></a><b>2</b></A>`},
		{"any value through its JSON form", "AccessKey", struct {
			Name  string           `json:"Name"`
			Links hypermedia.Links `json:"Links"`
			N     float64
		}{"k", hypermedia.Links{}.Add("self", "/accesskeys/k", ""), 0.5},
			`<AccessKey><Name>k</Name><Links><Link rel="self" href="/accesskeys/k"/></Links><N>0.5</N></AccessKey>`},
		{"invalid UTF-8 and control characters become U+FFFD", "A", "a\xffb\x01", "<A>a\uFFFDb\uFFFD</A>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := encode(t, tt.root, tt.tree)
			want := `<?xml version="1.0" encoding="UTF-8"?>` + tt.want + "\n"
			if got != want {
				t.Errorf("EncodeXML:\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestEncodeXMLErrors(t *testing.T) {
	deep := any("x")
	for range maxXMLDepth {
		deep = []any{deep}
	}
	tests := []struct {
		name, root string
		tree       any
	}{
		{"root is not a name", "1a", hypermedia.Object{}},
		{"empty root", "", hypermedia.Object{}},
		{"too deep", "A", deep},
		{"value without a JSON form", "A", hypermedia.Object{{Name: "F", Value: func() {}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := EncodeXML(&b, tt.root, tt.tree)
			if err == nil || !strings.HasPrefix(err.Error(), "mimetypes: encode XML: ") {
				t.Fatalf("EncodeXML = %v, want an encode XML error", err)
			}
			if b.Len() != 0 {
				t.Errorf("wrote %q before failing", b.String())
			}
		})
	}
	errWrite := errors.New("broken pipe")
	if err := EncodeXML(failingWriter{errWrite}, "A", "x"); !errors.Is(err, errWrite) {
		t.Errorf("EncodeXML to a failing writer = %v, want it wrapped", err)
	}
	// The deepest tree the decoder takes is encoded.
	if err := EncodeXML(&bytes.Buffer{}, "A", deep.([]any)[0]); err != nil {
		t.Errorf("EncodeXML at the depth limit: %v", err)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// TestXMLRoundTrip checks that what the encoder writes reads back as the
// same tree (scalars as strings).
func TestXMLRoundTrip(t *testing.T) {
	tests := []struct{ root, json string }{
		{"A", `{}`},
		{"A", `"just text"`},
		{"A", `"  spaces kept  "`},
		{"A", `"line\nbreaks\r\nand\ttabs"`},
		{"A", `{"S":"<![CDATA[ ]]> & &amp; <x/> \" '"}`},
		{"A", `{"U":"héllo wörld ✓ 😀"}`},
		{"A", `[1,2,3]`},
		{"A", `[[["deep"]]]`},
		{"A", `{"X":[{"a":1},{"a":2,"b":[true,false]}]}`},
		{"A", `{"Props":{"Prop":1},"Vals":{"Item":1,"Item":2},"Entries":{"Entry":1},"Entry":"e"}`},
		{"A", `{"Entries":["a","b"]}`},
		{"A", `{"Dup":1,"Dup":2,"Other":3}`},
		{"A", `{"0":"a","12":"b","":"c","ü":{"1s":[1,2]}}`},
		{"A", `{"Links":[{"rel":"self","href":"/x?a=1&b=2","type":"t","title":"T"}],"Nested":{"Links":[{"href":"/only-href"}]}}`},
		{"A", `{"Links":["x",{"rel":"a","other":"b"},[1]]}`},
		{"A", `{"Linkss":{"Links":[{"rel":"self","href":"/"}]}}`},
		{"Links", `[{"rel":"self","href":"/"}]`},
		{"Clients", `{"Items":[{"Items":[1,2]},{"Name":"b"}]}`},
		{"Clients", `{"Items":{"Client":"not a list"}}`},
		{"Items", `{"Items":[1]}`},
		{"ResourcesCreated", `{"Items":[{"ID":"1"}]}`},
		{"Device", `{"InstanceID":"0","Multi":[1],"Sparse":{"3":1,"7":"x"},"Opaque":"AAEC","Time":"2024-01-01T00:00:00Z"}`},
	}
	for _, g := range goldenTrees() {
		tests = append(tests, struct{ root, json string }{g.root, g.json})
	}
	for _, tt := range tests {
		t.Run(tt.root+" "+tt.json, func(t *testing.T) {
			tree := mustTree(t, tt.json)
			doc := encode(t, tt.root, tree)
			root, back, err := parseXML(strings.NewReader(doc))
			if err != nil {
				t.Fatalf("parseXML(%s): %v", doc, err)
			}
			if want := readBack(tree); root != tt.root || !reflect.DeepEqual(back, want) {
				t.Errorf("round trip through %s\n got %s %#v\nwant %s %#v", doc, root, back, tt.root, want)
			}
		})
	}
}

func TestParseXML(t *testing.T) {
	tests := []struct {
		name, doc string
		want      any
	}{
		{"indented", "<A>\n  <B>1</B>\n  <C>\n    <D>x</D>\n  </C>\n</A>\n",
			hypermedia.Object{{Name: "B", Value: "1"}, {Name: "C", Value: hypermedia.Object{{Name: "D", Value: "x"}}}}},
		{"comments, processing instructions and a BOM", "\ufeff<?xml version=\"1.0\"?><!-- c --><A><!-- x --><B>1</B><?pi x?></A><!-- end -->",
			hypermedia.Object{{Name: "B", Value: "1"}}},
		{"CDATA and character references", "<A><![CDATA[<x>]]>&#65;&amp;</A>", "<x>A&"},
		{"namespaces and other attributes are ignored", `<A xmlns="urn:x" xmlns:p="urn:p" id="1"><p:B p:key="k">1</p:B></A>`,
			hypermedia.Object{{Name: "B", Value: "1"}}},
		{"link attributes in canonical order, empty ones left out", `<A><Links><Link title="T" href="/h" rel="r" type=""/></Links></A>`,
			hypermedia.Object{{Name: "Links", Value: []any{hypermedia.Object{{Name: "rel", Value: "r"}, {Name: "href", Value: "/h"}, {Name: "title", Value: "T"}}}}}},
		{"link with text is text", `<A><Links><Link rel="r">t</Link></Links></A>`,
			hypermedia.Object{{Name: "Links", Value: []any{"t"}}}},
		{"link attributes outside Links are ignored", `<A><Link rel="r"/></A>`,
			hypermedia.Object{{Name: "Link", Value: ""}}},
		{"Item children are an array", `<A><B><Item>1</Item></B></A>`,
			hypermedia.Object{{Name: "B", Value: []any{"1"}}}},
		{"keyed entries are members", `<A><Bs><Entry key="B">1</Entry><B>2</B></Bs></A>`,
			hypermedia.Object{{Name: "Bs", Value: hypermedia.Object{{Name: "B", Value: "1"}, {Name: "B", Value: "2"}}}}},
		{"mixed item names are an object", `<A><Bs><B>1</B><C>2</C></Bs></A>`,
			hypermedia.Object{{Name: "Bs", Value: hypermedia.Object{{Name: "B", Value: "1"}, {Name: "C", Value: "2"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got, err := parseXML(strings.NewReader(tt.doc))
			if err != nil {
				t.Fatalf("parseXML: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseXML = %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestDecodeXMLMalformed(t *testing.T) {
	nest := func(n int) string {
		return strings.Repeat("<a>", n) + strings.Repeat("</a>", n)
	}
	tests := []struct{ name, doc string }{
		{"empty", ""},
		{"only whitespace", " \n "},
		{"only a declaration", `<?xml version="1.0"?>`},
		{"unclosed", "<A><B>"},
		{"mismatched end", "<A></B>"},
		{"not XML", `{"Name":"x"}`},
		{"text before the root", "x<A/>"},
		{"second root", "<A/><B/>"},
		{"text after the root", "<A/>junk"},
		{"mixed content", "<A>x<B/></A>"},
		{"doctype", `<?xml version="1.0"?><!DOCTYPE A><A/>`},
		{"entity declaration", `<!DOCTYPE A [<!ENTITY x "y">]><A>&x;</A>`},
		{"external entity", `<!DOCTYPE A [<!ENTITY x SYSTEM "file:///etc/passwd">]><A>&x;</A>`},
		{"billion laughs", `<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><l>&b;</l>`},
		{"undeclared entity", "<A>&nbsp;</A>"},
		{"invalid UTF-8", "<A>\xff</A>"},
		{"other encoding", `<?xml version="1.0" encoding="ISO-8859-1"?><A/>`},
		{"too deep", nest(maxXMLDepth + 1)},
		{"too many elements", "<A>" + strings.Repeat("<B/>", maxXMLElements) + "</A>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			err := DecodeXML(strings.NewReader(tt.doc), &v)
			if err == nil || !strings.HasPrefix(err.Error(), "mimetypes: decode XML: ") {
				t.Fatalf("DecodeXML = %v (%#v), want a decode XML error", err, v)
			}
		})
	}
	var v any
	if err := DecodeXML(strings.NewReader(nest(maxXMLDepth)), &v); err != nil {
		t.Errorf("DecodeXML at the depth limit: %v", err)
	}
}

// xmlTestNumber decodes itself like the server's attribute numbers.
type xmlTestNumber float64

func (n *xmlTestNumber) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("not a number: %q", s)
	}
	*n = xmlTestNumber(f)
	return nil
}

type xmlTestAttributes struct {
	Pmin *xmlTestNumber `json:"Pmin,omitempty"`
	Step *xmlTestNumber `json:"Step,omitempty"`
}

type xmlTestProperty struct {
	Name     string `json:"Name"`
	DataType string `json:"DataType"`
}

type xmlTestEmbedded struct {
	Note string `json:"Note"`
}

type xmlTestBody struct {
	xmlTestEmbedded
	Name       string             `json:"Name"`
	Count      int                `json:"Count"`
	Limit      *int               `json:"Limit,omitempty"`
	Small      uint8              `json:"Small"`
	Ratio      float64            `json:"Ratio"`
	Enabled    bool               `json:"Enabled"`
	Groups     []string           `json:"Groups"`
	Attributes *xmlTestAttributes `json:"Attributes"`
	Properties []xmlTestProperty  `json:"Properties"`
	When       time.Time          `json:"When"`
	Until      *time.Time         `json:"Until"`
	Links      hypermedia.Links   `json:"Links"`
	Data       []byte             `json:"Data"`
	ID         int                `json:"ID,string"`
	Counts     map[string]int     `json:"Counts"`
	Extra      any                `json:"Extra"`
	Ignored    string             `json:"-"`
	Untagged   string
}

func TestDecodeXMLStruct(t *testing.T) {
	ten, pmin, step := 10, xmlTestNumber(5), xmlTestNumber(0.5)
	until := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name, doc string
		want      xmlTestBody
	}{
		{"every kind", `<Subscription>
			<Note>embedded</Note><Name> spaced &amp; escaped </Name><Count>-42</Count><Limit> 10 </Limit>
			<Small>255</Small><Ratio>0.25</Ratio><Enabled>true</Enabled>
			<Groups><Group>a</Group><Group>b</Group></Groups>
			<Attributes><Pmin>5</Pmin><Step>0.5</Step></Attributes>
			<Properties><Property><Name>Temp</Name><DataType>Float</DataType></Property></Properties>
			<When>2024-05-01T10:00:00Z</When><Until>2025-01-02T03:04:05Z</Until>
			<Links><Link rel="self" href="/s/1" type="application/vnd.oma.lwm2m.subscription"/></Links>
			<Data>AAEC</Data><ID>7</ID>
			<Counts><Entry key="0">1</Entry><b>2</b></Counts>
			<Extra><X>1</X><Y><Item>2</Item></Y></Extra>
			<Untagged>u</Untagged>
			</Subscription>`,
			xmlTestBody{
				xmlTestEmbedded: xmlTestEmbedded{Note: "embedded"},
				Name:            " spaced & escaped ", Count: -42, Limit: &ten, Small: 255, Ratio: 0.25, Enabled: true,
				Groups:     []string{"a", "b"},
				Attributes: &xmlTestAttributes{Pmin: &pmin, Step: &step},
				Properties: []xmlTestProperty{{Name: "Temp", DataType: "Float"}},
				When:       time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC), Until: &until,
				Links: hypermedia.Links{{Rel: "self", Href: "/s/1", Type: "application/vnd.oma.lwm2m.subscription"}},
				Data:  []byte{0, 1, 2}, ID: 7, Counts: map[string]int{"0": 1, "b": 2},
				Extra:    map[string]any{"X": "1", "Y": []any{"2"}},
				Untagged: "u",
			}},
		{"empty elements are no value", `<S><Name/><Count/><Limit/><Enabled/><Groups/><Attributes/><Until/><Links/></S>`, xmlTestBody{}},
		{"empty root", `<S/>`, xmlTestBody{}},
		{"booleans as digits", `<S><Enabled>1</Enabled></S>`, xmlTestBody{Enabled: true}},
		{"names match case-insensitively as in JSON", `<S><name>n</name><COUNT>1</COUNT></S>`, xmlTestBody{Name: "n", Count: 1}},
		{"single item with another name is still a list", `<S><Groups><G>x</G></Groups></S>`, xmlTestBody{Groups: []string{"x"}}},
		{"what the encoder writes for the JSON form", encode(t, "S", mustTree(t, `{"Name":"n","Count":3,"Enabled":false,"Groups":["g"],"Attributes":{"Pmin":5},"Limit":null}`)),
			xmlTestBody{Name: "n", Count: 3, Groups: []string{"g"}, Attributes: &xmlTestAttributes{Pmin: &pmin}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got xmlTestBody
			if err := DecodeXML(strings.NewReader(tt.doc), &got); err != nil {
				t.Fatalf("DecodeXML: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeXML =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeXMLFieldErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		want      XMLFieldError
	}{
		{"not a number", `<S><Count>12a</Count></S>`, XMLFieldError{Field: "Count"}},
		{"a fraction for an int", `<S><Count>1.5</Count></S>`, XMLFieldError{Field: "Count"}},
		{"overflow", `<S><Small>256</Small></S>`, XMLFieldError{Field: "Small"}},
		{"negative unsigned", `<S><Small>-1</Small></S>`, XMLFieldError{Field: "Small"}},
		{"pointer to int", `<S><Limit>x</Limit></S>`, XMLFieldError{Field: "Limit"}},
		{"NaN", `<S><Ratio>NaN</Ratio></S>`, XMLFieldError{Field: "Ratio"}},
		{"infinity", `<S><Ratio>1e999</Ratio></S>`, XMLFieldError{Field: "Ratio"}},
		{"not a boolean", `<S><Enabled>yes</Enabled></S>`, XMLFieldError{Field: "Enabled"}},
		{"custom unmarshaler refuses", `<S><Attributes><Pmin>soon</Pmin></Attributes></S>`, XMLFieldError{Field: "Attributes.Pmin"}},
		{"bad time", `<S><When>yesterday</When></S>`, XMLFieldError{Field: "When"}},
		{"bad ,string int", `<S><ID>x</ID></S>`, XMLFieldError{Field: "ID"}},
		{"bad base64", `<S><Data>!!</Data></S>`, XMLFieldError{Field: "Data"}},
		{"bad item", `<S><Properties><Property><Name><X/></Name></Property></Properties></S>`, XMLFieldError{Field: "Properties.Name"}},
		{"object for a string", `<S><Name><First>a</First></Name></S>`, XMLFieldError{Field: "Name"}},
		{"text for a list", `<S><Groups>a</Groups></S>`, XMLFieldError{Field: "Groups"}},
		{"text for a struct", `<S><Attributes>a</Attributes></S>`, XMLFieldError{Field: "Attributes"}},
		{"map value", `<S><Counts><a>x</a></Counts></S>`, XMLFieldError{Field: "Counts.a"}},
		{"unknown element", `<S><Colour>red</Colour></S>`, XMLFieldError{Field: "Colour", Unknown: true}},
		{"unknown nested element", `<S><Attributes><Pmax>1</Pmax></Attributes></S>`, XMLFieldError{Field: "Attributes.Pmax", Unknown: true}},
		{"ignored field is unknown", `<S><Ignored>x</Ignored></S>`, XMLFieldError{Field: "Ignored", Unknown: true}},
		{"a sparse map is not a struct", `<S><Entry key="0">x</Entry></S>`, XMLFieldError{Field: "0", Unknown: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got xmlTestBody
			err := DecodeXML(strings.NewReader(tt.doc), &got)
			var fe *XMLFieldError
			if !errors.As(err, &fe) || *fe != tt.want {
				t.Fatalf("DecodeXML = %v, want %+v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "mimetypes: decode XML: ") || !strings.Contains(err.Error(), tt.want.Field) {
				t.Errorf("error %q does not carry the operation and the field", err)
			}
		})
	}
}

func TestDecodeXMLTargets(t *testing.T) {
	doc := `<Device><InstanceID>0</InstanceID><BatteryLevel>100</BatteryLevel><Reboot/>` +
		`<AvailablePowerSources><AvailablePowerSource>1</AvailablePowerSource><AvailablePowerSource>5</AvailablePowerSource></AvailablePowerSources>` +
		`<ErrorCode><Entry key="0">1</Entry><Entry key="12">2</Entry></ErrorCode></Device>`
	want := map[string]any{
		"InstanceID": "0", "BatteryLevel": "100", "Reboot": "",
		"AvailablePowerSources": []any{"1", "5"},
		"ErrorCode":             map[string]any{"0": "1", "12": "2"},
	}
	var m map[string]any
	if err := DecodeXML(strings.NewReader(doc), &m); err != nil || !reflect.DeepEqual(m, want) {
		t.Errorf("DecodeXML into map = %#v, %v\nwant %#v", m, err, want)
	}
	var a any
	if err := DecodeXML(strings.NewReader(doc), &a); err != nil || !reflect.DeepEqual(a, any(want)) {
		t.Errorf("DecodeXML into any = %#v, %v\nwant %#v", a, err, want)
	}
	var sparse map[int]float64
	if err := DecodeXML(strings.NewReader(`<V><Entry key="3">1.5</Entry><Entry key="7">2</Entry></V>`), &sparse); err != nil ||
		!reflect.DeepEqual(sparse, map[int]float64{3: 1.5, 7: 2}) {
		t.Errorf("DecodeXML into map[int]float64 = %v, %v", sparse, err)
	}
	var list []int
	if err := DecodeXML(strings.NewReader(`<Values><Value>1</Value><Value>2</Value></Values>`), &list); err != nil ||
		!reflect.DeepEqual(list, []int{1, 2}) {
		t.Errorf("DecodeXML into []int = %v, %v", list, err)
	}
	var f float64
	if err := DecodeXML(strings.NewReader(`<Value>0.5</Value>`), &f); err != nil || f != 0.5 {
		t.Errorf("DecodeXML into float64 = %v, %v", f, err)
	}

	var s xmlTestBody
	for _, bad := range []struct {
		name   string
		target any
		doc    string
	}{
		{"not a pointer", s, `<S/>`},
		{"nil pointer", (*xmlTestBody)(nil), `<S/>`},
		{"nil", nil, `<S/>`},
		{"text into a struct", &s, `<S>text</S>`},
		{"text into a map", &m, `<S>text</S>`},
		{"array into a map", &m, `<Items><Item>1</Item></Items>`},
		{"object into an int", &f, `<S><A>1</A></S>`},
		{"channel", new(chan int), `<S>1</S>`},
	} {
		t.Run(bad.name, func(t *testing.T) {
			err := DecodeXML(strings.NewReader(bad.doc), bad.target)
			var fe *XMLFieldError
			if err == nil || errors.As(err, &fe) || !strings.HasPrefix(err.Error(), "mimetypes: decode XML: ") {
				t.Errorf("DecodeXML = %v, want a decode XML error without a field", err)
			}
		})
	}
}

func TestJSONFields(t *testing.T) {
	type inner struct {
		A string `json:"A"`
		B string
		C string `json:"C"`
	}
	type other struct {
		B string
		D string
	}
	type outer struct {
		inner
		*other
		C string // shallower than inner.C
		b string // unexported: not a JSON field
	}
	var names []string
	for _, f := range jsonFields(reflect.TypeFor[outer]()) {
		names = append(names, f.name)
	}
	// B is ambiguous between inner and other, as encoding/json sees it.
	if got := strings.Join(names, ","); got != "A,D,C" {
		t.Errorf("jsonFields = %s, want A,D,C", got)
	}
	_ = outer{}.b
}

// FuzzDecodeXML checks that no input panics the decoder and that whatever
// it accepts the encoder writes back to the same value.
func FuzzDecodeXML(f *testing.F) {
	for _, g := range goldenTrees() {
		f.Add([]byte(encode(f, g.root, mustTree(f, g.json))))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		err := DecodeXML(bytes.NewReader(data), &v)
		root, tree, perr := parseXML(bytes.NewReader(data))
		if (err == nil) != (perr == nil) {
			t.Fatalf("DecodeXML: %v, but parseXML: %v", err, perr)
		}
		var body xmlTestBody
		_ = DecodeXML(bytes.NewReader(data), &body) // must not panic
		if err != nil {
			return
		}
		if !isName(root) {
			root = "Root" // item names do not depend on the root: see TestXMLRoundTrip
		}
		for _, tc := range []struct {
			name string
			v    any
			back func([]byte) (any, error)
		}{
			{"plain", v, func(b []byte) (any, error) {
				var w any
				err := DecodeXML(bytes.NewReader(b), &w)
				return w, err
			}},
			{"ordered", tree, func(b []byte) (any, error) {
				_, w, err := parseXML(bytes.NewReader(b))
				return w, err
			}},
		} {
			var b bytes.Buffer
			if err := EncodeXML(&b, root, tc.v); err != nil {
				t.Fatalf("%s: EncodeXML(%#v): %v", tc.name, tc.v, err)
			}
			w, err := tc.back(b.Bytes())
			if err != nil {
				t.Fatalf("%s: decoding %s: %v", tc.name, b.Bytes(), err)
			}
			if !reflect.DeepEqual(w, tc.v) {
				t.Fatalf("%s: %#v\nwrites %s\nreads back as %#v", tc.name, tc.v, b.Bytes(), w)
			}
		}
	})
}
