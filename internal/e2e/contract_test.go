package e2e

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/internal/deviceserver"
	"github.com/deviceserver/deviceserver/internal/testserver"
	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
	mt "github.com/deviceserver/deviceserver/mimetypes"
	"github.com/deviceserver/deviceserver/server"
)

// wireFormat is one representation the contract is checked in (API.md
// section 1): every route answers, and takes bodies, in JSON and in XML.
type wireFormat struct {
	name, suffix string
}

var (
	jsonFormat  = wireFormat{"json", "+json"}
	xmlFormat   = wireFormat{"xml", "+xml"}
	wireFormats = []wireFormat{jsonFormat, xmlFormat}
)

// encode renders a request body of vendor type typ; XML bodies are made
// with mimetypes.EncodeXML from the same Go value JSON bodies are made from.
func (f wireFormat) encode(t *testing.T, typ string, body any) []byte {
	t.Helper()
	if f == jsonFormat {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("encode JSON body: %v", err)
		}
		return b
	}
	var b bytes.Buffer
	if err := mt.EncodeXML(&b, mt.XMLName(typ), body); err != nil {
		t.Fatalf("encode XML body: %v", err)
	}
	return b.Bytes()
}

// decode parses an answer body into a generic object; an XML answer's root
// element must be the one its Content-Type names.
func (f wireFormat) decode(t *testing.T, a answer) map[string]any {
	t.Helper()
	var v any
	var err error
	if f == jsonFormat {
		err = json.Unmarshal(a.raw, &v)
	} else {
		if root := xmlRoot(a.raw); root != mt.XMLName(a.contentType()) {
			t.Errorf("XML root element %q, want %q for %s", root, mt.XMLName(a.contentType()), a.contentType())
		}
		err = mt.DecodeXML(bytes.NewReader(a.raw), &v)
	}
	if err != nil {
		t.Fatalf("%s body does not parse: %v\n%s", f.name, err, a.raw)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s body is %T, want an object:\n%s", f.name, v, a.raw)
	}
	return obj
}

// xmlRoot returns the name of a document's root element.
func xmlRoot(raw []byte) string {
	d := xml.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se.Name.Local
		}
	}
}

// answer is one HTTP response.
type answer struct {
	status int
	header http.Header
	raw    []byte
}

func (a answer) contentType() string { return a.header.Get("Content-Type") }

func (a answer) String() string {
	return fmt.Sprintf("%d %s %.300s", a.status, a.contentType(), a.raw)
}

// send makes one request; empty token, accept or ctype leave the header out.
func send(t *testing.T, method, u, token, accept, ctype string, body []byte) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, raw: raw}
}

// grant asks POST /oauth/token for tokens.
func grant(t *testing.T, base string, form url.Values) (access, refresh string) {
	t.Helper()
	a := send(t, http.MethodPost, base+"/oauth/token", "", "", "application/x-www-form-urlencoded", []byte(form.Encode()))
	var tok struct {
		Access  string `json:"access_token"`
		Refresh string `json:"refresh_token"`
	}
	if a.status != http.StatusOK || json.Unmarshal(a.raw, &tok) != nil || tok.Access == "" || tok.Refresh == "" {
		t.Fatalf("token: %v", a)
	}
	return tok.Access, tok.Refresh
}

