package server_test

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m/security"
	"github.com/deviceserver/deviceserver/server"
)

const (
	pskType         = "application/vnd.imgtec.pskidentity+json"
	pskListType     = "application/vnd.imgtec.pskidentities+json"
	certType        = "application/vnd.imgtec.certificate+json"
	certListType    = "application/vnd.imgtec.certificates+json"
	identitiesType  = "application/vnd.imgtec.identities+json"
	hexSecretLength = 32 // 16 bytes
)

// withCA gives the server a certificate authority kept in its store, and
// hands it to the test through ca.
func withCA(t testing.TB, ca **security.CA) func(*server.Config) {
	return func(cfg *server.Config) {
		t.Helper()
		c, err := security.LoadOrCreateCA(t.Context(), cfg.Store, cfg.Now())
		if err != nil {
			t.Fatalf("LoadOrCreateCA: %v", err)
		}
		cfg.CA = c
		if ca != nil {
			*ca = c
		}
	}
}

// rawDo sends a request without env.do's checks, for the statuses env.do
// treats as a server failure (503).
func rawDo(t testing.TB, e *env, token, method, path, contentType, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, e.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Errorf("%s %s: body %q: %v", method, path, raw, err)
		}
	}
	return res.StatusCode, res.Header, m
}

// links maps the rels of rep's links to "href type".
func linkMap(rep map[string]any) map[string]string {
	out := map[string]string{}
	for _, l := range asList(rep["Links"]) {
		lm, _ := l.(map[string]any)
		typ, _ := lm["type"].(string)
		out[lm["rel"].(string)] = strings.TrimSpace(lm["href"].(string) + " " + typ)
	}
	return out
}

func wantLinks(t testing.TB, rep map[string]any, want map[string]string) {
	t.Helper()
	got := linkMap(rep)
	if len(got) != len(want) {
		t.Errorf("links %v, want %v", got, want)
		return
	}
	for rel, w := range want {
		if got[rel] != w {
			t.Errorf("link %s = %q, want %q", rel, got[rel], w)
		}
	}
}

func TestIdentitiesRoot(t *testing.T) {
	e := newEnv(t)
	r := e.do(t, e.admin, http.MethodGet, "/identities", "", "")
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != identitiesType {
		t.Fatalf("GET /identities: %d %s %s", r.Status, r.Header.Get("Content-Type"), r.Raw)
	}
	wantLinks(t, r.Body, map[string]string{
		"self":        e.URL + "/identities application/vnd.imgtec.identities",
		"psk":         e.URL + "/identities/psk application/vnd.imgtec.pskidentities",
		"certificate": e.URL + "/identities/certificates application/vnd.imgtec.certificates",
	})
	if r := e.do(t, "", http.MethodGet, "/identities", "", ""); r.Status != http.StatusUnauthorized {
		t.Errorf("GET /identities without a token: %d", r.Status)
	}
	if h := link(t, e.get(t, e.admin, "/"), "identities"); h != e.URL+"/identities" {
		t.Errorf("entry point identities link %q", h)
	}
}

