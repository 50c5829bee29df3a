// Package security holds device credentials: generation of DTLS PSK
// identities and the server's certificate authority, which issues device
// certificates and (with the DTLS transport) verifies them.
package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
	"unicode/utf8"

	"github.com/deviceserver/deviceserver/storage"
)

// SettingCA is the storage setting under which the CA's certificate and
// private key are kept, as PEM blocks one after the other.
const SettingCA = "ca"

const (
	caCommonName = "deviceserver CA"
	caValidity   = 10 * 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so that a device whose clock is a
	// little behind the server's accepts a certificate issued just now.
	clockSkew = 5 * time.Minute
	// MaxCommonName is the longest device common name Issue accepts: the
	// X.520 upper bound for a common name.
	MaxCommonName = 64
)

// NewPSK returns a random DTLS PSK identity (16 URL-safe characters) and a
// random 16-byte secret.
func NewPSK() (identity string, secret []byte, err error) {
	id := make([]byte, 12) // 12 bytes are 16 base64 characters, without padding
	if _, err := rand.Read(id); err != nil {
		return "", nil, fmt.Errorf("security: new psk: %w", err)
	}
	secret = make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return "", nil, fmt.Errorf("security: new psk: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(id), secret, nil
}

// CA is the server's certificate authority. It is immutable once loaded
// and safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM string
	pool    *x509.CertPool // only for Verify, never handed out
}

// LoadOrCreateCA loads the CA kept in st, creating and storing a new one
// (ECDSA P-256, self-signed, valid ten years from now) on first start. A
// stored CA that cannot be read is an error rather than replaced, since a
// new CA would invalidate every certificate already issued.
func LoadOrCreateCA(ctx context.Context, st storage.Store, now time.Time) (*CA, error) {
	b, err := st.GetSetting(ctx, SettingCA)
	switch {
	case err == nil:
		ca, err := parseCA(b)
		if err != nil {
			return nil, fmt.Errorf("security: load CA: %w", err)
		}
		return ca, nil
	case !errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("security: load CA: %w", err)
	}
	b, err = newCA(now)
	if err != nil {
		return nil, fmt.Errorf("security: create CA: %w", err)
	}
	if err := st.PutSetting(ctx, SettingCA, b); err != nil {
		return nil, fmt.Errorf("security: create CA: %w", err)
	}
	ca, err := parseCA(b)
	if err != nil {
		return nil, fmt.Errorf("security: create CA: %w", err)
	}
	return ca, nil
}

// newCA returns the PEM encoding of a new self-signed CA certificate
// followed by its PKCS#8 private key.
func newCA(now time.Time) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: caCommonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // only device certificates below it
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...), nil
}

// parseCA reads what newCA wrote and checks that the key is the
// certificate's.
func parseCA(b []byte) (*CA, error) {
	var certDER, keyDER []byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			certDER = blk.Bytes
		case "PRIVATE KEY":
			keyDER = blk.Bytes
		}
	}
	if certDER == nil || keyDER == nil {
		return nil, errors.New("stored CA lacks a CERTIFICATE or PRIVATE KEY PEM block")
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("stored CA key is %T, want ECDSA", k)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("stored CA key does not match its certificate")
	}
	if !cert.IsCA {
		return nil, errors.New("stored CA certificate is not a CA")
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{
		cert:    cert,
		key:     key,
		certPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		pool:    pool,
	}, nil
}

// randomSerial returns a random 128-bit serial number and its 32-digit hex
// form, which is the certificate's ID in the store.
func randomSerial() (*big.Int, string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, "", err
	}
	return new(big.Int).SetBytes(b), hex.EncodeToString(b), nil
}

// CertificateID returns the ID under which an issued certificate is kept
// in the store (storage.Certificate.ID): its serial number in 32 hex digits.
func CertificateID(cert *x509.Certificate) string {
	return fmt.Sprintf("%032x", cert.SerialNumber)
}

// Issue creates a P-256 device key and a client certificate for it signed
// by the CA, with subject CN commonName (the device's endpoint name) and O
// organisationID, valid from now for validity (but not beyond the CA's
// own expiry). It returns both as PEM (the key as PKCS#8), the serial
// number as 32 hex digits and the expiry.
func (ca *CA) Issue(organisationID, commonName string, validity time.Duration, now time.Time) (certPEM, keyPEM string, serial string, notAfter time.Time, err error) {
	fail := func(err error) (string, string, string, time.Time, error) {
		return "", "", "", time.Time{}, fmt.Errorf("security: issue certificate: %w", err)
	}
	switch {
	case organisationID == "":
		return fail(errors.New("no organisation"))
	case commonName == "" || utf8.RuneCountInString(commonName) > MaxCommonName:
		return fail(fmt.Errorf("common name must have 1 to %d characters", MaxCommonName))
	case validity <= 0:
		return fail(errors.New("validity must be positive"))
	case !now.Before(ca.cert.NotAfter):
		return fail(errors.New("the CA has expired"))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(err)
	}
	sn, serial, err := randomSerial()
	if err != nil {
		return fail(err)
	}
	// Certificate times have a resolution of a second; truncating keeps
	// the returned notAfter equal to the one in the certificate.
	notAfter = now.Add(validity).Truncate(time.Second)
	if notAfter.After(ca.cert.NotAfter) {
		// A certificate outliving its CA would fail verification anyway
		// once the CA expires; saying so in the certificate is honest.
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{organisationID}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return fail(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fail(err)
	}
	certPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certPEM, keyPEM, serial, notAfter.UTC(), nil
}

// CertificatePEM returns the CA certificate in PEM, for devices to trust.
func (ca *CA) CertificatePEM() string { return ca.certPEM }

// Pool returns a new pool holding only the CA certificate, for a TLS or
// DTLS configuration's client CAs; callers may change it freely.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Verify checks that cert chains to the CA, is valid at now and may be
// used for client authentication, and returns the organisation (subject
// O) it was issued to. Whether the certificate has since been deleted is
// the caller's check: look CertificateID(cert) up in the store.
func (ca *CA) Verify(cert *x509.Certificate, now time.Time) (organisationID string, err error) {
	if cert == nil {
		return "", errors.New("security: verify certificate: no certificate")
	}
	_, err = cert.Verify(x509.VerifyOptions{
		Roots:       ca.pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return "", fmt.Errorf("security: verify certificate %s: %w", CertificateID(cert), err)
	}
	if len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] == "" {
		return "", fmt.Errorf("security: verify certificate %s: subject has no single organisation", CertificateID(cert))
	}
	return cert.Subject.Organization[0], nil
}
