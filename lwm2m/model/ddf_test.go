package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// omaModels is the OMA registry mirror that CI checks out beside the repo.
const omaModels = "../../../shared/oma-models"

// TestParseDDFOMARegistry parses every file of the OMA registry mirror; all
// of them are valid DDF, so all must parse and be internally consistent.
func TestParseDDFOMARegistry(t *testing.T) {
	tests := []struct {
		dir string
		min int // guards against the folder silently going missing
	}{
		{dir: "core", min: 20},
		{dir: "registry", min: 300},
	}
	total := 0
	for _, tc := range tests {
		files, err := filepath.Glob(filepath.Join(omaModels, tc.dir, "*.xml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) < tc.min {
			t.Fatalf("%s: found %d files, want at least %d", tc.dir, len(files), tc.min)
		}
		for _, file := range files {
			t.Run(tc.dir+"/"+filepath.Base(file), func(t *testing.T) {
				objs := parseFile(t, file)
				// Registry files are named <ObjectID>.xml or <ObjectID>-<version>.xml.
				base := strings.TrimSuffix(filepath.Base(file), ".xml")
				base, _, _ = strings.Cut(base, "-")
				want, err := strconv.Atoi(base)
				if err != nil {
					t.Fatalf("file name %q has no object ID", file)
				}
				if len(objs) != 1 || int(objs[0].ID) != want {
					t.Fatalf("got %d objects, first %d; want one, object %d", len(objs), objs[0].ID, want)
				}
				checkObject(t, objs[0])
			})
			total++
		}
	}
	t.Logf("parsed %d OMA DDF files", total)
}

func parseFile(t *testing.T, file string) []*Object {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs, err := ParseDDF(f)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// checkObject asserts the invariants the parser promises for any object it
// returns; the fuzz test relies on it too.
func checkObject(t *testing.T, o *Object) {
	t.Helper()
	if o.ID > maxID {
		t.Errorf("object ID %d out of range", o.ID)
	}
	if o.Version == "" || o.LwM2MVersion == "" {
		t.Errorf("object %d: empty version %q / %q", o.ID, o.Version, o.LwM2MVersion)
	}
	if o.SerialisationName == "" {
		t.Errorf("object %d: empty SerialisationName", o.ID)
	}
	if want := "application/vnd.oma.lwm2m." + strings.ToLower(o.SerialisationName); o.MIMEType != want {
		t.Errorf("object %d: MIMEType %q, want %q", o.ID, o.MIMEType, want)
	}
	ids := map[uint16]bool{}
	names := map[string]bool{}
	for _, r := range o.Resources {
		if r.ID > maxID || ids[r.ID] {
			t.Errorf("object %d: bad or duplicate resource ID %d", o.ID, r.ID)
		}
		ids[r.ID] = true
		key := strings.ToLower(r.SerialisationName)
		if r.SerialisationName == "" || names[key] {
			t.Errorf("object %d resource %d: empty or duplicate SerialisationName %q", o.ID, r.ID, r.SerialisationName)
		}
		names[key] = true
		switch r.Operations {
		case "", "R", "W", "RW", "E":
		default:
			t.Errorf("object %d resource %d: Operations %q", o.ID, r.ID, r.Operations)
		}
		if got, ok := o.ResourceByName(r.SerialisationName); !ok || got != r {
			t.Errorf("object %d: ResourceByName(%q) does not find resource %d", o.ID, r.SerialisationName, r.ID)
		}
		if got, ok := o.ResourceByName(strconv.Itoa(int(r.ID))); !ok || got != r {
			t.Errorf("object %d: ResourceByName(%d) does not find resource %d", o.ID, r.ID, r.ID)
		}
	}
}

type goldenResource struct {
	ID                uint16 `json:"id"`
	Name              string `json:"name"`
	SerialisationName string `json:"serialisationName"`
	Type              string `json:"type"`
	Operations        string `json:"operations"`
	Multiple          bool   `json:"multiple"`
	Mandatory         bool   `json:"mandatory"`
}

type goldenObject struct {
	ID                uint16           `json:"id"`
	Name              string           `json:"name"`
	Version           string           `json:"version"`
	MultipleInstances bool             `json:"multipleInstances"`
	Mandatory         bool             `json:"mandatory"`
	MIMEType          string           `json:"mimeType"`
	Resources         []goldenResource `json:"resources"`
}

// TestParseDDFGoldenDevice checks object 3 against a golden file that was
// extracted from ddf/3.xml independently of this parser.
func TestParseDDFGoldenDevice(t *testing.T) {
	raw, err := os.ReadFile("testdata/object3.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var want goldenObject
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	objs := parseFile(t, "ddf/3.xml")
	if len(objs) != 1 {
		t.Fatalf("got %d objects", len(objs))
	}
	o := objs[0]
	got := goldenObject{ID: o.ID, Name: o.Name, Version: o.Version, MultipleInstances: o.MultipleInstances, Mandatory: o.Mandatory, MIMEType: o.MIMEType}
	for _, r := range o.Resources {
		got.Resources = append(got.Resources, goldenResource{
			ID: r.ID, Name: r.Name, SerialisationName: r.SerialisationName, Type: r.Type.String(),
			Operations: r.Operations, Multiple: r.Multiple, Mandatory: r.Mandatory,
		})
	}
	gotJSON, _ := json.MarshalIndent(got, "", " ")
	wantJSON, _ := json.MarshalIndent(want, "", " ")
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("object 3 differs from golden:\ngot  %s\nwant %s", gotJSON, wantJSON)
	}
}

// ddfDoc builds a one-object document; resources are raw <Item> elements.
func ddfDoc(objectID string, items ...string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<LWM2M><Object ObjectType="MODefinition"><Name>Test Object</Name><ObjectID>` + objectID +
		`</ObjectID><MultipleInstances>Multiple</MultipleInstances><Mandatory>Optional</Mandatory><Resources>` +
		strings.Join(items, "") + `</Resources></Object></LWM2M>`
}

func item(id, name, ops, typ string) string {
	return `<Item ID="` + id + `"><Name>` + name + `</Name><Operations>` + ops +
		`</Operations><MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory><Type>` +
		typ + `</Type><RangeEnumeration></RangeEnumeration><Units></Units><Description>d</Description></Item>`
}

func TestParseDDFErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"empty", "", "EOF"},
		{"not XML", "hello", "EOF"},
		{"unclosed", `<LWM2M><Object><ObjectID>3</ObjectID>`, "unexpected EOF"},
		{"wrong root", `<Objects><Object><ObjectID>3</ObjectID></Object></Objects>`, "expected element type <LWM2M>"},
		{"no object", `<LWM2M></LWM2M>`, "no <Object> element"},
		{"missing ObjectID", `<LWM2M><Object><Name>X</Name></Object></LWM2M>`, `object "X": missing ObjectID`},
		{"empty ObjectID", ddfDoc(""), "ObjectID: empty"},
		{"non-numeric ObjectID", ddfDoc("three"), `"three" is not an ID`},
		{"negative ObjectID", ddfDoc("-1"), `"-1" is not an ID`},
		{"ObjectID 65535", ddfDoc("65535"), `"65535" is not an ID in 0..65534`},
		{"ObjectID too big", ddfDoc("70000"), `"70000" is not an ID`},
		{"missing resource ID", ddfDoc("3", `<Item><Name>R</Name></Item>`), `resource "R": missing ID attribute`},
		{"resource ID 65535", ddfDoc("3", item("65535", "A", "R", "String")), `"65535" is not an ID in 0..65534`},
		{"resource ID hex", ddfDoc("3", item("0x1", "A", "R", "String")), `"0x1" is not an ID`},
		{"unknown type", ddfDoc("3", item("1", "A", "R", "Double")), `resource 1: lwm2m: unknown data type "Double"`},
		{"duplicate resource", ddfDoc("3", item("1", "A", "R", "String"), item("1", "B", "R", "String")), "object 3: duplicate resource ID 1"},
		{"bad operations", ddfDoc("3", item("1", "A", "RX", "String")), `Operations "RX": unknown operation 'X'`},
		{"execute and read", ddfDoc("3", item("1", "A", "RE", "")), `executable resources cannot be read or written`},
		{"bad multiple", strings.Replace(ddfDoc("3"), "Multiple<", "Many<", 1), `MultipleInstances "Many"`},
		{"bad mandatory", strings.Replace(ddfDoc("3"), ">Optional<", ">Maybe<", 1), `Mandatory "Maybe"`},
		{"duplicate object", `<LWM2M><Object><ObjectID>3</ObjectID></Object><Object><ObjectID>3</ObjectID></Object></LWM2M>`, "object 3 defined more than once"},
		{"unsupported encoding", `<?xml version="1.0" encoding="Shift_JIS"?><LWM2M/>`, `unsupported encoding "Shift_JIS"`},
		{"invalid UTF-8", "<LWM2M><Object><Name>\xff</Name><ObjectID>1</ObjectID></Object></LWM2M>", "invalid UTF-8"},
		{"odd UTF-16", "\xff\xfe<\x00L", "odd number of bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := ParseDDF(strings.NewReader(tc.doc))
			if err == nil {
				t.Fatalf("no error; got %d objects", len(objs))
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "model: parse DDF: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want prefix %q and %q", msg, "model: parse DDF: ", tc.want)
			}
		})
	}
}

// encodeUTF16 encodes s with a byte order mark, as Windows editors save "Unicode".
func encodeUTF16(s string, littleEndian bool) string {
	var b []byte
	if littleEndian {
		b = append(b, 0xFF, 0xFE)
	} else {
		b = append(b, 0xFE, 0xFF)
	}
	for _, r := range s {
		if r > 0xFFFF {
			panic("test helper only handles the BMP")
		}
		if littleEndian {
			b = append(b, byte(r), byte(r>>8))
		} else {
			b = append(b, byte(r>>8), byte(r))
		}
	}
	return string(b)
}

func TestParseDDFEncodings(t *testing.T) {
	body := func(units string) string {
		return `<LWM2M><Object><Name>Temp</Name><ObjectID>3303</ObjectID><Resources>` +
			`<Item ID="5700"><Name>Sensor Value</Name><Operations>R</Operations><Type>Float</Type><Units>` + units +
			`</Units></Item></Resources></Object></LWM2M>`
	}
	tests := []struct {
		name, doc, units string
	}{
		{"no declaration", body("Cel"), "Cel"},
		{"utf-8 declaration", `<?xml version="1.0" encoding="utf-8"?>` + body("°C"), "°C"},
		{"utf-8 BOM", "\uFEFF" + `<?xml version="1.0" encoding="UTF-8"?>` + body("°C"), "°C"},
		{"utf-8 BOM and leading comment", "\uFEFF<!-- licence -->\n" + body("°C"), "°C"},
		{"us-ascii", `<?xml version="1.0" encoding="US-ASCII"?>` + body("Cel"), "Cel"},
		{"iso-8859-1", `<?xml version="1.0" encoding="ISO-8859-1"?>` + body("\xb0C \xe9t\xe9"), "°C été"},
		{"latin1 alias", `<?xml version="1.0" encoding="latin1"?>` + body("\xb0C"), "°C"},
		{"utf-16le BOM", encodeUTF16(`<?xml version="1.0" encoding="UTF-16"?>`+body("°C"), true), "°C"},
		{"utf-16be BOM", encodeUTF16(`<?xml version="1.0" encoding="UTF-16"?>`+body("°C"), false), "°C"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := ParseDDF(strings.NewReader(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			r, ok := objs[0].Resource(5700)
			if !ok || r.Units != tc.units || r.SerialisationName != "SensorValue" || r.Type != lwm2m.TypeFloat {
				t.Errorf("got %+v, want units %q", r, tc.units)
			}
		})
	}
}

func TestParseDDFDefaultsAndNames(t *testing.T) {
	doc := `<LWM2M><Object>
		<Name>  LwM2M
		Server </Name><ObjectID> 1 </ObjectID><Resources>` +
		item("0", "Short Server ID", " rw ", "Integer") +
		item("1", "short-server id", "R", "Unsigned Integer") +
		item("2", "Short Server ID2", "W", "Time") +
		item("3", "", "E", "") +
		item("4", "42", "R", "Objlnk") +
		item("5", "!!", "R", "Corelnk") +
		`</Resources></Object></LWM2M>`
	objs, err := ParseDDF(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	o := objs[0]
	if o.Name != "LwM2M Server" || o.SerialisationName != "LwM2MServer" || o.MIMEType != "application/vnd.oma.lwm2m.lwm2mserver" {
		t.Errorf("object names: %q %q %q", o.Name, o.SerialisationName, o.MIMEType)
	}
	if o.Version != "1.0" || o.LwM2MVersion != "1.0" || o.MultipleInstances || o.Mandatory {
		t.Errorf("object defaults: %+v", o)
	}
	tests := []struct {
		id   uint16
		name string
		ops  string
		typ  lwm2m.DataType
	}{
		{0, "ShortServerID", "RW", lwm2m.TypeInteger},
		{1, "ShortServerId1", "R", lwm2m.TypeUnsignedInteger}, // collides case-insensitively with 0
		{2, "ShortServerID2", "W", lwm2m.TypeTime},
		{3, "Resource", "E", lwm2m.TypeNone},
		{4, "Resource42", "R", lwm2m.TypeObjectLink}, // an all-digit name would read as an ID
		{5, "Resource5", "R", lwm2m.TypeCoreLink},    // "Resource" is taken by 3
	}
	for _, tc := range tests {
		r, ok := o.Resource(tc.id)
		if !ok {
			t.Fatalf("resource %d missing", tc.id)
		}
		if r.SerialisationName != tc.name || r.Operations != tc.ops || r.Type != tc.typ {
			t.Errorf("resource %d: got %q %q %v, want %q %q %v", tc.id, r.SerialisationName, r.Operations, r.Type, tc.name, tc.ops, tc.typ)
		}
	}
}

func TestParseDDFObjectNames(t *testing.T) {
	tests := []struct {
		name, serialisation, mime string
	}{
		{"Device", "Device", "application/vnd.oma.lwm2m.device"},
		{"LwM2M Server", "LwM2MServer", "application/vnd.oma.lwm2m.lwm2mserver"},
		{"On/Off switch", "OnOffSwitch", "application/vnd.oma.lwm2m.onoffswitch"},
		{"3-Phase Power Meter", "3PhasePowerMeter", "application/vnd.oma.lwm2m.3phasepowermeter"},
		{"", "Object20000", "application/vnd.oma.lwm2m.object20000"},
		{"--", "Object20000", "application/vnd.oma.lwm2m.object20000"},
	}
	for _, tc := range tests {
		doc := `<LWM2M><Object><Name>` + tc.name + `</Name><ObjectID>20000</ObjectID></Object></LWM2M>`
		objs, err := ParseDDF(strings.NewReader(doc))
		if err != nil {
			t.Fatalf("%q: %v", tc.name, err)
		}
		if o := objs[0]; o.SerialisationName != tc.serialisation || o.MIMEType != tc.mime {
			t.Errorf("%q: got %q %q, want %q %q", tc.name, o.SerialisationName, o.MIMEType, tc.serialisation, tc.mime)
		}
	}
}

func TestCamelCase(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Battery Level", "BatteryLevel"},
		{"Sensor Value", "SensorValue"},
		{"LwM2M Server", "LwM2MServer"},
		{"Device", "Device"},
		{"On/Off switch", "OnOffSwitch"},
		{"x-coordinate", "XCoordinate"},
		{"Active energy (|+A|-|-A|) Combined total", "ActiveEnergyAACombinedTotal"},
		{"3-Phase Power Meter", "3PhasePowerMeter"},
		{"Temperature °C", "TemperatureC"},
		{"", ""},
		{"  ", ""},
	}
	for _, tc := range tests {
		if got := camelCase(tc.in); got != tc.want {
			t.Errorf("camelCase(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestResourceByName(t *testing.T) {
	o := &Object{Resources: []*Resource{
		{ID: 9, SerialisationName: "BatteryLevel"},
		{ID: 13, SerialisationName: "CurrentTime"},
	}}
	tests := []struct {
		in     string
		wantID uint16
		ok     bool
	}{
		{"BatteryLevel", 9, true},
		{"batterylevel", 9, true},
		{"CURRENTTIME", 13, true},
		{"13", 13, true},
		{"9", 9, true},
		{"10", 0, false},
		{"-9", 0, false},
		{"65536", 0, false},
		{"Battery Level", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		r, ok := o.ResourceByName(tc.in)
		if ok != tc.ok || (ok && r.ID != tc.wantID) {
			t.Errorf("ResourceByName(%q) = %v, %v; want %d, %v", tc.in, r, ok, tc.wantID, tc.ok)
		}
	}
}

func TestResourceOperations(t *testing.T) {
	tests := []struct {
		ops     string
		r, w, e bool
	}{
		{"", false, false, false},
		{"R", true, false, false},
		{"W", false, true, false},
		{"RW", true, true, false},
		{"E", false, false, true},
	}
	for _, tc := range tests {
		res := &Resource{Operations: tc.ops}
		if res.Readable() != tc.r || res.Writable() != tc.w || res.Executable() != tc.e {
			t.Errorf("%q: got R=%v W=%v E=%v", tc.ops, res.Readable(), res.Writable(), res.Executable())
		}
	}
}
