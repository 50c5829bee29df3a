package server_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/deviceserver/deviceserver/server"
	"github.com/deviceserver/deviceserver/storage/sqlite"
)

func TestRoot(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		token string
		want  []string
	}{
		{"unauthenticated", "", []string{"authenticate", "versions"}},
		{"invalid token", "not-a-token", []string{"authenticate", "versions"}},
		{"authenticated", e.admin, []string{"authenticate", "versions", "accesskeys", "configuration", "clients", "groups", "identities", "metrics", "objectdefinitions", "subscriptions"}},
	}
	hrefs := map[string]string{"authenticate": "/oauth/token", "versions": "/versions", "accesskeys": "/accesskeys",
		"clients": "/clients", "groups": "/groups", "objectdefinitions": "/objecttypes/definitions", "subscriptions": "/subscriptions",
		"configuration": "/configuration", "identities": "/identities", "metrics": "/metrics"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.token, http.MethodGet, "/", "", "")
			if r.Status != http.StatusOK {
				t.Fatalf("GET /: %d %s", r.Status, r.Raw)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/vnd.imgtec.api+json" {
				t.Errorf("Content-Type %q", ct)
			}
			got := rels(r.Body)
			if !slices.Equal(got, tt.want) {
				t.Errorf("links %v, want %v", got, tt.want)
			}
			for _, rel := range got {
				if h := link(t, r.Body, rel); h != e.URL+hrefs[rel] {
					t.Errorf("%s href %q, want the absolute %q", rel, h, e.URL+hrefs[rel])
				}
			}
		})
	}
	t.Run("links are followable", func(t *testing.T) {
		root := e.get(t, e.admin, "/")
		for _, rel := range []string{"accesskeys", "clients", "groups", "objectdefinitions", "subscriptions", "versions"} {
			e.get(t, e.admin, link(t, root, rel))
		}
	})
}

func TestForwardedHeaders(t *testing.T) {
	fwd := []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "api.example.com"}
	tests := []struct {
		name  string
		trust bool
		want  string
	}{
		{"not trusted", false, ""},
		{"trusted proxy", true, "https://api.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *server.Config) { c.TrustProxy = tt.trust })
			want := tt.want
			if want == "" {
				want = e.URL
			}
			r := e.do(t, "", http.MethodGet, "/", "", "", fwd...)
			if h := link(t, r.Body, "versions"); h != want+"/versions" {
				t.Errorf("versions link %q, want %q", h, want+"/versions")
			}
		})
	}
}

func TestVersionsIsPublic(t *testing.T) {
	e := newEnv(t)
	for _, token := range []string{"", e.admin} {
		r := e.do(t, token, http.MethodGet, "/versions", "", "")
		if r.Status != http.StatusOK {
			t.Fatalf("GET /versions: %d %s", r.Status, r.Raw)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/vnd.imgtec.versions+json" {
			t.Errorf("Content-Type %q", ct)
		}
		if b, _ := r.Body["BuildNumber"].(string); b == "" {
			t.Errorf("no BuildNumber: %s", r.Raw)
		}
		comps := asList(r.Body["Components"])
		if len(comps) == 0 || comps[0].(map[string]any)["Name"] != "deviceserver" {
			t.Errorf("Components %v, want deviceserver first", comps)
		}
		if link(t, r.Body, "self") != e.URL+"/versions" {
			t.Errorf("self link %v", r.Body["Links"])
		}
	}
}