// members returns the sorted top-level member names of a representation.
func members(obj map[string]any) []string {
	out := make([]string, 0, len(obj))
	for k := range obj {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// text renders a decoded scalar as XML shows it: "5" for JSON's 5.
func text(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

// strs renders a decoded array of scalars as text.
func strs(v any) []string {
	var out []string
	arr, _ := v.([]any)
	for _, x := range arr {
		out = append(out, text(x))
	}
	return out
}

// withoutKeys copies obj without the named members.
func withoutKeys(obj map[string]any, names ...string) map[string]any {
	out := map[string]any{}
	for k, v := range obj {
		out[k] = v
	}
	for _, n := range names {
		delete(out, n)
	}
	return out
}

// contractRow is one request of the route table. Path variables come
// from the format's fixtures; a value "$name" in vars names another
// fixture, so that a row can address what an earlier row created.
type contractRow struct {
	method, route string
	vars          map[string]string
	asB           bool                   // with organisation B's token (access keys of a non-administrator)
	accept        string                 // vendor type of the answer (Accept: accept+suffix); a 204 has no body
	ctype         string                 // vendor type of the body; "form" for a form body
	body          func(f wireFormat) any // the body, sent as ctype+suffix
	form          func() url.Values
	status        int
	jsonOnly      bool              // the route's representation exists only in JSON: +xml is 406
	save          map[string]string // fixture ← answer member, for later rows
	query         string            // appended to the path after "?"
	// m2m: the compatibility API, plain application/json in and out
	// (accept and ctype are unused): the JSON pass sends and wants
	// application/json, the XML pass asks for application/xml and wants a
	// 406 in the API's {"msg","code"} shape.
	m2m bool
}

// TestContract checks every route of the router in JSON and in XML through
// a real server with a simulated device (API.md section 1): status, the
// exact vendor Content-Type with the format suffix asked for, a body that
// parses, and the same members in both formats.
func TestContract(t *testing.T) {
	srv := testserver.Start(t, func(c *deviceserver.Config) { c.RequestTimeout = shortRequestTimeout })
	rc := testserver.NewReceiver(t)
	admin, adminRefresh := grant(t, srv.URL, url.Values{"grant_type": {"password"}, "username": {testserver.AdminKey}, "password": {testserver.AdminSecret}})
	api := testserver.Client{T: t, Token: admin}

	// Organisation B, whose POST /accesskeys adds keys to its own
	// organisation (the administrator's makes new organisations), so that
	// the access-key rows can create, change and delete a key.
	r := api.Do(http.MethodPost, srv.URL+"/accesskeys", mt.Type(mt.AccessKey), map[string]any{"Name": "contract-b"})
	bKey := created(t, "organisation B", r, "Key")
	bToken, _ := grant(t, srv.URL, url.Values{"grant_type": {"password"}, "username": {bKey}, "password": {r.Body["Secret"].(string)}})

	dev := startDevice(t, srv, sim.Config{Endpoint: "contract-dev", Lifetime: 300, Light: true, Manufacturer: "Contract Co"})
	clientID := func(ep string) string {
		t.Helper()
		id, _ := find(t, api.Get(srv.URL+"/clients?name="+ep).Body, "Name", ep)["ClientID"].(string)
		return id
	}
	client := clientID("contract-dev")
	// Devices that never answer: one per format for DELETE /clients/{client}
	// (the simulated device must stay registered), one for the 504.
	for _, ep := range []string{"contract-gone-json", "contract-gone-xml", "contract-silent"} {
		registerSilentDevice(t, srv.CoAPAddr.String(), ep)
	}
	silent := clientID("contract-silent")

	fixtures := map[wireFormat]map[string]string{}
	for i, f := range wireFormats {
		fixtures[f] = map[string]string{
			"client": client, "object": "3", "instance": "0", "resource": "0", "metric": "BytesSent",
			"goneclient": clientID("contract-gone-" + f.name),
			"objectid":   strconv.Itoa(40100 + i), "instanceid": strconv.Itoa(7 + i),
			// The XML pass of the m2m rows stops at 406, before the ID matters.
			"subscriptionid": "none",
		}
	}
	temperature := "application/vnd.oma.lwm2m.temperature"
	device := "application/vnd.oma.lwm2m.device"
	valve := func(id, name string) map[string]any {
		return map[string]any{"ObjectID": id, "Name": name, "Description": "A valve <&> \"quoted\"", "Properties": []any{
			map[string]any{"PropertyID": "0", "Name": "Open", "DataType": "Boolean", "Access": "ReadWrite", "IsMandatory": true},
			map[string]any{"PropertyID": "1", "Name": "Flow", "DataType": "Float", "Access": "Read", "Units": "l/min", "MinValue": "0", "MaxValue": "100"},
			map[string]any{"PropertyID": "2", "Name": "Log", "DataType": "String", "Access": "Read", "IsCollection": true},
			map[string]any{"PropertyID": "3", "Name": "Flush", "DataType": "None", "Access": "Execute"},
		}}
	}
	const (
		created201 = http.StatusCreated
		ok200      = http.StatusOK
		none204    = http.StatusNoContent
	)
	sub := mt.Type(mt.Subscription)
	inst3303 := map[string]string{"object": "3303"}

	rows := []contractRow{
		{method: "GET", route: "/", accept: mt.Type(mt.API), status: ok200},
		{method: "GET", route: "/versions", accept: mt.Type(mt.Versions), status: ok200},
		{method: "GET", route: "/openapi.json", accept: "application/vnd.oai.openapi", status: ok200, jsonOnly: true},
		{method: "POST", route: "/oauth/token", accept: mt.Type(mt.OAuthToken), ctype: "form", status: ok200, jsonOnly: true,
			form: func() url.Values { return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {adminRefresh}} }},

		{method: "GET", route: "/accesskeys", asB: true, accept: mt.Type(mt.AccessKeys), status: ok200},
		{method: "POST", route: "/accesskeys", asB: true, accept: mt.Type(mt.AccessKey), ctype: mt.Type(mt.AccessKey), status: created201,
			body: func(f wireFormat) any { return map[string]any{"Name": "contract-" + f.name} }, save: map[string]string{"key": "Key"}},
		{method: "GET", route: "/accesskeys/{key}", asB: true, accept: mt.Type(mt.AccessKey), status: ok200},
		{method: "PUT", route: "/accesskeys/{key}", asB: true, accept: mt.Type(mt.AccessKey), ctype: mt.Type(mt.AccessKey), status: none204,
			body: func(f wireFormat) any { return map[string]any{"Name": "renamed-" + f.name} }},
		{method: "DELETE", route: "/accesskeys/{key}", asB: true, accept: mt.Type(mt.AccessKey), status: none204},

		{method: "GET", route: "/clients", accept: mt.Type(mt.Clients), status: ok200},
		{method: "GET", route: isoClient, accept: mt.Type(mt.Client), status: ok200},
		{method: "DELETE", route: isoClient, vars: map[string]string{"client": "$goneclient"}, accept: mt.Type(mt.Client), status: none204},
		{method: "GET", route: isoClient + "/objecttypes", accept: mt.Type(mt.ObjectTypes), status: ok200},
		{method: "GET", route: isoObject, accept: mt.Type(mt.ObjectType), status: ok200},
		{method: "GET", route: isoObject + "/instances", vars: inst3303, accept: temperature + "s", status: ok200},
		{method: "POST", route: isoObject + "/instances", vars: inst3303, accept: mt.Type(mt.ResourceCreated), ctype: temperature, status: created201,
			body: func(f wireFormat) any {
				return map[string]any{"InstanceID": fixtures[f]["instanceid"], "ApplicationType": "probe-" + f.name}
			}, save: map[string]string{"newinstance": "ID"}},
		{method: "GET", route: isoInstance, accept: device, status: ok200},
		{method: "PUT", route: isoInstance, accept: device, ctype: device, status: none204,
			body: func(f wireFormat) any { return map[string]any{"UTCOffset": "+01:00", "Timezone": "Europe/" + f.name} }},
		{method: "DELETE", route: isoInstance, vars: map[string]string{"object": "3303", "instance": "$newinstance"}, accept: temperature, status: none204},
		{method: "GET", route: isoResource, accept: device, status: ok200},
		{method: "PUT", route: isoResource, vars: map[string]string{"resource": "14"}, accept: device, ctype: device, status: none204,
			body: func(f wireFormat) any { return map[string]any{"UTCOffset": "+02:00"} }},
		{method: "POST", route: isoResource, vars: map[string]string{"resource": "4"}, accept: device, status: none204},

		{method: "GET", route: "/objecttypes/definitions", accept: mt.Type(mt.ObjectDefinitions), status: ok200},
		{method: "POST", route: "/objecttypes/definitions", accept: mt.Type(mt.ResourceCreated), ctype: mt.Type(mt.ObjectDefinition), status: created201,
			body: func(f wireFormat) any { return valve(fixtures[f]["objectid"], "Contract Valve "+f.name) }, save: map[string]string{"definition": "ID"}},
		{method: "GET", route: "/objecttypes/definitions/{definition}", accept: mt.Type(mt.ObjectDefinition), status: ok200},
		{method: "PUT", route: "/objecttypes/definitions/{definition}", accept: mt.Type(mt.ObjectDefinition), ctype: mt.Type(mt.ObjectDefinition), status: none204,
			body: func(f wireFormat) any { return valve(fixtures[f]["objectid"], "Renamed Valve "+f.name) }},
		{method: "DELETE", route: "/objecttypes/definitions/{definition}", accept: mt.Type(mt.ObjectDefinition), status: none204},

		{method: "GET", route: "/subscriptions", accept: mt.Type(mt.Subscriptions), status: ok200},
		{method: "POST", route: "/subscriptions", accept: mt.Type(mt.ResourceCreated), ctype: sub, status: created201,
			body: func(f wireFormat) any {
				return map[string]any{"SubscriptionType": "ClientConnected", "Url": rc.URL + "/" + f.name, "DeletionPolicy": 0}
			}, save: map[string]string{"subscription": "ID"}},
		{method: "GET", route: isoClient + "/subscriptions", accept: mt.Type(mt.Subscriptions), status: ok200},
		{method: "POST", route: isoClient + "/subscriptions", accept: mt.Type(mt.ResourceCreated), ctype: sub, status: created201,
			body: func(f wireFormat) any {
				return map[string]any{"SubscriptionType": "ClientUpdated", "Url": rc.URL + "/" + f.name}
			}},
		{method: "GET", route: isoInstance + "/subscriptions", vars: inst3303, accept: mt.Type(mt.Subscriptions), status: ok200},
		{method: "POST", route: isoInstance + "/subscriptions", vars: inst3303, accept: mt.Type(mt.ResourceCreated), ctype: sub, status: created201,
			body: func(f wireFormat) any {
				return map[string]any{"SubscriptionType": "Observation", "Url": rc.URL + "/" + f.name, "Property": "SensorValue",
					"Attributes": map[string]any{"Pmin": 0, "Pmax": "300", "Step": 0.5}}
			}},
		{method: "GET", route: "/subscriptions/{subscription}", accept: sub, status: ok200},
		{method: "PUT", route: "/subscriptions/{subscription}", accept: sub, ctype: sub, status: none204,
			body: func(f wireFormat) any {
				return map[string]any{"Url": rc.URL + "/moved-" + f.name, "AcceptContentType": "application/xml", "DeletionPolicy": 1, "Secret": "s3cret"}
			}},
		{method: "DELETE", route: "/subscriptions/{subscription}", accept: sub, status: none204},

		{method: "GET", route: "/groups", accept: mt.Type(mt.Groups), status: ok200},
		{method: "POST", route: "/groups", accept: mt.Type(mt.ResourceCreated), ctype: mt.Type(mt.Group), status: created201,
			body: func(f wireFormat) any {
				return map[string]any{"Name": "contract-" + f.name, "Endpoints": []string{"contract-dev", "never-" + f.name}}
			}, save: map[string]string{"group": "ID"}},
		{method: "GET", route: "/groups/{group}", accept: mt.Type(mt.Group), status: ok200},
		{method: "PUT", route: "/groups/{group}", accept: mt.Type(mt.Group), ctype: mt.Type(mt.Group), status: none204,
			body: func(f wireFormat) any {
				return map[string]any{"Name": "renamed-" + f.name, "Endpoints": []string{"contract-dev"}}
			}},
		{method: "DELETE", route: "/groups/{group}", accept: mt.Type(mt.Group), status: none204},

		{method: "PUT", route: "/m2m/applications/registration", m2m: true, status: ok200,
			body: func(wireFormat) any {
				return map[string]any{"url": rc.URL + "/m2m", "headers": map[string]string{"X-Contract": "yes"}}
			}},
		{method: "GET", route: "/m2m/applications/registration", m2m: true, status: ok200},
		{method: "POST", route: "/m2m/subscriptions", query: "type=lifecycleEvents", m2m: true, status: http.StatusAccepted,
			body: func(wireFormat) any {
				return map[string]any{"criteria": map[string]any{"serialNumbers": []string{"contract-dev"}}, "events": []string{"registration", "update"}}
			}, save: map[string]string{"subscriptionid": "subscriptionId"}},
		{method: "GET", route: "/m2m/subscriptions/{subscriptionid}", m2m: true, status: ok200},
		{method: "DELETE", route: "/m2m/subscriptions/{subscriptionid}", m2m: true, status: ok200},
		{method: "DELETE", route: "/m2m/applications/registration", m2m: true, status: ok200},

		{method: "GET", route: "/identities", accept: mt.Type(mt.Identities), status: ok200},
		{method: "GET", route: "/identities/psk", accept: mt.Type(mt.PSKIdentities), status: ok200},
		{method: "POST", route: "/identities/psk", accept: mt.Type(mt.PSKIdentity), ctype: mt.Type(mt.PSKIdentity), status: created201,
			body: func(wireFormat) any { return map[string]any{} }, save: map[string]string{"identity": "Identity"}},
		{method: "GET", route: "/identities/psk/{identity}", accept: mt.Type(mt.PSKIdentity), status: ok200},
		{method: "DELETE", route: "/identities/psk/{identity}", accept: mt.Type(mt.PSKIdentity), status: none204},
		{method: "GET", route: "/identities/certificates", accept: mt.Type(mt.Certificates), status: ok200},
		{method: "POST", route: "/identities/certificates", accept: mt.Type(mt.Certificate), ctype: mt.Type(mt.Certificate), status: created201,
			body: func(f wireFormat) any { return map[string]any{"Subject": "contract-" + f.name, "ValidityDays": 30} },
			save: map[string]string{"certificate": "ID"}},
		{method: "GET", route: "/identities/certificates/{certificate}", accept: mt.Type(mt.Certificate), status: ok200},
		{method: "DELETE", route: "/identities/certificates/{certificate}", accept: mt.Type(mt.Certificate), status: none204},

		{method: "GET", route: "/metrics", accept: mt.Type(mt.Metrics), status: ok200},
		{method: "GET", route: "/metrics/{metric}", accept: mt.Type(mt.Metric), status: ok200},
		{method: "GET", route: isoClient + "/metrics", accept: mt.Type(mt.Metrics), status: ok200},
		{method: "GET", route: isoClient + "/metrics/{metric}", vars: map[string]string{"metric": "transactioncount"}, accept: mt.Type(mt.Metric), status: ok200},
		{method: "GET", route: "/configuration", accept: mt.Type(mt.Configuration), status: ok200},
		{method: "GET", route: "/configuration/bootstrap", accept: mt.Type(mt.Bootstrap), status: ok200},
	}

	// Every route the router serves has a row, and every row is a route.
	served := map[string]bool{}
	for _, rt := range server.New(server.Config{}).Routes() {
		served[rt.Method+" "+rt.Path] = true
	}
	covered := map[string]bool{}
	for _, row := range rows {
		k := row.method + " " + row.route
		if covered[k] {
			t.Errorf("route %s has two rows", k)
		}
		covered[k] = true
		if !served[k] {
			t.Errorf("contract row %s is not a route of the router", k)
		}
	}
	var missing []string
	for k := range served {
		if !covered[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	for _, k := range missing {
		t.Errorf("route %s has no row in the contract table", k)
	}

	for _, row := range rows {
		t.Run(row.method+" "+row.route, func(t *testing.T) {
			got := map[wireFormat][]string{}
			for _, f := range wireFormats {
				t.Run(f.name, func(t *testing.T) {
					vars := map[string]string{}
					for k, v := range fixtures[f] {
						vars[k] = v
					}
					for k, v := range row.vars {
						if strings.HasPrefix(v, "$") {
							v = fixtures[f][v[1:]]
						}
						vars[k] = v
					}
					u := srv.URL + fill(t, row.route, vars)
					if row.query != "" {
						u += "?" + row.query
					}
					if row.m2m {
						got[f] = contractM2M(t, f, row, u, admin, fixtures[f])
						return
					}
					token := admin
					if row.asB {
						token = bToken
					}
					var body []byte
					ctype := ""
					switch {
					case row.ctype == "form":
						body, ctype = []byte(row.form().Encode()), "application/x-www-form-urlencoded"
					case row.ctype != "":
						body, ctype = f.encode(t, row.ctype, row.body(f)), row.ctype+f.suffix
					}
					a := send(t, row.method, u, token, row.accept+f.suffix, ctype, body)
					status, want := row.status, row.accept
					if status == http.StatusNoContent {
						want = ""
					}
					if row.jsonOnly && f == xmlFormat {
						// The route has no XML representation: 406, said in XML.
						status, want = http.StatusNotAcceptable, mt.Type(mt.Error)
					}
					if a.status != status {
						t.Fatalf("%s %s: %v, want %d", row.method, u, a, status)
					}
					if want == "" {
						if len(a.raw) != 0 || a.contentType() != "" {
							t.Errorf("%d with a body: %v", a.status, a)
						}
						return
					}
					if ct := a.contentType(); ct != want+f.suffix {
						t.Errorf("Content-Type %q, want %q", ct, want+f.suffix)
					}
					obj := f.decode(t, a)
					if a.status == row.status {
						got[f] = members(obj)
					}
					for fixture, member := range row.save {
						v, _ := obj[member].(string)
						if v == "" {
							t.Fatalf("no %s in the answer: %s", member, a.raw)
						}
						fixtures[f][fixture] = v
					}
				})
			}
			if j, x := got[jsonFormat], got[xmlFormat]; j != nil && x != nil && !reflect.DeepEqual(j, x) {
				t.Errorf("members differ: JSON %v, XML %v", j, x)
			}
		})
	}

	t.Run("round trips", func(t *testing.T) {
		contractRoundTrips(t, srv, api, admin, bToken, bKey, dev, client, rc.URL, valve)
	})
	t.Run("errors", func(t *testing.T) {
		contractErrors(t, srv, admin, bToken, bKey, client, silent, valve)
	})
}

// contractM2M makes the request of a compatibility-API row in format f
// (see contractRow.m2m), saves the row's fixtures into saved and returns
// the answer's members, or nil for the XML pass.
func contractM2M(t *testing.T, f wireFormat, row contractRow, u, token string, saved map[string]string) []string {
	t.Helper()
	var body []byte
	ctype := ""
	if row.body != nil {
		b, err := json.Marshal(row.body(f))
		if err != nil {
			t.Fatal(err)
		}
		body, ctype = b, "application/json"
	}
	accept, status := "application/json", row.status
	if f == xmlFormat {
		accept, status = "application/xml", http.StatusNotAcceptable
	}
	a := send(t, row.method, u, token, accept, ctype, body)
	if a.status != status {
		t.Fatalf("%s %s: %v, want %d", row.method, u, a, status)
	}
	if ct := a.contentType(); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	obj := jsonFormat.decode(t, a)
	if f == xmlFormat {
		if obj["code"] != 1001.0 || obj["msg"] == "" {
			t.Errorf("406 body %s, want code 1001 and a msg", a.raw)
		}
		return nil
	}
	if code, isResult := obj["code"]; isResult && code != 1000.0 {
		t.Errorf("code %v, want 1000: %s", code, a.raw)
	}
	for fixture, member := range row.save {
		v, _ := obj[member].(string)
		if v == "" {
			t.Fatalf("no %s in the answer: %s", member, a.raw)
		}
		saved[fixture] = v
	}
	return members(obj)
}

// contractRoundTrips checks that what the server emits it accepts back
// where the route takes a body, in both formats.
func contractRoundTrips(t *testing.T, srv *testserver.Server, api testserver.Client, admin, bToken, bKey string,
	dev *sim.Device, client, hook string, valve func(id, name string) map[string]any) {
	device := "application/vnd.oma.lwm2m.device"
	// getPut GETs u in f, lets edit change the decoded representation (nil
	// sends the bytes as they came) and PUTs it back, wanting 204.
	getPut := func(t *testing.T, f wireFormat, u, token, typ string, edit func(map[string]any) map[string]any) (before map[string]any) {
		t.Helper()
		a := send(t, http.MethodGet, u, token, typ+f.suffix, "", nil)
		if a.status != http.StatusOK || a.contentType() != typ+f.suffix {
			t.Fatalf("GET %s: %v", u, a)
		}
		before = f.decode(t, a)
		body := a.raw
		if edit != nil {
			body = f.encode(t, typ, edit(before))
		}
		if p := send(t, http.MethodPut, u, token, typ+f.suffix, typ+f.suffix, body); p.status != http.StatusNoContent {
			t.Fatalf("PUT back %s: %v\nsent %s", u, p, body)
		}
		return before
	}
	// again GETs u in f after the PUT.
	again := func(t *testing.T, f wireFormat, u, token, typ string) map[string]any {
		t.Helper()
		a := send(t, http.MethodGet, u, token, typ+f.suffix, "", nil)
		if a.status != http.StatusOK {
			t.Fatalf("GET %s after the PUT: %v", u, a)
		}
		return f.decode(t, a)
	}

	defs := srv.URL + "/objecttypes/definitions"
	for i, f := range wireFormats {
		// Fixtures of this format: a rich custom definition and an
		// observation with every attribute.
		customID := strconv.Itoa(40200 + i)
		created(t, "definition "+customID, api.Do(http.MethodPost, defs, mt.Type(mt.ObjectDefinition), valve(customID, "Round Trip "+f.name)), "ID")
		obs := created(t, "observation", api.Do(http.MethodPost, srv.URL+"/clients/"+client+"/objecttypes/3303/instances/0/subscriptions", subType,
			map[string]any{"SubscriptionType": "Observation", "Url": hook + "/rt-" + f.name, "Property": "5700", "AcceptContentType": "application/xml",
				"Attributes": map[string]any{"Pmin": 2, "Pmax": 120, "Step": 0.25, "LessThan": -5.5, "GreaterThan": 40}}), "ID")
		group := created(t, "group", api.Do(http.MethodPost, srv.URL+"/groups", mt.Type(mt.Group),
			map[string]any{"Name": "rt-" + f.name, "Endpoints": []string{"contract-dev", "rt-never-" + f.name}}), "ID")
		emptyGroup := created(t, "empty group", api.Do(http.MethodPost, srv.URL+"/groups", mt.Type(mt.Group),
			map[string]any{"Name": "rt-empty-" + f.name}), "ID")
		pre := created(t, "pre-subscription", api.Do(http.MethodPost, srv.URL+"/subscriptions", subType,
			map[string]any{"SubscriptionType": "Observation", "Url": hook + "/pre-" + f.name, "ResourcePath": "/3303/0/5700",
				"Criteria":   map[string]any{"Group": "rt-" + f.name, "Manufacturer": map[string]any{"Make": "Contract Co", "Model": "M-" + f.name}},
				"Attributes": map[string]any{"Pmin": 1, "Pmax": 60}}), "ID")

		t.Run(f.name, func(t *testing.T) {
			t.Run("access key", func(t *testing.T) {
				u := srv.URL + "/accesskeys/" + bKey
				before := getPut(t, f, u, bToken, mt.Type(mt.AccessKey), nil)
				if after := again(t, f, u, bToken, mt.Type(mt.AccessKey)); !reflect.DeepEqual(after, before) {
					t.Errorf("after the round trip %v, before %v", after, before)
				}
			})
			t.Run("subscription", func(t *testing.T) {
				u := srv.URL + "/subscriptions/" + obs
				// PUT takes only Url, Attributes, AcceptContentType,
				// DeletionPolicy and Secret (and tolerates Links).
				readOnly := []string{"ID", "SubscriptionType", "Property", "Delivery"}
				before := getPut(t, f, u, admin, mt.Type(mt.Subscription), func(rep map[string]any) map[string]any {
					for _, n := range readOnly {
						if _, ok := rep[n]; !ok {
							t.Errorf("the representation has no %s: %v", n, rep)
						}
					}
					return withoutKeys(rep, readOnly...)
				})
				after := again(t, f, u, admin, mt.Type(mt.Subscription))
				if a, b := withoutKeys(after, "Delivery"), withoutKeys(before, "Delivery"); !reflect.DeepEqual(a, b) {
					t.Errorf("after the round trip %v, before %v", a, b)
				}
				if attrs, _ := after["Attributes"].(map[string]any); len(attrs) != 5 {
					t.Errorf("Attributes after the round trip: %v", after["Attributes"])
				}
			})
			t.Run("pre-subscription", func(t *testing.T) {
				u := srv.URL + "/subscriptions/" + pre
				// Criteria and ResourcePath are shown but fixed, like ID and SubscriptionType.
				readOnly := []string{"ID", "SubscriptionType", "Delivery", "Criteria", "ResourcePath"}
				before := getPut(t, f, u, admin, mt.Type(mt.Subscription), func(rep map[string]any) map[string]any {
					for _, n := range readOnly {
						if _, ok := rep[n]; !ok {
							t.Errorf("the representation has no %s: %v", n, rep)
						}
					}
					return withoutKeys(rep, readOnly...)
				})
				after := again(t, f, u, admin, mt.Type(mt.Subscription))
				if a, b := withoutKeys(after, "Delivery"), withoutKeys(before, "Delivery"); !reflect.DeepEqual(a, b) {
					t.Errorf("after the round trip %v, before %v", a, b)
				}
				crit, _ := after["Criteria"].(map[string]any)
				if m, _ := crit["Manufacturer"].(map[string]any); crit["Group"] != "rt-"+f.name || m["Make"] != "Contract Co" || m["Model"] != "M-"+f.name {
					t.Errorf("Criteria %v", after["Criteria"])
				}
			})
			for name, id := range map[string]string{"group": group, "empty group": emptyGroup} {
				t.Run(name, func(t *testing.T) {
					u := srv.URL + "/groups/" + id
					before := getPut(t, f, u, admin, mt.Type(mt.Group), nil)
					if after := again(t, f, u, admin, mt.Type(mt.Group)); !reflect.DeepEqual(after, before) {
						t.Errorf("after the round trip %v, before %v", after, before)
					}
					// Both formats agree on the members, empty or not.
					want := []string{"contract-dev", "rt-never-" + f.name}
					if id == emptyGroup {
						want = nil
					}
					if got := strs(api.Get(u).Body["Endpoints"]); !reflect.DeepEqual(got, want) {
						t.Errorf("Endpoints %q after the round trip, want %q", got, want)
					}
				})
			}
			for _, id := range []string{customID, "3"} {
				t.Run("object definition "+id, func(t *testing.T) {
					u := defs + "/" + id
					before := getPut(t, f, u, admin, mt.Type(mt.ObjectDefinition), nil)
					after := again(t, f, u, admin, mt.Type(mt.ObjectDefinition))
					// A built-in PUT back becomes the organisation's own
					// definition, which gains a remove link; the rest is unchanged.
					if a, b := withoutKeys(after, "Links"), withoutKeys(before, "Links"); !reflect.DeepEqual(a, b) {
						t.Errorf("after the round trip %v, before %v", a, b)
					}
					if id == "3" {
						if d := send(t, http.MethodDelete, u, admin, "", "", nil); d.status != http.StatusNoContent {
							t.Errorf("remove the override of 3: %v", d)
						}
					}
				})
			}
			t.Run("typed values", func(t *testing.T) {
				// One Go value, sent as JSON numbers and booleans or as XML
				// text, writes the same typed values to the device.
				server1 := srv.URL + "/clients/" + client + "/objecttypes/1/instances/0"
				serverType, _ := api.Get(defs + "/1").Body["MIMEType"].(string)
				period := 7 + i
				body := map[string]any{"DefaultMinimumPeriod": period, "NotificationStoringWhenDisabledOrOffline": i == 0}
				if a := send(t, http.MethodPut, server1, admin, "", serverType+f.suffix, f.encode(t, serverType, body)); a.status != http.StatusNoContent {
					t.Fatalf("write /1/0: %v", a)
				}
				if v, _ := dev.Get(lwm2m.ResourcePath(1, 0, 2)); v != int64(period) {
					t.Errorf("device DefaultMinimumPeriod %#v, want %d", v, period)
				}
				if v, _ := dev.Get(lwm2m.ResourcePath(1, 0, 6)); v != (i == 0) {
					t.Errorf("device NotificationStoring %#v, want %v", v, i == 0)
				}
				const unix = 1700000000
				if a := send(t, http.MethodPut, srv.URL+"/clients/"+client+"/objecttypes/3/instances/0/resources/13", admin, "", device+f.suffix,
					f.encode(t, device, map[string]any{"CurrentTime": unix})); a.status != http.StatusNoContent {
					t.Fatalf("write CurrentTime as Unix seconds: %v", a)
				}
				if v, _ := dev.Get(lwm2m.ResourcePath(3, 0, 13)); !isNear(v, time.Unix(unix, 0)) {
					t.Errorf("device CurrentTime %v, want about %v", v, time.Unix(unix, 0).UTC())
				}
			})
			t.Run("instance", func(t *testing.T) {
				// The values the device holds are read, the device is
				// changed, and writing the representation back restores them.
				offset, zone := lwm2m.ResourcePath(3, 0, 14), lwm2m.ResourcePath(3, 0, 15)
				dev.Set(offset, "+0"+strconv.Itoa(3+len(f.name))+":30")
				dev.Set(zone, "Zone/"+f.name)
				def := api.Get(defs + "/3").Body
				writable := map[string]bool{}
				for _, p := range bodyList(def["Properties"]) {
					prop, _ := p.(map[string]any)
					if acc, _ := prop["Access"].(string); strings.Contains(acc, "Write") {
						writable[prop["SerialisationName"].(string)] = true
					}
				}
				if !writable["UTCOffset"] || !writable["Timezone"] || !writable["CurrentTime"] {
					t.Fatalf("object 3's writable resources %v", writable)
				}
				var sent map[string]any
				u := srv.URL + "/clients/" + client + "/objecttypes/3/instances/0"
				getPut(t, f, u, admin, device, func(rep map[string]any) map[string]any {
					sent = map[string]any{}
					for k, v := range rep {
						if writable[k] {
							sent[k] = v
						}
					}
					if len(sent) != len(writable) {
						t.Errorf("the instance shows %v of the writable %v", members(sent), writable)
					}
					dev.Set(offset, "Z")
					dev.Set(zone, "changed")
					return sent
				})
				for p, name := range map[lwm2m.Path]string{offset: "UTCOffset", zone: "Timezone"} {
					if v, _ := dev.Get(p); v != sent[name] {
						t.Errorf("device %s = %v after the round trip, want %v", name, v, sent[name])
					}
				}
				// CurrentTime ticks: the device's clock is where it was set.
				now, _ := dev.Get(lwm2m.ResourcePath(3, 0, 13))
				if was, err := time.Parse(time.RFC3339, text(sent["CurrentTime"])); err != nil || !isNear(now, was) {
					t.Errorf("device CurrentTime %v after writing back %v", now, sent["CurrentTime"])
				}
			})
		})
	}
}

// isNear reports whether v is a time from want to a few seconds later (a
// device clock ticks on from what was written).
func isNear(v any, want time.Time) bool {
	tm, ok := v.(time.Time)
	return ok && tm.Sub(want) > -time.Second && tm.Sub(want) < 5*time.Second
}

// contractErrors checks every error status the server can give through
// the API (API.md section 1), in both formats, with the body's shape.
func contractErrors(t *testing.T, srv *testserver.Server, admin, bToken, bKey, client, silent string, valve func(id, name string) map[string]any) {
	api := testserver.Client{T: t, Token: admin}
	const dupID = "40300"
	created(t, "definition "+dupID, api.Do(http.MethodPost, srv.URL+"/objecttypes/definitions", mt.Type(mt.ObjectDefinition), valve(dupID, "Duplicate")), "ID")
	created(t, "group contract-dup", api.Do(http.MethodPost, srv.URL+"/groups", mt.Type(mt.Group), map[string]any{"Name": "contract-dup"}), "ID")
	key := mt.Type(mt.AccessKey)
	instance := srv.URL + "/clients/" + client + "/objecttypes/3/instances/0"
	big := strings.Repeat("x", 1<<20)

	type errorRow struct {
		name, method, path string
		token              string
		accept             func(f wireFormat) string // default: the route's type (key) with the suffix
		ctype              string                    // vendor base type: ctype+suffix; "text/plain" as is
		body               func(f wireFormat) []byte
		status             int
		code               int      // ErrorCode of a 400
		fields             []string // InvalidFields of a 400
		jsonAlways         bool     // the Accept asks for no format: the error is JSON
		check              func(t *testing.T, a answer)
	}
	encoded := func(typ string, body any) func(f wireFormat) []byte {
		return func(f wireFormat) []byte { return f.encode(t, typ, body) }
	}
	raw := func(j, x string) func(f wireFormat) []byte {
		return func(f wireFormat) []byte {
			if f == jsonFormat {
				return []byte(j)
			}
			return []byte(x)
		}
	}
	typed := func(typ string) func(f wireFormat) string { return func(f wireFormat) string { return typ + f.suffix } }
	rows := []errorRow{
		{name: "400 invalid field", method: "PUT", path: "/accesskeys/" + bKey, token: bToken, ctype: key,
			body: encoded(key, map[string]any{"Name": " "}), status: 400, code: 1, fields: []string{"Name"}},
		{name: "400 unknown field", method: "PUT", path: "/accesskeys/" + bKey, token: bToken, ctype: key,
			body: encoded(key, map[string]any{"Name": "x", "Colour": "red"}), status: 400, code: 1, fields: []string{"Colour"}},
		{name: "400 wrong type", method: "POST", path: "/identities/certificates", ctype: mt.Type(mt.Certificate), accept: typed(mt.Type(mt.Certificate)),
			body: encoded(mt.Type(mt.Certificate), map[string]any{"Subject": "x", "ValidityDays": "many"}), status: 400, code: 1, fields: []string{"ValidityDays"}},
		{name: "400 malformed body", method: "PUT", path: "/accesskeys/" + bKey, token: bToken, ctype: key,
			body: raw(`{"Name":`, `<AccessKey><Name>x</AccessKey>`), status: 400, code: 2},
		{name: "400 DOCTYPE", method: "PUT", path: "/accesskeys/" + bKey, token: bToken, ctype: key,
			body: raw(`{"Name":"x"} {}`, `<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><AccessKey><Name>&e;</Name></AccessKey>`), status: 400, code: 2},
		{name: "400 query", method: "GET", path: "/clients?pageSize=100000", accept: typed(mt.Type(mt.Clients)), status: 400, code: 1, fields: []string{"pageSize"}},
		{name: "400 instance field", method: "PUT", path: instance, ctype: "application/vnd.oma.lwm2m.device", accept: typed("application/vnd.oma.lwm2m.device"),
			body: encoded("application/vnd.oma.lwm2m.device", map[string]any{"Manufacturer": "Evil", "UTCOffset": "Z"}), status: 400, code: 1, fields: []string{"Manufacturer"}},
		{name: "401 no token", method: "GET", path: "/clients", token: "-", accept: typed(mt.Type(mt.Clients)), status: 401,
			check: func(t *testing.T, a answer) {
				if h := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
					t.Errorf("WWW-Authenticate %q", h)
				}
			}},
		{name: "401 invalid token", method: "GET", path: "/clients", token: admin + "x", accept: typed(mt.Type(mt.Clients)), status: 401,
			check: func(t *testing.T, a answer) {
				if h := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") || !strings.Contains(h, "invalid_token") {
					t.Errorf("WWW-Authenticate %q", h)
				}
			}},
		{name: "403 built-in definition", method: "DELETE", path: "/objecttypes/definitions/3", accept: typed(mt.Type(mt.ObjectDefinition)), status: 403},
		{name: "404 no client", method: "GET", path: "/clients/nobody", accept: typed(mt.Type(mt.Client)), status: 404},
		{name: "404 no route", method: "GET", path: "/nowhere", accept: typed(mt.Type(mt.API)), status: 404},
		{name: "405 method", method: "PATCH", path: "/clients", accept: typed(mt.Type(mt.Clients)), status: 405},
		{name: "406 text/html", method: "GET", path: "/clients", accept: func(wireFormat) string { return "text/html" }, status: 406, jsonAlways: true},
		{name: "406 unknown version", method: "GET", path: "/clients", accept: func(f wireFormat) string { return mt.Type(mt.Clients) + "-v9" + f.suffix }, status: 406},
		{name: "409 duplicate definition", method: "POST", path: "/objecttypes/definitions", ctype: mt.Type(mt.ObjectDefinition), accept: typed(mt.Type(mt.ResourceCreated)),
			body: encoded(mt.Type(mt.ObjectDefinition), valve(dupID, "Duplicate again")), status: 409},
		{name: "409 duplicate group name", method: "POST", path: "/groups", ctype: mt.Type(mt.Group), accept: typed(mt.Type(mt.ResourceCreated)),
			body: encoded(mt.Type(mt.Group), map[string]any{"Name": "contract-dup"}), status: 409},
		{name: "413 body over 1 MiB", method: "PUT", path: "/accesskeys/" + bKey, token: bToken, ctype: key,
			body: encoded(key, map[string]any{"Name": big}), status: 413},
		{name: "415 text/plain", method: "POST", path: "/accesskeys", ctype: "text/plain", body: raw("contract", "contract"), status: 415},
		{name: "501 cached read", method: "GET", path: instance + "?cached=true", accept: typed("application/vnd.oma.lwm2m.device"), status: 501},
		{name: "504 silent device", method: "GET", path: "/clients/" + silent + "/objecttypes/3/instances/0", accept: typed("application/vnd.oma.lwm2m.device"), status: 504},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			got := map[wireFormat][]string{}
			for _, f := range wireFormats {
				t.Run(f.name, func(t *testing.T) {
					u := row.path
					if !strings.HasPrefix(u, "http") {
						u = srv.URL + u
					}
					token := row.token
					switch token {
					case "":
						token = admin
					case "-":
						token = ""
					}
					accept := key + f.suffix
					if row.accept != nil {
						accept = row.accept(f)
					}
					var body []byte
					ctype := row.ctype
					if row.body != nil {
						body = row.body(f)
					}
					if strings.HasPrefix(ctype, "application/vnd.") {
						ctype += f.suffix
					}
					a := send(t, row.method, u, token, accept, ctype, body)
					if a.status != row.status {
						t.Fatalf("%s %s: %v, want %d", row.method, u, a, row.status)
					}
					want := mt.Type(mt.Error)
					if row.status == http.StatusBadRequest {
						want = mt.Type(mt.BadRequest)
					}
					format := f
					if row.jsonAlways {
						format = jsonFormat
					}
					if ct := a.contentType(); ct != want+format.suffix {
						t.Errorf("Content-Type %q, want %q", ct, want+format.suffix)
					}
					obj := format.decode(t, a)
					code := row.status
					if row.status == http.StatusBadRequest {
						code = row.code
					}
					if c := text(obj["ErrorCode"]); c != strconv.Itoa(code) {
						t.Errorf("ErrorCode %s, want %d: %s", c, code, a.raw)
					}
					if msg, _ := obj["ErrorMessage"].(string); msg == "" {
						t.Errorf("no ErrorMessage: %s", a.raw)
					}
					if fields := strs(obj["InvalidFields"]); !reflect.DeepEqual(fields, row.fields) {
						t.Errorf("InvalidFields %q, want %q", fields, row.fields)
					}
					if row.check != nil {
						row.check(t, a)
					}
					got[f] = members(obj)
				})
			}
			if j, x := got[jsonFormat], got[xmlFormat]; j != nil && x != nil && !reflect.DeepEqual(j, x) {
				t.Errorf("members differ: JSON %v, XML %v", j, x)
			}
		})
	}
}
