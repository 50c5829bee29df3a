package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

const keyType = "application/vnd.imgtec.accesskey+json"

func TestAccessKeys(t *testing.T) {
	e := newEnv(t)
	e.register(t, adminOrg, "c-admin", "admin-device", true)
	list := e.get(t, e.admin, "/accesskeys")
	if pageInfo(list)["TotalCount"] != 1.0 || len(items(list)) != 1 {
		t.Fatalf("admin key list: %s", mustJSON(list))
	}
	own := items(list)[0]
	if own["Key"] != adminKey || own["Secret"] != nil || link(t, own, "self") != e.URL+"/accesskeys/"+adminKey {
		t.Errorf("list item %v", own)
	}
	if link(t, list, "add") != e.URL+"/accesskeys" {
		t.Errorf("list links %v", list["Links"])
	}

	// The administrator creates a new organisation with its first key.
	created := e.do(t, e.admin, http.MethodPost, "/accesskeys", keyType, `{"Name":"tenant-b"}`)
	if created.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.Status, created.Raw)
	}
	bKey, _ := created.Body["Key"].(string)
	bSecret, _ := created.Body["Secret"].(string)
	if bKey == "" || bSecret == "" || created.Body["Name"] != "tenant-b" {
		t.Fatalf("created key %s", created.Raw)
	}
	if loc := created.Header.Get("Location"); loc != e.URL+"/accesskeys/"+bKey || link(t, created.Body, "self") != loc {
		t.Errorf("Location %q, self %q", loc, link(t, created.Body, "self"))
	}
	b := e.token(t, bKey, bSecret)

	t.Run("the new organisation sees nothing of the administrator's", func(t *testing.T) {
		tests := []struct {
			method, path string
			status       int
		}{
			{http.MethodGet, "/accesskeys/" + adminKey, 404},
			{http.MethodPut, "/accesskeys/" + adminKey, 404},
			{http.MethodDelete, "/accesskeys/" + adminKey, 404},
			{http.MethodGet, "/clients/c-admin", 404},
			{http.MethodDelete, "/clients/c-admin", 404},
			{http.MethodGet, "/clients/c-admin/objecttypes/3/instances/0", 404},
		}
		for _, tt := range tests {
			body, ct := "", ""
			if tt.method == http.MethodPut {
				body, ct = `{"Name":"stolen"}`, keyType
			}
			if r := e.do(t, b.AccessToken, tt.method, tt.path, ct, body); r.Status != tt.status {
				t.Errorf("%s %s: %d %s, want %d", tt.method, tt.path, r.Status, r.Raw, tt.status)
			}
		}
		if calls := e.dev.take(); len(calls) != 0 {
			t.Errorf("device calls for another tenant: %v", calls)
		}
		keys := e.get(t, b.AccessToken, "/accesskeys")
		if len(items(keys)) != 1 || items(keys)[0]["Key"] != bKey {
			t.Errorf("tenant-b keys %s", mustJSON(keys))
		}
		if clients := e.get(t, b.AccessToken, "/clients"); pageInfo(clients)["TotalCount"] != 0.0 {
			t.Errorf("tenant-b clients %s", mustJSON(clients))
		}
		// And the administrator does not see tenant-b's key among its own.
		if r := e.do(t, e.admin, http.MethodGet, "/accesskeys/"+bKey, "", ""); r.Status != http.StatusNotFound {
			t.Errorf("admin GET tenant-b key: %d", r.Status)
		}
		if n := len(items(e.get(t, e.admin, "/accesskeys"))); n != 1 {
			t.Errorf("admin sees %d keys, want 1", n)
		}
	})

	// A non-administrator adds a key to its own organisation.
	second := e.do(t, b.AccessToken, http.MethodPost, "/accesskeys", "application/json", `{"Name":"second"}`)
	if second.Status != http.StatusCreated {
		t.Fatalf("create second key: %d %s", second.Status, second.Raw)
	}
	secondKey := second.Body["Key"].(string)
	secondTok := e.token(t, secondKey, second.Body["Secret"].(string))
	if keys := e.get(t, b.AccessToken, "/accesskeys"); pageInfo(keys)["TotalCount"] != 2.0 {
		t.Errorf("tenant-b keys after adding one: %s", mustJSON(keys))
	}
	e.get(t, secondTok.AccessToken, "/accesskeys/"+bKey)

	t.Run("get, update", func(t *testing.T) {
		tests := []struct {
			name   string
			body   string
			status int
			fields []string
		}{
			{"rename", `{"Name":"renamed"}`, 204, nil},
			{"representation put back", `{"Name":"renamed","Key":"` + secondKey + `","Links":[{"rel":"self","href":"x"}]}`, 204, nil},
			{"empty name", `{"Name":"  "}`, 400, []string{"Name"}},
			{"key change", `{"Name":"x","Key":"other"}`, 400, []string{"Key"}},
			{"secret", `{"Name":"x","Secret":"s"}`, 400, []string{"Secret"}},
			{"wrong type", `{"Name":5}`, 400, []string{"Name"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, b.AccessToken, http.MethodPut, "/accesskeys/"+secondKey, keyType, tt.body)
				if tt.status == http.StatusBadRequest {
					wantBadRequest(t, r, tt.fields...)
				} else if r.Status != tt.status {
					t.Fatalf("status %d %s, want %d", r.Status, r.Raw, tt.status)
				}
			})
		}
		got := e.get(t, b.AccessToken, "/accesskeys/"+secondKey)
		if got["Name"] != "renamed" || got["Key"] != secondKey || got["Secret"] != nil {
			t.Errorf("after rename: %s", mustJSON(got))
		}
		for _, rel := range []string{"self", "update", "remove"} {
			if link(t, got, rel) != e.URL+"/accesskeys/"+secondKey {
				t.Errorf("%s link %v", rel, got["Links"])
			}
		}
	})

	t.Run("a key cannot delete itself", func(t *testing.T) {
		r := e.do(t, b.AccessToken, http.MethodDelete, "/accesskeys/"+bKey, "", "")
		if r.Status != http.StatusConflict {
			t.Fatalf("self delete: %d %s, want 409", r.Status, r.Raw)
		}
		e.get(t, b.AccessToken, "/accesskeys/"+bKey)
	})

	t.Run("deleting a key revokes its refresh tokens", func(t *testing.T) {
		if r := e.do(t, b.AccessToken, http.MethodDelete, "/accesskeys/"+secondKey, "", ""); r.Status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.Status, r.Raw)
		}
		if r := e.do(t, b.AccessToken, http.MethodGet, "/accesskeys/"+secondKey, "", ""); r.Status != http.StatusNotFound {
			t.Errorf("GET deleted key: %d", r.Status)
		}
		if r := e.do(t, b.AccessToken, http.MethodDelete, "/accesskeys/"+secondKey, "", ""); r.Status != http.StatusNotFound {
			t.Errorf("DELETE deleted key again: %d", r.Status)
		}
		tr := e.tokenForm(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {secondTok.RefreshToken}})
		if tr.Status != http.StatusBadRequest || tr.Error != "invalid_grant" {
			t.Errorf("refresh with the deleted key's token: %d %q, want 400 invalid_grant", tr.Status, tr.Error)
		}
		tr = e.tokenForm(t, url.Values{"grant_type": {"password"}, "username": {secondKey}, "password": {second.Body["Secret"].(string)}})
		if tr.Status != http.StatusBadRequest || tr.Error != "invalid_grant" {
			t.Errorf("password grant with the deleted key: %d %q", tr.Status, tr.Error)
		}
	})

	t.Run("invalid creations", func(t *testing.T) {
		tests := []struct {
			name, ct, body string
			status         int
			fields         []string
		}{
			{"no name", keyType, `{}`, 400, []string{"Name"}},
			{"blank name", keyType, `{"Name":" "}`, 400, []string{"Name"}},
			{"unknown field", keyType, `{"Name":"x","Admin":true}`, 400, []string{"Admin"}},
			{"wrong type", keyType, `{"Name":["x"]}`, 400, []string{"Name"}},
			{"malformed", keyType, `{"Name":`, 400, nil},
			{"not an object", keyType, `"x"`, 400, nil},
			{"trailing data", keyType, `{"Name":"a"} {"Name":"b"}`, 400, nil},
			{"empty body", keyType, ``, 400, nil},
			{"form", "application/x-www-form-urlencoded", `Name=x`, 415, nil},
			{"other vendor type", "application/vnd.imgtec.client+json", `{"Name":"x"}`, 415, nil},
			{"no Content-Type", "", `{"Name":"x"}`, 415, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, b.AccessToken, http.MethodPost, "/accesskeys", tt.ct, tt.body)
				switch {
				case tt.status == http.StatusBadRequest:
					wantBadRequest(t, r, tt.fields...)
				case r.Status != tt.status:
					t.Fatalf("status %d %s, want %d", r.Status, r.Raw, tt.status)
				case !strings.Contains(r.Header.Get("Content-Type"), "error"):
					t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
				}
			})
		}
		if keys := e.get(t, b.AccessToken, "/accesskeys"); pageInfo(keys)["TotalCount"] != 1.0 {
			t.Errorf("invalid requests created keys: %s", mustJSON(keys))
		}
	})
}