func TestTokenGrants(t *testing.T) {
	e := newEnv(t)
	refresh := e.token(t, adminKey, adminSecret).RefreshToken
	tests := []struct {
		name   string
		form   url.Values
		ct     string // default form encoding
		status int
		error  string // OAuth error code; "" for success
	}{
		{"password", url.Values{"grant_type": {"password"}, "username": {adminKey}, "password": {adminSecret}}, "", 200, ""},
		{"wrong secret", url.Values{"grant_type": {"password"}, "username": {adminKey}, "password": {"nope"}}, "", 400, "invalid_grant"},
		{"unknown key", url.Values{"grant_type": {"password"}, "username": {"nobody"}, "password": {adminSecret}}, "", 400, "invalid_grant"},
		{"no credentials", url.Values{"grant_type": {"password"}}, "", 400, "invalid_grant"},
		{"refresh", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, "", 200, ""},
		{"refresh token used twice", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, "", 400, "invalid_grant"},
		{"unknown refresh token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"bogus"}}, "", 400, "invalid_grant"},
		{"access token as refresh token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {e.admin}}, "", 400, "invalid_grant"},
		{"unsupported grant", url.Values{"grant_type": {"client_credentials"}}, "", 400, "unsupported_grant_type"},
		{"no grant type", url.Values{"username": {adminKey}, "password": {adminSecret}}, "", 400, "invalid_request"},
		{"JSON body", nil, "application/json", 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.ct
			body := tt.form.Encode()
			if ct == "" {
				ct = "application/x-www-form-urlencoded"
			} else {
				body = `{"grant_type":"password","username":"` + adminKey + `","password":"` + adminSecret + `"}`
			}
			r := e.do(t, "", http.MethodPost, "/oauth/token", ct, body)
			if r.Status != tt.status {
				t.Fatalf("status %d %s, want %d", r.Status, r.Raw, tt.status)
			}
			if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			if tt.error != "" {
				if r.Body["error"] != tt.error {
					t.Errorf("error %v, want %s", r.Body["error"], tt.error)
				}
				if _, leaked := r.Body["access_token"]; leaked {
					t.Errorf("error answer carries a token: %s", r.Raw)
				}
				return
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/vnd.imgtec.oauthtoken+json" {
				t.Errorf("Content-Type %q", ct)
			}
			if r.Body["token_type"] != "Bearer" || r.Body["expires_in"] != 3600.0 {
				t.Errorf("token_type %v expires_in %v, want Bearer 3600", r.Body["token_type"], r.Body["expires_in"])
			}
			at, _ := r.Body["access_token"].(string)
			rt, _ := r.Body["refresh_token"].(string)
			if at == "" || rt == "" || rt == refresh {
				t.Fatalf("tokens %q / %q (old refresh %q)", at, rt, refresh)
			}
			e.get(t, at, "/clients")
		})
	}
}

func TestRefreshRotation(t *testing.T) {
	e := newEnv(t)
	first := e.token(t, adminKey, adminSecret)
	refresh := func(tok string) tokenResp {
		return e.tokenForm(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}})
	}
	second := refresh(first.RefreshToken)
	if second.Status != http.StatusOK || second.RefreshToken == first.RefreshToken {
		t.Fatalf("first refresh: %+v", second)
	}
	if again := refresh(first.RefreshToken); again.Status != http.StatusBadRequest || again.Error != "invalid_grant" {
		t.Errorf("old refresh token the second time: %d %q, want 400 invalid_grant", again.Status, again.Error)
	}
	third := refresh(second.RefreshToken)
	if third.Status != http.StatusOK {
		t.Fatalf("rotated refresh token: %+v", third)
	}
	e.get(t, third.AccessToken, "/accesskeys")

	// Refresh tokens expire too.
	e.clock.Set(e.start.Add(31 * 24 * time.Hour))
	defer e.clock.Set(e.start)
	if late := refresh(third.RefreshToken); late.Status != http.StatusBadRequest || late.Error != "invalid_grant" {
		t.Errorf("expired refresh token: %d %q, want 400 invalid_grant", late.Status, late.Error)
	}
}

