package server_test

import (
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	groupType  = "application/vnd.imgtec.group+json"
	groupsType = "application/vnd.imgtec.groups+json"
)

// clientGroups returns the Groups of a client representation.
func clientGroups(t *testing.T, e *env, token, id string) []string {
	t.Helper()
	c := e.get(t, token, "/clients/"+id)
	gs, ok := c["Groups"].([]any)
	if !ok {
		t.Fatalf("client %s: Groups is %T, want an array: %s", id, c["Groups"], mustJSON(c))
	}
	out := []string{}
	for _, g := range gs {
		out = append(out, g.(string))
	}
	return out
}

func TestGroups(t *testing.T) {
	e := newEnv(t)
	e.register(t, adminOrg, "c-01", "ep-01", true)
	e.register(t, adminOrg, "c-02", "ep-02", true)
	e.register(t, adminOrg, "c-03", "ep-03", false)
	other := e.other(t)
	e.register(t, otherOrg, "c-other", "ep-01", true) // the same endpoint name in another organisation

	create := func(t *testing.T, token, body string) string {
		t.Helper()
		r := e.do(t, token, http.MethodPost, "/groups", groupType, body)
		if r.Status != http.StatusCreated {
			t.Fatalf("POST /groups %s: %d %s", body, r.Status, r.Raw)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/vnd.imgtec.resourcecreated+json" {
			t.Errorf("Content-Type %q", ct)
		}
		id, _ := r.Body["ID"].(string)
		self := e.URL + "/groups/" + id
		if id == "" || link(t, r.Body, "self") != self || r.Header.Get("Location") != self {
			t.Errorf("created %s, Location %q", r.Raw, r.Header.Get("Location"))
		}
		return self
	}

	var tenantA string
	t.Run("create and read", func(t *testing.T) {
		tenantA = create(t, e.admin, `{"Name":"tenant-a","Endpoints":["ep-01","ep-03","ep-never-registered"]}`)
		r := e.do(t, e.admin, http.MethodGet, tenantA, "", "")
		if r.Status != http.StatusOK || r.Header.Get("Content-Type") != groupType {
			t.Fatalf("GET %s: %d %q %s", tenantA, r.Status, r.Header.Get("Content-Type"), r.Raw)
		}
		if r.Body["Name"] != "tenant-a" || r.Body["ID"] != strings.TrimPrefix(tenantA, e.URL+"/groups/") {
			t.Errorf("group %s", r.Raw)
		}
		if got := r.Body["Endpoints"]; !reflect.DeepEqual(got, []any{"ep-01", "ep-03", "ep-never-registered"}) {
			t.Errorf("Endpoints %v", got)
		}
		if got := rels(r.Body); !slices.Equal(got, []string{"self", "update", "remove", "clients"}) {
			t.Errorf("links %v", got)
		}
		if h := link(t, r.Body, "clients"); h != e.URL+"/clients?group=tenant-a" {
			t.Errorf("clients link %q", h)
		}
		x := e.do(t, e.admin, http.MethodGet, tenantA, "", "", "Accept", "application/xml")
		if x.Status != http.StatusOK || x.Header.Get("Content-Type") != "application/vnd.imgtec.group+xml" ||
			!strings.Contains(string(x.Raw), "<Group>") || !strings.Contains(string(x.Raw), "<Endpoint>ep-03</Endpoint>") {
			t.Errorf("GET in XML: %d %q %s", x.Status, x.Header.Get("Content-Type"), x.Raw)
		}
	})

	t.Run("an XML body", func(t *testing.T) {
		e.clock.Set(e.clock.Now().Add(time.Second)) // listed after tenant-a, by creation time
		r := e.do(t, e.admin, http.MethodPost, "/groups", "application/vnd.imgtec.group+xml",
			`<Group><Name>North &amp; South</Name><Endpoints><Endpoint>ep-02</Endpoint></Endpoints></Group>`)
		if r.Status != http.StatusCreated {
			t.Fatalf("POST XML: %d %s", r.Status, r.Raw)
		}
		g := e.get(t, e.admin, link(t, r.Body, "self"))
		if g["Name"] != "North & South" || !reflect.DeepEqual(g["Endpoints"], []any{"ep-02"}) {
			t.Errorf("group from XML: %s", mustJSON(g))
		}
		// The clients link escapes the name.
		clients := e.get(t, e.admin, link(t, g, "clients"))
		if got := names(clients); !slices.Equal(got, []string{"ep-02"}) {
			t.Errorf("clients of %q: %v", g["Name"], got)
		}
	})

	t.Run("list", func(t *testing.T) {
		r := e.do(t, e.admin, http.MethodGet, "/groups", "", "")
		if r.Status != http.StatusOK || r.Header.Get("Content-Type") != groupsType {
			t.Fatalf("GET /groups: %d %q", r.Status, r.Header.Get("Content-Type"))
		}
		if pageInfo(r.Body)["TotalCount"] != 2.0 || !slices.Equal(names(r.Body), []string{"tenant-a", "North & South"}) {
			t.Errorf("groups %v %v", pageInfo(r.Body), names(r.Body))
		}
		if link(t, r.Body, "add") != e.URL+"/groups" {
			t.Errorf("add link %v", r.Body["Links"])
		}
		if one := e.get(t, e.admin, "/groups?pageSize=1&startIndex=1"); !slices.Equal(names(one), []string{"North & South"}) {
			t.Errorf("second page %v", names(one))
		}
		if list := e.get(t, other, "/groups"); pageInfo(list)["TotalCount"] != 0.0 {
			t.Errorf("another organisation sees %v groups", pageInfo(list)["TotalCount"])
		}
	})

	t.Run("membership shows on clients", func(t *testing.T) {
		tests := []struct {
			token, client string
			want          []string
		}{
			{e.admin, "c-01", []string{"tenant-a"}},
			{e.admin, "c-02", []string{"North & South"}},
			{e.admin, "c-03", []string{"tenant-a"}},
			{other, "c-other", []string{}}, // ep-01 of another organisation
		}
		for _, tt := range tests {
			if got := clientGroups(t, e, tt.token, tt.client); !slices.Equal(got, tt.want) {
				t.Errorf("%s Groups %v, want %v", tt.client, got, tt.want)
			}
		}
	})

	t.Run("filter clients by group", func(t *testing.T) {
		tests := []struct {
			token, query string
			want         []string
		}{
			{e.admin, "group=tenant-a", []string{"ep-01", "ep-03"}},
			{e.admin, "group=tenant-a&online=true", []string{"ep-01"}},
			{e.admin, "group=tenant-a&name=ep-03", []string{"ep-03"}},
			{e.admin, "group=" + url.QueryEscape("North & South"), []string{"ep-02"}},
			{e.admin, "group=no-such-group", nil},
			{other, "group=tenant-a", nil},
		}
		for _, tt := range tests {
			t.Run(tt.query, func(t *testing.T) {
				list := e.get(t, tt.token, "/clients?"+tt.query)
				if got := names(list); !slices.Equal(got, tt.want) || pageInfo(list)["TotalCount"] != float64(len(tt.want)) {
					t.Errorf("clients %v (TotalCount %v), want %v", got, pageInfo(list)["TotalCount"], tt.want)
				}
			})
		}
	})

	t.Run("invalid groups", func(t *testing.T) {
		tests := []struct {
			name, body string
			fields     []string
		}{
			{"no name", `{"Endpoints":["ep-01"]}`, []string{"Name"}},
			{"blank name", `{"Name":"  "}`, []string{"Name"}},
			{"empty endpoint", `{"Name":"g","Endpoints":["ep-01",""]}`, []string{"Endpoints"}},
			{"endpoints not a list", `{"Name":"g","Endpoints":"ep-01"}`, []string{"Endpoints"}},
			{"unknown field", `{"Name":"g","Colour":"red"}`, []string{"Colour"}},
			{"malformed", `{"Name":`, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantBadRequest(t, e.do(t, e.admin, http.MethodPost, "/groups", groupType, tt.body), tt.fields...)
				wantBadRequest(t, e.do(t, e.admin, http.MethodPut, tenantA, groupType, tt.body), tt.fields...)
			})
		}
		if r := e.do(t, e.admin, http.MethodPost, "/groups", "text/plain", "tenant-a"); r.Status != http.StatusUnsupportedMediaType {
			t.Errorf("text/plain body: %d", r.Status)
		}
		if n := pageInfo(e.get(t, e.admin, "/groups"))["TotalCount"]; n != 2.0 {
			t.Errorf("%v groups after invalid requests, want 2", n)
		}
	})

	t.Run("names are unique per organisation", func(t *testing.T) {
		r := e.do(t, e.admin, http.MethodPost, "/groups", groupType, `{"Name":"tenant-a"}`)
		if r.Status != http.StatusConflict || !strings.Contains(string(r.Raw), "tenant-a") {
			t.Errorf("duplicate name: %d %s", r.Status, r.Raw)
		}
		spare := create(t, e.admin, `{"Name":"spare"}`)
		if r := e.do(t, e.admin, http.MethodPut, spare, groupType, `{"Name":"tenant-a"}`); r.Status != http.StatusConflict {
			t.Errorf("rename onto an existing name: %d %s", r.Status, r.Raw)
		}
		// Another organisation's names do not collide (a 409 would tell it they exist).
		create(t, other, `{"Name":"tenant-a","Endpoints":["ep-01"]}`)
		if got := clientGroups(t, e, e.admin, "c-01"); !slices.Equal(got, []string{"tenant-a"}) {
			t.Errorf("c-01 Groups %v after another organisation's group", got)
		}
		if got := clientGroups(t, e, other, "c-other"); !slices.Equal(got, []string{"tenant-a"}) {
			t.Errorf("c-other Groups %v, want its organisation's tenant-a", got)
		}
		if r := e.do(t, e.admin, http.MethodDelete, spare, "", ""); r.Status != http.StatusNoContent {
			t.Errorf("delete spare: %d", r.Status)
		}
	})

	t.Run("other tenants' groups are 404", func(t *testing.T) {
		for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
			body, ct := "", ""
			if m == http.MethodPut {
				body, ct = `{"Name":"stolen","Endpoints":["ep-other"]}`, groupType
			}
			if r := e.do(t, other, m, tenantA, ct, body); r.Status != http.StatusNotFound {
				t.Errorf("%s %s by another tenant: %d %s", m, tenantA, r.Status, r.Raw)
			}
		}
		if g := e.get(t, e.admin, tenantA); g["Name"] != "tenant-a" {
			t.Errorf("after another tenant's attempts: %s", mustJSON(g))
		}
	})

	t.Run("update replaces name and members", func(t *testing.T) {
		if r := e.do(t, e.admin, http.MethodPut, tenantA, groupType, `{"Name":"tenant-b","Endpoints":["ep-02"]}`); r.Status != http.StatusNoContent {
			t.Fatalf("PUT: %d %s", r.Status, r.Raw)
		}
		g := e.get(t, e.admin, tenantA)
		if g["Name"] != "tenant-b" || !reflect.DeepEqual(g["Endpoints"], []any{"ep-02"}) || link(t, g, "clients") != e.URL+"/clients?group=tenant-b" {
			t.Errorf("after PUT: %s", mustJSON(g))
		}
		if got := clientGroups(t, e, e.admin, "c-01"); len(got) != 0 {
			t.Errorf("c-01 Groups %v after it left the group", got)
		}
		if got := clientGroups(t, e, e.admin, "c-02"); !slices.Equal(got, []string{"North & South", "tenant-b"}) {
			t.Errorf("c-02 Groups %v", got)
		}
		if got := names(e.get(t, e.admin, "/clients?group=tenant-a")); len(got) != 0 {
			t.Errorf("the old name still selects %v", got)
		}
		// The representation can be sent back as it is; a different ID cannot.
		if r := e.do(t, e.admin, http.MethodPut, tenantA, groupType, mustJSON(g)); r.Status != http.StatusNoContent {
			t.Errorf("PUT the representation back: %d %s", r.Status, r.Raw)
		}
		wantBadRequest(t, e.do(t, e.admin, http.MethodPut, tenantA, groupType, `{"ID":"other","Name":"tenant-b"}`), "ID")
		// No Endpoints: the group is emptied.
		if r := e.do(t, e.admin, http.MethodPut, tenantA, groupType, `{"Name":"tenant-b"}`); r.Status != http.StatusNoContent {
			t.Fatalf("PUT without Endpoints: %d %s", r.Status, r.Raw)
		}
		if g := e.get(t, e.admin, tenantA); !reflect.DeepEqual(g["Endpoints"], []any{}) {
			t.Errorf("Endpoints %v, want []", g["Endpoints"])
		}
	})

	t.Run("delete", func(t *testing.T) {
		if r := e.do(t, e.admin, http.MethodDelete, tenantA, "", ""); r.Status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.Status, r.Raw)
		}
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			if r := e.do(t, e.admin, m, tenantA, "", ""); r.Status != http.StatusNotFound {
				t.Errorf("%s after delete: %d", m, r.Status)
			}
		}
		if got := clientGroups(t, e, e.admin, "c-02"); !slices.Equal(got, []string{"North & South"}) {
			t.Errorf("c-02 Groups %v after the delete", got)
		}
	})
}
