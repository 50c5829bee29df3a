// Package security holds device credentials: generation of DTLS PSK
// identities and the server's certificate authority, which issues device
// certificates and (with the DTLS transport) verifies them.
package security

// CA is the server's certificate authority.
type CA struct{}
