package server_test

import (
	"net/http"
	"slices"
	"testing"
)

func TestBulkDefinitions(t *testing.T) {
	e := newEnv(t)
	const bulk = "application/vnd.imgtec.objectdefinitions+json"
	prop := `{"PropertyID":"1","Name":"Level","DataType":"Integer","Access":"ReadWrite"}`
	body := `{"Items":[{"ObjectID":"40001","Name":"Tank","Properties":[` + prop + `]},{"ObjectID":"40002","Name":"Valve","Properties":[]}]}`

	r := e.do(t, e.admin, http.MethodPost, "/objecttypes/definitions", bulk, body)
	if r.Status != http.StatusCreated || r.Header.Get("Content-Type") != "application/vnd.imgtec.resourcescreated+json" {
		t.Fatalf("bulk create: %d %s %s", r.Status, r.Header.Get("Content-Type"), r.Raw)
	}
	var ids []string
	for _, it := range items(r.Body) {
		ids = append(ids, it["ID"].(string))
	}
	if !slices.Equal(ids, []string{"40001", "40002"}) {
		t.Errorf("created IDs %v", ids)
	}
	if got := e.get(t, e.admin, "/objecttypes/definitions/40001")["Name"]; got != "Tank" {
		t.Errorf("definition 40001 Name = %v", got)
	}
	if r := e.do(t, e.other(t), http.MethodGet, "/objecttypes/definitions/40001", "", ""); r.Status != http.StatusNotFound {
		t.Errorf("another organisation sees the definition: %d", r.Status)
	}

	tests := []struct {
		name, body string
		status     int
		fields     []string
	}{
		{"empty Items", `{"Items":[]}`, http.StatusBadRequest, []string{"Items"}},
		{"one invalid rejects all", `{"Items":[{"ObjectID":"40003","Name":"Ok"},{"ObjectID":"x","Name":""}]}`, http.StatusBadRequest, []string{"Items[1].ObjectID", "Items[1].Name"}},
		{"duplicate in the request", `{"Items":[{"ObjectID":"40004","Name":"A"},{"ObjectID":"40004","Name":"B"}]}`, http.StatusBadRequest, []string{"Items[1].ObjectID"}},
		{"already defined", `{"Items":[{"ObjectID":"40001","Name":"Again"}]}`, http.StatusConflict, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, e.admin, http.MethodPost, "/objecttypes/definitions", bulk, tc.body)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Raw)
			}
			if tc.fields != nil && !slices.Equal(invalidFields(r), tc.fields) {
				t.Errorf("InvalidFields %v, want %v", invalidFields(r), tc.fields)
			}
		})
	}
	if r := e.do(t, e.admin, http.MethodGet, "/objecttypes/definitions/40003", "", ""); r.Status != http.StatusNotFound {
		t.Errorf("a rejected bulk request stored 40003: %d", r.Status)
	}
}
