package storetest

import (
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/storage"
)

func pskIdentity(id, org string, created time.Time) storage.PSKIdentity {
	// The secret has a zero byte and high bytes so that a store keeping it
	// as text rather than bytes is caught.
	return storage.PSKIdentity{Identity: id, OrganisationID: org, Secret: []byte{0, 0x7f, 0x80, 0xff, byte(len(id))}, CreatedAt: created}
}

func certificate(id, org, subject string, created time.Time) storage.Certificate {
	return storage.Certificate{
		ID:             id,
		OrganisationID: org,
		Subject:        subject,
		PEM:            "-----BEGIN CERTIFICATE-----\nMIIB" + id + "\n-----END CERTIFICATE-----\n",
		NotAfter:       created.Add(365 * 24 * time.Hour),
		CreatedAt:      created,
	}
}

func testPSKIdentities(t *testing.T, s storage.Store) {
	ctx := t.Context()
	p1 := pskIdentity("psk-1", "org-a", t0().Add(2*time.Second))
	p2 := pskIdentity("psk-2", "org-a", t0())
	p3 := pskIdentity("psk-3", "org-b", t0().Add(time.Second))

	_, err := s.GetPSKIdentity(ctx, p1.Identity)
	wantErr(t, err, storage.ErrNotFound, "GetPSKIdentity(missing)")
	wantErr(t, s.DeletePSKIdentity(ctx, p1.Identity), storage.ErrNotFound, "DeletePSKIdentity(missing)")
	for _, p := range []storage.PSKIdentity{p1, p2, p3} {
		must(t, s.CreatePSKIdentity(ctx, p), "CreatePSKIdentity(%s)", p.Identity)
	}
	// Identities are global: the DTLS handshake looks one up before it
	// knows the organisation, so another organisation cannot reuse it.
	wantErr(t, s.CreatePSKIdentity(ctx, pskIdentity(p1.Identity, "org-b", t0())),
		storage.ErrConflict, "CreatePSKIdentity of an existing identity")

	for _, p := range []storage.PSKIdentity{p1, p2, p3} {
		got, err := s.GetPSKIdentity(ctx, p.Identity)
		must(t, err, "GetPSKIdentity(%s)", p.Identity)
		wantEqual(t, got, p, "GetPSKIdentity(%s)", p.Identity)
	}
	for _, tc := range []struct {
		org  string
		want []storage.PSKIdentity
	}{
		{"org-a", []storage.PSKIdentity{p2, p1}}, // by CreatedAt, not by identity
		{"org-b", []storage.PSKIdentity{p3}},
		{"org-none", nil},
	} {
		got, err := s.ListPSKIdentities(ctx, tc.org)
		must(t, err, "ListPSKIdentities(%s)", tc.org)
		wantEqual(t, got, tc.want, "ListPSKIdentities(%s)", tc.org)
	}

	must(t, s.DeletePSKIdentity(ctx, p2.Identity), "DeletePSKIdentity")
	_, err = s.GetPSKIdentity(ctx, p2.Identity)
	wantErr(t, err, storage.ErrNotFound, "GetPSKIdentity after delete")
	wantErr(t, s.DeletePSKIdentity(ctx, p2.Identity), storage.ErrNotFound, "DeletePSKIdentity twice")
	list, err := s.ListPSKIdentities(ctx, "org-a")
	must(t, err, "ListPSKIdentities after delete")
	wantEqual(t, list, []storage.PSKIdentity{p1}, "ListPSKIdentities after delete")
	// A deleted identity can be created again.
	must(t, s.CreatePSKIdentity(ctx, p2), "CreatePSKIdentity after delete")
}

