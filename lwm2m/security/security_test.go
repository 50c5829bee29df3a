package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/storage"
)

// settingsStore keeps settings in memory; the embedded nil Store makes
// any other method panic, which would show that the CA uses more than
// its setting.
type settingsStore struct {
	storage.Store
	mu     sync.Mutex
	m      map[string][]byte
	getErr error
	puts   int
}

func newSettingsStore() *settingsStore { return &settingsStore{m: map[string][]byte{}} }

func (s *settingsStore) GetSetting(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.getErr != nil {
		return nil, s.getErr
	}
	v, ok := s.m[key]
	if !ok {
		return nil, storage.ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

func (s *settingsStore) PutSetting(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = append([]byte(nil), value...)
	s.puts++
	return nil
}

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func loadCA(t *testing.T, st storage.Store) *CA {
	t.Helper()
	ca, err := LoadOrCreateCA(t.Context(), st, t0)
	if err != nil {
		t.Fatalf("LoadOrCreateCA: %v", err)
	}
	return ca
}

func parseCert(t *testing.T, p string) *x509.Certificate {
	t.Helper()
	blk, rest := pem.Decode([]byte(p))
	if blk == nil || blk.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("not one CERTIFICATE PEM block: %q", p)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewPSK(t *testing.T) {
	seen := map[string]bool{}
	urlSafe := regexp.MustCompile(`^[A-Za-z0-9_-]{16}$`)
	for range 50 {
		id, secret, err := NewPSK()
		if err != nil {
			t.Fatal(err)
		}
		if !urlSafe.MatchString(id) {
			t.Errorf("identity %q is not 16 URL-safe characters", id)
		}
		if len(secret) != 16 {
			t.Errorf("secret of %d bytes, want 16", len(secret))
		}
		if seen[id] || seen[string(secret)] {
			t.Errorf("repeated identity or secret %q", id)
		}
		seen[id], seen[string(secret)] = true, true
	}
}

func TestCreateCA(t *testing.T) {
	st := newSettingsStore()
	ca := loadCA(t, st)
	if st.puts != 1 {
		t.Fatalf("%d PutSetting calls, want 1", st.puts)
	}
	c := parseCert(t, ca.CertificatePEM())
	if c.Subject.CommonName != "deviceserver CA" || !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("CA certificate: subject %v, IsCA %v, MaxPathLen %d/%v", c.Subject, c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("CA key usage %v", c.KeyUsage)
	}
	if pk, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pk.Curve != elliptic.P256() {
		t.Errorf("CA key %T, want ECDSA P-256", c.PublicKey)
	}
	if want := t0.AddDate(10, 0, 0); c.NotAfter.Before(want.Add(-7*24*time.Hour)) || c.NotAfter.After(want) {
		t.Errorf("CA NotAfter %v, want about ten years after %v", c.NotAfter, t0)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if stored := string(st.m[SettingCA]); !strings.Contains(stored, "PRIVATE KEY") || !strings.Contains(stored, ca.CertificatePEM()) {
		t.Errorf("stored setting lacks the certificate or key")
	}
}

func TestReloadGivesSameCA(t *testing.T) {
	st := newSettingsStore()
	first := loadCA(t, st)
	certPEM, _, _, _, err := first.Issue("org-a", "dev-1", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadOrCreateCA(t.Context(), st, t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if st.puts != 1 {
		t.Errorf("%d PutSetting calls after reload, want 1", st.puts)
	}
	if second.CertificatePEM() != first.CertificatePEM() {
		t.Errorf("reloaded CA certificate differs")
	}
	if !second.key.Equal(first.key) {
		t.Errorf("reloaded CA key differs")
	}
	if org, err := second.Verify(parseCert(t, certPEM), t0); err != nil || org != "org-a" {
		t.Errorf("reloaded CA verifies a certificate of the first: %q, %v", org, err)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Run("store error", func(t *testing.T) {
		st := newSettingsStore()
		boom := errors.New("disk on fire")
		st.getErr = boom
		if _, err := LoadOrCreateCA(t.Context(), st, t0); !errors.Is(err, boom) {
			t.Errorf("error %v, want one wrapping the store's", err)
		}
		if st.puts != 0 {
			t.Errorf("a CA was stored although the old one could not be read")
		}
	})
	// Another CA's certificate with this CA's key, and garbage.
	other := loadCA(t, newSettingsStore())
	st := newSettingsStore()
	mine := loadCA(t, st)
	keyDER, err := x509.MarshalPKCS8PrivateKey(mine.key)
	if err != nil {
		t.Fatal(err)
	}
	mismatched := other.CertificatePEM() + string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	for name, v := range map[string]string{
		"garbage":        "not PEM at all",
		"no key":         mine.CertificatePEM(),
		"key not cert's": mismatched,
	} {
		t.Run(name, func(t *testing.T) {
			st := newSettingsStore()
			st.m[SettingCA] = []byte(v)
			if _, err := LoadOrCreateCA(t.Context(), st, t0); err == nil || !strings.HasPrefix(err.Error(), "security: load CA: ") {
				t.Errorf("error %v, want a load CA error", err)
			}
			if string(st.m[SettingCA]) != v {
				t.Errorf("an unreadable CA was replaced")
			}
		})
	}
}

func TestIssueAndVerify(t *testing.T) {
	ca := loadCA(t, newSettingsStore())
	certPEM, keyPEM, serial, notAfter, err := ca.Issue("org-a", "dev-1", 30*24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	c := parseCert(t, certPEM)
	if c.Subject.CommonName != "dev-1" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "org-a" {
		t.Errorf("subject %v", c.Subject)
	}
	if c.IsCA || len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("IsCA %v, ExtKeyUsage %v", c.IsCA, c.ExtKeyUsage)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(serial) || CertificateID(c) != serial {
		t.Errorf("serial %q, certificate ID %q", serial, CertificateID(c))
	}
	if c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial of %d bits", c.SerialNumber.BitLen())
	}
	if want := t0.Add(30 * 24 * time.Hour); !notAfter.Equal(want) || !c.NotAfter.Equal(want) {
		t.Errorf("NotAfter %v / certificate %v, want %v", notAfter, c.NotAfter, want)
	}
	blk, _ := pem.Decode([]byte(keyPEM))
	if blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatalf("key PEM %q", keyPEM)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if ek, ok := k.(*ecdsa.PrivateKey); !ok || ek.Curve != elliptic.P256() || !ek.PublicKey.Equal(c.PublicKey) {
		t.Errorf("key %T does not match the certificate", k)
	}

	for name, at := range map[string]time.Time{
		"now":                       t0,
		"slightly behind":           t0.Add(-time.Minute),
		"just before it expires":    notAfter.Add(-time.Second),
		"with sub-second precision": t0.Add(time.Hour + 123*time.Millisecond),
	} {
		if org, err := ca.Verify(c, at); err != nil || org != "org-a" {
			t.Errorf("Verify %s: %q, %v", name, org, err)
		}
	}
	for name, at := range map[string]time.Time{
		"expired":       notAfter.Add(time.Second),
		"not yet valid": t0.Add(-time.Hour),
	} {
		if _, err := ca.Verify(c, at); err == nil {
			t.Errorf("Verify %s: no error", name)
		}
	}

	// Two issues never share a serial or a key.
	certPEM2, keyPEM2, serial2, _, err := ca.Issue("org-a", "dev-1", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if serial2 == serial || keyPEM2 == keyPEM || certPEM2 == certPEM {
		t.Errorf("second issue repeats the first")
	}
}

func TestIssueClampsToCAExpiry(t *testing.T) {
	ca := loadCA(t, newSettingsStore())
	certPEM, _, _, notAfter, err := ca.Issue("org-a", "dev-1", 20*365*24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !notAfter.Equal(ca.cert.NotAfter) || !parseCert(t, certPEM).NotAfter.Equal(ca.cert.NotAfter) {
		t.Errorf("NotAfter %v, want the CA's %v", notAfter, ca.cert.NotAfter)
	}
	if _, _, _, _, err := ca.Issue("org-a", "dev-1", time.Hour, ca.cert.NotAfter); err == nil {
		t.Errorf("an expired CA issued a certificate")
	}
}

func TestIssueInvalid(t *testing.T) {
	ca := loadCA(t, newSettingsStore())
	for _, tc := range []struct {
		name, org, cn string
		validity      time.Duration
	}{
		{"no organisation", "", "dev-1", time.Hour},
		{"no common name", "org-a", "", time.Hour},
		{"common name too long", "org-a", strings.Repeat("é", 65), time.Hour},
		{"zero validity", "org-a", "dev-1", 0},
		{"negative validity", "org-a", "dev-1", -time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, _, err := ca.Issue(tc.org, tc.cn, tc.validity, t0)
			if err == nil || !strings.HasPrefix(err.Error(), "security: issue certificate: ") {
				t.Errorf("error %v", err)
			}
		})
	}
	if _, _, _, _, err := ca.Issue("org-a", strings.Repeat("é", 64), time.Hour, t0); err != nil {
		t.Errorf("64-character common name: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	ca := loadCA(t, newSettingsStore())
	other := loadCA(t, newSettingsStore())

	t.Run("another CA's certificate", func(t *testing.T) {
		p, _, _, _, err := other.Issue("org-a", "dev-1", time.Hour, t0)
		if err != nil {
			t.Fatal(err)
		}
		if org, err := ca.Verify(parseCert(t, p), t0); err == nil {
			t.Errorf("verified as %q", org)
		}
	})
	t.Run("the CA itself", func(t *testing.T) {
		if org, err := ca.Verify(parseCert(t, ca.CertificatePEM()), t0); err == nil {
			t.Errorf("verified as %q", org)
		}
	})
	t.Run("nil", func(t *testing.T) {
		if _, err := ca.Verify(nil, t0); err == nil {
			t.Error("no error")
		}
	})

	// Certificates the CA signed but would never issue.
	sign := func(t *testing.T, tmpl *x509.Certificate) *x509.Certificate {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber = big.NewInt(7)
		tmpl.NotBefore, tmpl.NotAfter = t0.Add(-time.Hour), t0.Add(time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for name, tmpl := range map[string]*x509.Certificate{
		"server auth only": {Subject: pkix.Name{CommonName: "dev-1", Organization: []string{"org-a"}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		"no organisation": {Subject: pkix.Name{CommonName: "dev-1"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		"two organisations": {Subject: pkix.Name{CommonName: "dev-1", Organization: []string{"org-a", "org-b"}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	} {
		t.Run(name, func(t *testing.T) {
			if org, err := ca.Verify(sign(t, tmpl), t0); err == nil {
				t.Errorf("verified as %q", org)
			}
		})
	}
}

func TestPool(t *testing.T) {
	ca := loadCA(t, newSettingsStore())
	other := loadCA(t, newSettingsStore())
	p, _, _, _, err := ca.Issue("org-a", "dev-1", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	opts := x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := parseCert(t, p).Verify(opts); err != nil {
		t.Errorf("an issued certificate does not verify against Pool: %v", err)
	}
	// Changing a returned pool does not make the CA trust more.
	pool := ca.Pool()
	pool.AddCert(parseCert(t, other.CertificatePEM()))
	q, _, _, _, err := other.Issue("org-a", "dev-1", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Verify(parseCert(t, q), t0); err == nil {
		t.Errorf("the CA trusts what was added to a pool it returned")
	}
}