func TestPSKIdentities(t *testing.T) {
	e := newEnv(t)
	other := e.other(t)

	list := e.get(t, e.admin, "/identities/psk")
	if pageInfo(list)["TotalCount"] != 0.0 || len(items(list)) != 0 {
		t.Fatalf("empty list: %s", mustJSON(list))
	}
	wantLinks(t, list, map[string]string{"add": e.URL + "/identities/psk application/vnd.imgtec.pskidentity"})

	// Three ways to ask for one: no body at all, {} with the vendor type,
	// {} as plain JSON. They are created a second apart, so the list order
	// (by creation) is known.
	var ids []string
	secrets := map[string]string{}
	for _, req := range []struct{ ct, body string }{{"", ""}, {pskType, "{}"}, {"application/json", " { } "}} {
		e.clock.Set(e.clock.Now().Add(time.Second))
		r := e.do(t, e.admin, http.MethodPost, "/identities/psk", req.ct, req.body)
		if r.Status != http.StatusCreated || r.Header.Get("Content-Type") != pskType {
			t.Fatalf("POST %q %q: %d %s %s", req.ct, req.body, r.Status, r.Header.Get("Content-Type"), r.Raw)
		}
		id, _ := r.Body["Identity"].(string)
		secret, _ := r.Body["Secret"].(string)
		if !regexp.MustCompile(`^[A-Za-z0-9_-]{16}$`).MatchString(id) {
			t.Errorf("Identity %q", id)
		}
		if len(secret) != hexSecretLength || strings.ToLower(secret) != secret {
			t.Errorf("Secret %q is not %d lower-case hex digits", secret, hexSecretLength)
		}
		self := e.URL + "/identities/psk/" + id
		if loc := r.Header.Get("Location"); loc != self {
			t.Errorf("Location %q, want %q", loc, self)
		}
		wantLinks(t, r.Body, map[string]string{"self": self + " application/vnd.imgtec.pskidentity"})
		// The store keeps the secret as the device must present it.
		stored, err := e.store.GetPSKIdentity(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(stored.Secret) != secret || stored.OrganisationID != adminOrg {
			t.Errorf("stored %+v, answered secret %s", stored, secret)
		}
		if secrets[secret] != "" {
			t.Errorf("secret repeated")
		}
		ids, secrets[secret] = append(ids, id), id
	}

	list = e.get(t, e.admin, "/identities/psk")
	if pageInfo(list)["TotalCount"] != 3.0 || len(items(list)) != 3 {
		t.Fatalf("list: %s", mustJSON(list))
	}
	for i, it := range items(list) {
		if it["Identity"] != ids[i] {
			t.Errorf("item %d is %v, want %s (creation order)", i, it["Identity"], ids[i])
		}
		if _, ok := it["Secret"]; ok {
			t.Errorf("list shows a secret: %v", it)
		}
		self := e.URL + "/identities/psk/" + ids[i]
		wantLinks(t, it, map[string]string{"self": self + " application/vnd.imgtec.pskidentity", "remove": self})
	}
	if r := e.do(t, e.admin, http.MethodGet, "/identities/psk?pageSize=2&startIndex=2", "", ""); r.Status != http.StatusOK ||
		r.Header.Get("Content-Type") != pskListType || len(items(r.Body)) != 1 || items(r.Body)[0]["Identity"] != ids[2] {
		t.Errorf("second page: %d %s", r.Status, r.Raw)
	}

	got := e.get(t, e.admin, "/identities/psk/"+ids[0])
	if got["Identity"] != ids[0] || got["Secret"] != nil {
		t.Errorf("GET: %s", mustJSON(got))
	}
	wantLinks(t, got, map[string]string{
		"self":   e.URL + "/identities/psk/" + ids[0] + " application/vnd.imgtec.pskidentity",
		"remove": e.URL + "/identities/psk/" + ids[0],
	})

	t.Run("other organisation", func(t *testing.T) {
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			if r := e.do(t, other, m, "/identities/psk/"+ids[0], "", ""); r.Status != http.StatusNotFound {
				t.Errorf("%s another organisation's identity: %d %s", m, r.Status, r.Raw)
			}
		}
		if l := e.get(t, other, "/identities/psk"); pageInfo(l)["TotalCount"] != 0.0 {
			t.Errorf("other organisation's list: %s", mustJSON(l))
		}
		r := e.do(t, other, http.MethodPost, "/identities/psk", "", "")
		if r.Status != http.StatusCreated {
			t.Fatalf("other organisation POST: %d %s", r.Status, r.Raw)
		}
		theirs := r.Body["Identity"].(string)
		if r := e.do(t, e.admin, http.MethodGet, "/identities/psk/"+theirs, "", ""); r.Status != http.StatusNotFound {
			t.Errorf("administrator GET of another organisation's identity: %d", r.Status)
		}
		if l := e.get(t, other, "/identities/psk"); len(items(l)) != 1 || items(l)[0]["Identity"] != theirs {
			t.Errorf("other organisation's list: %s", mustJSON(l))
		}
		e.get(t, e.admin, "/identities/psk/"+ids[0]) // still there
	})

	t.Run("invalid creations", func(t *testing.T) {
		tests := []struct {
			name, ct, body string
			status         int
			fields         []string
		}{
			{"a chosen identity", pskType, `{"Identity":"mine"}`, 400, []string{"Identity"}},
			{"malformed", pskType, `{`, 400, nil},
			{"not an object", pskType, `[]`, 400, nil},
			{"body without Content-Type", "", `{}`, 415, nil},
			{"other vendor type", certType, `{}`, 415, nil},
			{"form", "application/x-www-form-urlencoded", `a=b`, 415, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, e.admin, http.MethodPost, "/identities/psk", tt.ct, tt.body)
				if tt.status == http.StatusBadRequest {
					wantBadRequest(t, r, tt.fields...)
				} else if r.Status != tt.status {
					t.Fatalf("status %d %s, want %d", r.Status, r.Raw, tt.status)
				}
			})
		}
		if l := e.get(t, e.admin, "/identities/psk"); pageInfo(l)["TotalCount"] != 3.0 {
			t.Errorf("invalid requests created identities: %s", mustJSON(l))
		}
	})

	t.Run("delete", func(t *testing.T) {
		if r := e.do(t, e.admin, http.MethodDelete, "/identities/psk/"+ids[1], "", ""); r.Status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.Status, r.Raw)
		}
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			if r := e.do(t, e.admin, m, "/identities/psk/"+ids[1], "", ""); r.Status != http.StatusNotFound {
				t.Errorf("%s after delete: %d", m, r.Status)
			}
		}
		l := e.get(t, e.admin, "/identities/psk")
		if len(items(l)) != 2 || items(l)[0]["Identity"] != ids[0] || items(l)[1]["Identity"] != ids[2] {
			t.Errorf("list after delete: %s", mustJSON(l))
		}
	})
}

