package server_test

import (
	"net/http"
	"slices"
	"testing"
)

const defType = "application/vnd.imgtec.objectdefinition+json"

func TestDefinitions(t *testing.T) {
	e := newEnv(t)
	other := e.other(t)

	t.Run("built-ins are listed for everyone", func(t *testing.T) {
		for _, tok := range []string{e.admin, other} {
			list := e.get(t, tok, "/objecttypes/definitions?pageSize=1000")
			var ids []string
			for _, it := range items(list) {
				ids = append(ids, it["ObjectID"].(string))
			}
			for _, want := range []string{"0", "1", "2", "3", "4", "5", "6", "7", "3303"} {
				if !slices.Contains(ids, want) {
					t.Errorf("built-in %s missing from %v", want, ids)
				}
			}
			if link(t, list, "add") != e.URL+"/objecttypes/definitions" {
				t.Errorf("list links %v", list["Links"])
			}
		}
		d := e.get(t, e.admin, "/objecttypes/definitions/3")
		if d["Name"] != "Device" || d["MIMEType"] != "application/vnd.oma.lwm2m.device" || d["Singleton"] != true {
			t.Errorf("definition 3: %s", mustJSON(d))
		}
		props := asList(d["Properties"])
		if len(props) == 0 || props[0].(map[string]any)["SerialisationName"] != "Manufacturer" || props[0].(map[string]any)["DataType"] != "String" ||
			props[0].(map[string]any)["Access"] != "Read" {
			t.Errorf("definition 3 properties %v", props)
		}
		if _, ok := findLink(d, "remove"); ok {
			t.Errorf("built-in offers remove: %v", d["Links"])
		}
	})

	widget := `{"ObjectID":"20000","Name":"Widget","Description":"a test object","Properties":[` +
		`{"PropertyID":"0","Name":"Level","DataType":"Integer","Access":"ReadWrite","Units":"%","MinValue":"0","MaxValue":"100"},` +
		`{"PropertyID":"1","Name":"Readings","DataType":"Float","IsCollection":true,"Access":"Read"},` +
		`{"PropertyID":"2","Name":"Reset","DataType":"None","Access":"Execute"}]}`
	t.Run("create a custom definition", func(t *testing.T) {
		r := e.do(t, e.admin, http.MethodPost, "/objecttypes/definitions", defType, widget)
		if r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Raw)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/vnd.imgtec.resourcecreated+json" {
			t.Errorf("Content-Type %q", ct)
		}
		self := e.URL + "/objecttypes/definitions/20000"
		if r.Body["ID"] != "20000" || link(t, r.Body, "self") != self || r.Header.Get("Location") != self {
			t.Errorf("created %s", r.Raw)
		}
		d := e.get(t, e.admin, self)
		if d["Name"] != "Widget" || d["MIMEType"] != "application/vnd.oma.lwm2m.widget" || d["SerialisationName"] != "Widget" || d["Singleton"] != false {
			t.Errorf("definition %s", mustJSON(d))
		}
		props := asList(d["Properties"])
		if len(props) != 3 {
			t.Fatalf("properties %v", props)
		}
		p0 := props[0].(map[string]any)
		if p0["DataType"] != "Integer" || p0["Access"] != "ReadWrite" || p0["MinValue"] != "0" || p0["MaxValue"] != "100" || p0["SerialisationName"] != "Level" {
			t.Errorf("property 0 %v", p0)
		}
		if p1 := props[1].(map[string]any); p1["IsCollection"] != true || p1["DataType"] != "Float" {
			t.Errorf("property 1 %v", p1)
		}
		if link(t, d, "remove") != self {
			t.Errorf("custom definition links %v", d["Links"])
		}
		if r := e.do(t, other, http.MethodGet, self, "", ""); r.Status != http.StatusNotFound {
			t.Errorf("other tenant sees the custom definition: %d", r.Status)
		}
		if r := e.do(t, e.admin, http.MethodPost, "/objecttypes/definitions", defType, widget); r.Status != http.StatusConflict {
			t.Errorf("duplicate: %d %s, want 409", r.Status, r.Raw)
		}
		// The other tenant may define the same ID for itself.
		if r := e.do(t, other, http.MethodPost, "/objecttypes/definitions", "application/json", widget); r.Status != http.StatusCreated {
			t.Errorf("same ID in another tenant: %d %s", r.Status, r.Raw)
		}
	})

	t.Run("override a built-in for one organisation", func(t *testing.T) {
		r := e.do(t, e.admin, http.MethodPost, "/objecttypes/definitions", defType,
			`{"ObjectID":"3","Name":"My Device","Singleton":true,"Properties":[{"PropertyID":"0","Name":"Maker","DataType":"String","Access":"Read"}]}`)
		if r.Status != http.StatusCreated {
			t.Fatalf("override: %d %s", r.Status, r.Raw)
		}
		if d := e.get(t, e.admin, "/objecttypes/definitions/3"); d["Name"] != "My Device" {
			t.Errorf("admin sees %v", d["Name"])
		}
		if d := e.get(t, other, "/objecttypes/definitions/3"); d["Name"] != "Device" {
			t.Errorf("other tenant sees %v", d["Name"])
		}
		// Instances of the overriding organisation are named by its definition.
		e.register(t, adminOrg, "c-01", "ep-01", true)
		inst := e.get(t, e.admin, dev0)
		if inst["Maker"] != "Acme" || inst["Manufacturer"] != nil {
			t.Errorf("instance with the override: %s", mustJSON(inst))
		}
		e.dev.take()
		if r := e.do(t, other, http.MethodDelete, "/objecttypes/definitions/3", "", ""); r.Status != http.StatusForbidden {
			t.Errorf("other tenant deletes built-in 3: %d", r.Status)
		}
		if r := e.do(t, e.admin, http.MethodDelete, "/objecttypes/definitions/3", "", ""); r.Status != http.StatusNoContent {
			t.Fatalf("delete the override: %d %s", r.Status, r.Raw)
		}
		if d := e.get(t, e.admin, "/objecttypes/definitions/3"); d["Name"] != "Device" {
			t.Errorf("after deleting the override admin sees %v", d["Name"])
		}
		if r := e.do(t, e.admin, http.MethodDelete, "/objecttypes/definitions/3", "", ""); r.Status != http.StatusForbidden {
			t.Errorf("delete built-in 3: %d, want 403", r.Status)
		}
	})

	t.Run("update", func(t *testing.T) {
		self := "/objecttypes/definitions/20000"
		if r := e.do(t, e.admin, http.MethodPut, self, defType, `{"Name":"Gadget","Properties":[]}`); r.Status != http.StatusNoContent {
			t.Fatalf("update: %d %s", r.Status, r.Raw)
		}
		if d := e.get(t, e.admin, self); d["Name"] != "Gadget" || len(asList(d["Properties"])) != 0 {
			t.Errorf("after update %s", mustJSON(d))
		}
		wantBadRequest(t, e.do(t, e.admin, http.MethodPut, self, defType, `{"ObjectID":"20001","Name":"Gadget"}`), "ObjectID")
		if r := e.do(t, e.admin, http.MethodPut, "/objecttypes/definitions/31999", defType, `{"Name":"x"}`); r.Status != http.StatusNotFound {
			t.Errorf("update of an undefined object: %d", r.Status)
		}
	})

	t.Run("delete", func(t *testing.T) {
		tests := []struct {
			path   string
			status int
		}{
			{"/objecttypes/definitions/20000", 204},
			{"/objecttypes/definitions/20000", 404},
			{"/objecttypes/definitions/4", 403},
			{"/objecttypes/definitions/3303", 403},
			{"/objecttypes/definitions/x", 404},
		}
		for _, tt := range tests {
			if r := e.do(t, e.admin, http.MethodDelete, tt.path, "", ""); r.Status != tt.status {
				t.Errorf("DELETE %s: %d, want %d", tt.path, r.Status, tt.status)
			}
		}
		e.get(t, other, "/objecttypes/definitions/20000") // the other tenant's own is untouched
	})

	t.Run("invalid definitions", func(t *testing.T) {
		prop := func(extra string) string {
			return `{"ObjectID":"20100","Name":"Bad","Properties":[{"PropertyID":"0","Name":"Ok","DataType":"String"},` + extra + `]}`
		}
		tests := []struct {
			name, body string
			fields     []string
		}{
			{"bad DataType", prop(`{"PropertyID":"1","Name":"B","DataType":"Quaternion"}`), []string{"Properties[1].DataType"}},
			{"bad Access", prop(`{"PropertyID":"1","Name":"B","DataType":"String","Access":"Sometimes"}`), []string{"Properties[1].Access"}},
			{"duplicate PropertyID", prop(`{"PropertyID":"0","Name":"B","DataType":"String"}`), []string{"Properties[1].PropertyID"}},
			{"PropertyID not a number", prop(`{"PropertyID":"one","Name":"B","DataType":"String"}`), []string{"Properties[1].PropertyID"}},
			{"property without a name", prop(`{"PropertyID":"1","DataType":"String"}`), []string{"Properties[1].Name"}},
			{"several bad properties", prop(`{"PropertyID":"1","Name":"","DataType":"X","Access":"Y"}`),
				[]string{"Properties[1].DataType", "Properties[1].Access", "Properties[1].Name"}},
			{"no ObjectID", `{"Name":"x"}`, []string{"ObjectID"}},
			{"ObjectID too large", `{"ObjectID":"65535","Name":"x"}`, []string{"ObjectID"}},
			{"no Name", `{"ObjectID":"20100"}`, []string{"Name"}},
			{"ObjectDefinitionID differs", `{"ObjectID":"20100","ObjectDefinitionID":"20101","Name":"x"}`, []string{"ObjectDefinitionID"}},
			{"MIMEType not a vendor type", `{"ObjectID":"20100","Name":"x","MIMEType":"text/plain"}`, []string{"MIMEType"}},
			{"MIMEType upper case", `{"ObjectID":"20100","Name":"x","MIMEType":"application/vnd.Acme.Widget"}`, []string{"MIMEType"}},
			{"MIMEType with a format suffix", `{"ObjectID":"20100","Name":"x","MIMEType":"application/vnd.acme.widget+json"}`, []string{"MIMEType"}},
			{"MIMEType with parameters", `{"ObjectID":"20100","Name":"x","MIMEType":"application/vnd.acme.widget; v=1"}`, []string{"MIMEType"}},
			{"MIMEType with a line break", `{"ObjectID":"20100","Name":"x","MIMEType":"application/vnd.acme.widget\r\nX-Evil: 1"}`, []string{"MIMEType"}},
			{"unknown field", `{"ObjectID":"20100","Name":"x","Colour":"red"}`, []string{"Colour"}},
			{"wrong type", `{"ObjectID":20100,"Name":"x"}`, []string{"ObjectID"}},
			{"malformed", `{"ObjectID":`, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantBadRequest(t, e.do(t, e.admin, http.MethodPost, "/objecttypes/definitions", defType, tt.body), tt.fields...)
			})
		}
		if r := e.do(t, e.admin, http.MethodGet, "/objecttypes/definitions/20100", "", ""); r.Status != http.StatusNotFound {
			t.Errorf("an invalid definition was stored: %d", r.Status)
		}
	})
}