func testCertificates(t *testing.T, s storage.Store) {
	ctx := t.Context()
	c1 := certificate("0a1b", "org-a", "dev-1", t0().Add(2*time.Second))
	c2 := certificate("ff00", "org-a", "dev-2", t0())
	c3 := certificate("1234", "org-b", "dev-1", t0().Add(time.Second))

	_, err := s.GetCertificate(ctx, c1.ID)
	wantErr(t, err, storage.ErrNotFound, "GetCertificate(missing)")
	wantErr(t, s.DeleteCertificate(ctx, c1.ID), storage.ErrNotFound, "DeleteCertificate(missing)")
	for _, c := range []storage.Certificate{c1, c2, c3} {
		must(t, s.CreateCertificate(ctx, c), "CreateCertificate(%s)", c.ID)
	}
	wantErr(t, s.CreateCertificate(ctx, certificate(c1.ID, "org-b", "dev-9", t0())),
		storage.ErrConflict, "CreateCertificate of an existing ID")

	for _, c := range []storage.Certificate{c1, c2, c3} {
		got, err := s.GetCertificate(ctx, c.ID)
		must(t, err, "GetCertificate(%s)", c.ID)
		wantEqual(t, got, c, "GetCertificate(%s)", c.ID)
	}
	for _, tc := range []struct {
		org  string
		want []storage.Certificate
	}{
		{"org-a", []storage.Certificate{c2, c1}}, // by CreatedAt, not by ID
		{"org-b", []storage.Certificate{c3}},
		{"org-none", nil},
	} {
		got, err := s.ListCertificates(ctx, tc.org)
		must(t, err, "ListCertificates(%s)", tc.org)
		wantEqual(t, got, tc.want, "ListCertificates(%s)", tc.org)
	}

	must(t, s.DeleteCertificate(ctx, c1.ID), "DeleteCertificate")
	_, err = s.GetCertificate(ctx, c1.ID)
	wantErr(t, err, storage.ErrNotFound, "GetCertificate after delete")
	wantErr(t, s.DeleteCertificate(ctx, c1.ID), storage.ErrNotFound, "DeleteCertificate twice")
	list, err := s.ListCertificates(ctx, "org-a")
	must(t, err, "ListCertificates after delete")
	wantEqual(t, list, []storage.Certificate{c2}, "ListCertificates after delete")
}

func testSettings(t *testing.T, s storage.Store) {
	ctx := t.Context()
	_, err := s.GetSetting(ctx, "ca")
	wantErr(t, err, storage.ErrNotFound, "GetSetting(missing)")

	v1 := []byte("-----BEGIN CERTIFICATE-----\n\x00\xff binary too")
	must(t, s.PutSetting(ctx, "ca", v1), "PutSetting")
	must(t, s.PutSetting(ctx, "other", []byte("x")), "PutSetting(other)")
	got, err := s.GetSetting(ctx, "ca")
	must(t, err, "GetSetting")
	wantEqual(t, got, v1, "GetSetting")

	// Put replaces.
	v2 := []byte("replaced")
	must(t, s.PutSetting(ctx, "ca", v2), "PutSetting (replace)")
	got, err = s.GetSetting(ctx, "ca")
	must(t, err, "GetSetting after replace")
	wantEqual(t, got, v2, "GetSetting after replace")
	got, err = s.GetSetting(ctx, "other")
	must(t, err, "GetSetting(other)")
	wantEqual(t, got, []byte("x"), "GetSetting(other) after replacing ca")

	// An empty value is a value, not a missing key.
	must(t, s.PutSetting(ctx, "empty", nil), "PutSetting(empty)")
	got, err = s.GetSetting(ctx, "empty")
	must(t, err, "GetSetting(empty)")
	wantEqual(t, got, []byte{}, "GetSetting(empty)")
}

func testDeleteSetting(t *testing.T, s storage.Store) {
	ctx := t.Context()
	wantErr(t, s.DeleteSetting(ctx, "ca"), storage.ErrNotFound, "DeleteSetting(missing)")
	must(t, s.PutSetting(ctx, "ca", []byte("pem")), "PutSetting(ca)")
	must(t, s.PutSetting(ctx, "other", []byte("x")), "PutSetting(other)")
	must(t, s.PutSetting(ctx, "empty", nil), "PutSetting(empty)")

	must(t, s.DeleteSetting(ctx, "ca"), "DeleteSetting(ca)")
	_, err := s.GetSetting(ctx, "ca")
	wantErr(t, err, storage.ErrNotFound, "GetSetting after delete")
	wantErr(t, s.DeleteSetting(ctx, "ca"), storage.ErrNotFound, "DeleteSetting twice")
	got, err := s.GetSetting(ctx, "other")
	must(t, err, "GetSetting(other) after deleting ca")
	wantEqual(t, got, []byte("x"), "GetSetting(other) after deleting ca")

	// A setting with an empty value exists, and can be deleted.
	must(t, s.DeleteSetting(ctx, "empty"), "DeleteSetting(empty)")
	_, err = s.GetSetting(ctx, "empty")
	wantErr(t, err, storage.ErrNotFound, "GetSetting(empty) after delete")

	// A deleted key can be put again.
	must(t, s.PutSetting(ctx, "ca", []byte("new pem")), "PutSetting after delete")
	got, err = s.GetSetting(ctx, "ca")
	must(t, err, "GetSetting after putting again")
	wantEqual(t, got, []byte("new pem"), "GetSetting after putting again")
}