// issued is a certificate the API issued, parsed.
type issued struct {
	rep  map[string]any
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	ca   *x509.Certificate
}

func pemBlock(t testing.TB, v any, typ string) []byte {
	t.Helper()
	s, _ := v.(string)
	blk, rest := pem.Decode([]byte(s))
	if blk == nil || blk.Type != typ || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("not one %s PEM block: %q", typ, s)
	}
	return blk.Bytes
}

// issue creates a certificate through the API and parses its parts.
func issue(t testing.TB, e *env, token, body string) issued {
	t.Helper()
	r := e.do(t, token, http.MethodPost, "/identities/certificates", certType, body)
	if r.Status != http.StatusCreated || r.Header.Get("Content-Type") != certType {
		t.Fatalf("POST %s: %d %s", body, r.Status, r.Raw)
	}
	var out issued
	var err error
	out.rep = r.Body
	if out.cert, err = x509.ParseCertificate(pemBlock(t, r.Body["Certificate"], "CERTIFICATE")); err != nil {
		t.Fatal(err)
	}
	if out.ca, err = x509.ParseCertificate(pemBlock(t, r.Body["CACertificate"], "CERTIFICATE")); err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParsePKCS8PrivateKey(pemBlock(t, r.Body["PrivateKey"], "PRIVATE KEY"))
	if err != nil {
		t.Fatal(err)
	}
	var ok bool
	if out.key, ok = k.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("private key %T, want ECDSA", k)
	}
	self := e.URL + "/identities/certificates/" + out.rep["ID"].(string)
	if loc := r.Header.Get("Location"); loc != self {
		t.Errorf("Location %q, want %q", loc, self)
	}
	wantLinks(t, r.Body, map[string]string{"self": self + " application/vnd.imgtec.certificate"})
	return out
}