// sign makes a token with the server's key (or another) to probe claim checks.
func sign(t *testing.T, key []byte, method jwt.SigningMethod, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	now := e.start
	valid := jwt.MapClaims{"org": adminOrg, "sub": adminKey, "exp": now.Add(time.Hour).Unix()}
	without := func(k string) jwt.MapClaims {
		c := jwt.MapClaims{}
		for n, v := range valid {
			if n != k {
				c[n] = v
			}
		}
		return c
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, valid).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		header string // Authorization
		at     time.Time
		status int
	}{
		{"valid token", "Bearer " + e.admin, now, 200},
		{"self-made token with the right key", "Bearer " + sign(t, tokenKey, jwt.SigningMethodHS256, valid), now, 200},
		{"no Authorization", "", now, 401},
		{"basic auth", "Basic YWRtaW4ta2V5OmFkbWluLXNlY3JldA==", now, 401},
		{"empty bearer", "Bearer ", now, 401},
		{"lower-case scheme", "bearer " + e.admin, now, 401},
		{"malformed token", "Bearer abc.def.ghi", now, 401},
		{"garbage", "Bearer ###", now, 401},
		{"truncated token", "Bearer " + e.admin[:len(e.admin)-3], now, 401},
		{"other signing key", "Bearer " + sign(t, []byte("another key of 32 bytes........."), jwt.SigningMethodHS256, valid), now, 401},
		{"alg none", "Bearer " + none, now, 401},
		{"HS512", "Bearer " + sign(t, tokenKey, jwt.SigningMethodHS512, valid), now, 401},
		{"no expiry", "Bearer " + sign(t, tokenKey, jwt.SigningMethodHS256, without("exp")), now, 401},
		{"no organisation", "Bearer " + sign(t, tokenKey, jwt.SigningMethodHS256, without("org")), now, 401},
		{"no key", "Bearer " + sign(t, tokenKey, jwt.SigningMethodHS256, without("sub")), now, 401},
		{"expired", "Bearer " + e.admin, now.Add(time.Hour + time.Second), 401},
		{"not yet expired", "Bearer " + e.admin, now.Add(time.Hour - time.Second), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Set(tt.at)
			defer e.clock.Set(now)
			var extra []string
			if tt.header != "" {
				extra = []string{"Authorization", tt.header}
			}
			r := e.do(t, "", http.MethodGet, "/clients", "", "", append(extra, "X-Client-RequestId", "req-"+tt.name)...)
			if r.Status != tt.status {
				t.Fatalf("status %d %s, want %d", r.Status, r.Raw, tt.status)
			}
			if tt.status != http.StatusUnauthorized {
				return
			}
			if ch := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer") {
				t.Errorf("WWW-Authenticate %q, want a Bearer challenge", ch)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/vnd.imgtec.error+json" {
				t.Errorf("401 Content-Type %q", ct)
			}
		})
	}
	t.Run("every route but the public ones needs a token", func(t *testing.T) {
		for _, p := range []string{"/accesskeys", "/accesskeys/" + adminKey, "/clients/x", "/clients/x/objecttypes",
			"/clients/x/objecttypes/3/instances/0", "/objecttypes/definitions", "/objecttypes/definitions/3", "/subscriptions", "/subscriptions/x"} {
			if r := e.do(t, "", http.MethodGet, p, "", ""); r.Status != http.StatusUnauthorized {
				t.Errorf("GET %s without a token: %d", p, r.Status)
			}
		}
	})
}

func TestBootstrap(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	org, creds, err := server.Bootstrap(ctx, st, "", "", time.Now(), bcrypt.MinCost)
	if err != nil || org == "" || creds == nil || creds.Key == "" || creds.Secret == "" {
		t.Fatalf("first start: %q %+v %v", org, creds, err)
	}
	k, err := st.GetAccessKey(ctx, creds.Key)
	if err != nil || k.OrganisationID != org || strings.Contains(string(k.SecretHash), creds.Secret) {
		t.Fatalf("stored key %+v, %v: want the secret only as a hash", k, err)
	}
	again, creds2, err := server.Bootstrap(ctx, st, "", "", time.Now(), bcrypt.MinCost)
	if err != nil || again != org || creds2 != nil {
		t.Errorf("second start: %q %+v %v; want the same organisation and no new credentials", again, creds2, err)
	}
}