func TestCertificates(t *testing.T) {
	var ca *security.CA
	e := newEnv(t, withCA(t, &ca))
	other := e.other(t)
	now := e.clock.Now()

	list := e.get(t, e.admin, "/identities/certificates")
	if pageInfo(list)["TotalCount"] != 0.0 {
		t.Fatalf("empty list: %s", mustJSON(list))
	}
	wantLinks(t, list, map[string]string{"add": e.URL + "/identities/certificates application/vnd.imgtec.certificate"})

	first := issue(t, e, e.admin, `{"Subject":"dev-1"}`)
	t.Run("issued certificate", func(t *testing.T) {
		c := first.cert
		if c.Subject.CommonName != "dev-1" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != adminOrg {
			t.Errorf("subject %v, want CN dev-1, O %s", c.Subject, adminOrg)
		}
		if first.rep["Subject"] != "dev-1" || first.rep["ID"] != security.CertificateID(c) {
			t.Errorf("representation %v for serial %x", first.rep, c.SerialNumber)
		}
		if first.rep["CACertificate"] != ca.CertificatePEM() {
			t.Errorf("CACertificate is not the server's CA")
		}
		roots := x509.NewCertPool()
		roots.AddCert(first.ca)
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("certificate does not chain to the returned CA for client auth: %v", err)
		}
		if !first.key.PublicKey.Equal(c.PublicKey) {
			t.Errorf("private key does not match the certificate")
		}
		want := now.Add(365 * 24 * time.Hour)
		if !c.NotAfter.Equal(want) || first.rep["NotAfter"] != want.Format(time.RFC3339) {
			t.Errorf("NotAfter %v / %v, want the default of 365 days: %v", c.NotAfter, first.rep["NotAfter"], want)
		}
		if org, err := ca.Verify(c, now); err != nil || org != adminOrg {
			t.Errorf("CA.Verify: %q, %v", org, err)
		}
		stored, err := e.store.GetCertificate(t.Context(), security.CertificateID(c))
		if err != nil || stored.OrganisationID != adminOrg || stored.PEM != first.rep["Certificate"] {
			t.Errorf("stored %+v, %v", stored, err)
		}
	})

	e.clock.Set(now.Add(time.Second))
	second := issue(t, e, e.admin, `{"Subject":"dev-2","ValidityDays":30}`)
	if want := now.Add(time.Second + 30*24*time.Hour); !second.cert.NotAfter.Equal(want) {
		t.Errorf("ValidityDays 30: NotAfter %v, want %v", second.cert.NotAfter, want)
	}
	ids := []string{first.rep["ID"].(string), second.rep["ID"].(string)}

	list = e.get(t, e.admin, "/identities/certificates")
	if r := e.do(t, e.admin, http.MethodGet, "/identities/certificates", "", ""); r.Header.Get("Content-Type") != certListType {
		t.Errorf("list Content-Type %q", r.Header.Get("Content-Type"))
	}
	if pageInfo(list)["TotalCount"] != 2.0 || len(items(list)) != 2 {
		t.Fatalf("list: %s", mustJSON(list))
	}
	for i, it := range items(list) {
		if it["ID"] != ids[i] || it["Subject"] == nil || it["NotAfter"] == nil {
			t.Errorf("item %d: %v, want ID %s (creation order)", i, it, ids[i])
		}
		for _, f := range []string{"Certificate", "PrivateKey", "CACertificate"} {
			if _, ok := it[f]; ok {
				t.Errorf("list item shows %s", f)
			}
		}
		self := e.URL + "/identities/certificates/" + ids[i]
		wantLinks(t, it, map[string]string{"self": self + " application/vnd.imgtec.certificate", "remove": self})
	}

	got := e.get(t, e.admin, "/identities/certificates/"+ids[0])
	if got["ID"] != ids[0] || got["Subject"] != "dev-1" || got["Certificate"] != first.rep["Certificate"] ||
		got["NotAfter"] != first.rep["NotAfter"] || got["PrivateKey"] != nil {
		t.Errorf("GET: %s", mustJSON(got))
	}

	t.Run("other organisation", func(t *testing.T) {
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			if r := e.do(t, other, m, "/identities/certificates/"+ids[0], "", ""); r.Status != http.StatusNotFound {
				t.Errorf("%s another organisation's certificate: %d %s", m, r.Status, r.Raw)
			}
		}
		if l := e.get(t, other, "/identities/certificates"); pageInfo(l)["TotalCount"] != 0.0 {
			t.Errorf("other organisation's list: %s", mustJSON(l))
		}
		// The same endpoint name in another organisation gets its own O.
		theirs := issue(t, e, other, `{"Subject":"dev-1"}`)
		if o := theirs.cert.Subject.Organization; len(o) != 1 || o[0] != otherOrg {
			t.Errorf("other organisation's certificate O %v", o)
		}
		if org, err := ca.Verify(theirs.cert, e.clock.Now()); err != nil || org != otherOrg {
			t.Errorf("CA.Verify: %q, %v", org, err)
		}
		if r := e.do(t, e.admin, http.MethodGet, "/identities/certificates/"+theirs.rep["ID"].(string), "", ""); r.Status != http.StatusNotFound {
			t.Errorf("administrator GET of another organisation's certificate: %d", r.Status)
		}
	})

	t.Run("invalid creations", func(t *testing.T) {
		tests := []struct {
			name, ct, body string
			status         int
			fields         []string
		}{
			{"no subject", certType, `{}`, 400, []string{"Subject"}},
			{"blank subject", certType, `{"Subject":"  "}`, 400, []string{"Subject"}},
			{"subject too long", certType, `{"Subject":"` + strings.Repeat("x", 65) + `"}`, 400, []string{"Subject"}},
			{"control character", certType, `{"Subject":"dev\n1"}`, 400, []string{"Subject"}},
			{"subject not a string", certType, `{"Subject":5}`, 400, []string{"Subject"}},
			{"zero days", certType, `{"Subject":"d","ValidityDays":0}`, 400, []string{"ValidityDays"}},
			{"negative days", certType, `{"Subject":"d","ValidityDays":-1}`, 400, []string{"ValidityDays"}},
			{"too many days", certType, `{"Subject":"d","ValidityDays":3651}`, 400, []string{"ValidityDays"}},
			{"fractional days", certType, `{"Subject":"d","ValidityDays":1.5}`, 400, []string{"ValidityDays"}},
			{"days as text", certType, `{"Subject":"d","ValidityDays":"10"}`, 400, []string{"ValidityDays"}},
			{"huge days", certType, `{"Subject":"d","ValidityDays":1e30}`, 400, []string{"ValidityDays"}},
			{"unknown field", certType, `{"Subject":"d","PrivateKey":"x"}`, 400, []string{"PrivateKey"}},
			{"malformed", certType, `{"Subject":`, 400, nil},
			{"empty body", certType, ``, 400, nil},
			{"no Content-Type", "", `{"Subject":"d"}`, 415, nil},
			{"other vendor type", pskType, `{"Subject":"d"}`, 415, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, e.admin, http.MethodPost, "/identities/certificates", tt.ct, tt.body)
				if tt.status == http.StatusBadRequest {
					wantBadRequest(t, r, tt.fields...)
				} else if r.Status != tt.status {
					t.Fatalf("status %d %s, want %d", r.Status, r.Raw, tt.status)
				}
			})
		}
		if l := e.get(t, e.admin, "/identities/certificates"); pageInfo(l)["TotalCount"] != 2.0 {
			t.Errorf("invalid requests issued certificates: %s", mustJSON(l))
		}
	})

	t.Run("limits", func(t *testing.T) {
		long := issue(t, e, e.admin, `{"Subject":"`+strings.Repeat("é", 64)+`","ValidityDays":3650}`)
		if long.cert.Subject.CommonName != strings.Repeat("é", 64) {
			t.Errorf("CN %q", long.cert.Subject.CommonName)
		}
		short := issue(t, e, e.admin, `{"Subject":"d","ValidityDays":1}`)
		if want := e.clock.Now().Add(24 * time.Hour); !short.cert.NotAfter.Equal(want) {
			t.Errorf("NotAfter %v, want %v", short.cert.NotAfter, want)
		}
		for _, x := range []issued{long, short} {
			if r := e.do(t, e.admin, http.MethodDelete, "/identities/certificates/"+x.rep["ID"].(string), "", ""); r.Status != http.StatusNoContent {
				t.Errorf("DELETE: %d %s", r.Status, r.Raw)
			}
		}
	})

	t.Run("delete", func(t *testing.T) {
		if r := e.do(t, e.admin, http.MethodDelete, "/identities/certificates/"+ids[0], "", ""); r.Status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.Status, r.Raw)
		}
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			if r := e.do(t, e.admin, m, "/identities/certificates/"+ids[0], "", ""); r.Status != http.StatusNotFound {
				t.Errorf("%s after delete: %d", m, r.Status)
			}
		}
		l := e.get(t, e.admin, "/identities/certificates")
		if len(items(l)) != 1 || items(l)[0]["ID"] != ids[1] {
			t.Errorf("list after delete: %s", mustJSON(l))
		}
	})
}

func TestCertificatesWithoutCA(t *testing.T) {
	e := newEnv(t)
	for _, req := range []struct{ method, path, ct, body string }{
		{http.MethodGet, "/identities/certificates", "", ""},
		{http.MethodPost, "/identities/certificates", certType, `{"Subject":"dev-1"}`},
		{http.MethodGet, "/identities/certificates/00", "", ""},
		{http.MethodDelete, "/identities/certificates/00", "", ""},
	} {
		status, h, body := rawDo(t, e, e.admin, req.method, req.path, req.ct, req.body)
		msg, _ := body["ErrorMessage"].(string)
		if status != http.StatusServiceUnavailable || !strings.Contains(msg, "certificate authority") ||
			!vendorJSON.MatchString(h.Get("Content-Type")) {
			t.Errorf("%s %s without a CA: %d %s %v, want 503 naming the missing CA", req.method, req.path, status, h.Get("Content-Type"), body)
		}
	}
	// PSK identities do not need the CA.
	if r := e.do(t, e.admin, http.MethodPost, "/identities/psk", "", ""); r.Status != http.StatusCreated {
		t.Errorf("POST /identities/psk without a CA: %d %s", r.Status, r.Raw)
	}
}
