package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/deviceserver/deviceserver/storage"
)

// claims are what an access token says about its bearer.
type claims struct {
	Org   string `json:"org"`
	Admin bool   `json:"adm,omitempty"`
	jwt.RegisteredClaims
}

// key returns the access key the token was issued to.
func (c claims) key() string { return c.Subject }

var errNoToken = errors.New("a bearer token is required")

// authenticate checks the Authorization header.
func (s *Server) authenticate(r *http.Request) (claims, error) {
	h := r.Header.Get("Authorization")
	raw, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || raw == "" {
		return claims{}, errNoToken
	}
	var cl claims
	_, err := jwt.ParseWithClaims(raw, &cl, func(t *jwt.Token) (any, error) { return s.cfg.TokenKey, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithTimeFunc(s.cfg.Now),
		jwt.WithExpirationRequired())
	if err != nil || cl.Org == "" || cl.Subject == "" {
		return claims{}, fmt.Errorf("invalid or expired token")
	}
	return cl, nil
}

// bearerChallenge is the WWW-Authenticate value for a 401 (RFC 6750).
func bearerChallenge(err error) string {
	if errors.Is(err, errNoToken) {
		return `Bearer realm="deviceserver"`
	}
	return `Bearer realm="deviceserver", error="invalid_token"`
}

// tokenResponse is the RFC 6749 section 5.1 body.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// oauthError answers with an RFC 6749 section 5.2 error.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// token serves POST /oauth/token (password and refresh_token grants).
func (s *Server) token(w http.ResponseWriter, r *http.Request, c *call) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	ctx := r.Context()
	var k storage.AccessKey
	switch r.PostForm.Get("grant_type") {
	case "password":
		var err error
		k, err = s.cfg.Store.GetAccessKey(ctx, r.PostForm.Get("username"))
		if err != nil || bcrypt.CompareHashAndPassword(k.SecretHash, []byte(r.PostForm.Get("password"))) != nil {
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				s.fail(w, r, err)
				return
			}
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown key or wrong secret")
			return
		}
	case "refresh_token":
		t, err := s.cfg.Store.TakeRefreshToken(ctx, hashToken(r.PostForm.Get("refresh_token")))
		if err != nil || !s.cfg.Now().Before(t.ExpiresAt) {
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				s.fail(w, r, err)
				return
			}
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown, used or expired refresh token")
			return
		}
		if k, err = s.cfg.Store.GetAccessKey(ctx, t.Key); err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "the access key was deleted")
			return
		}
	case "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
		return
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "use password or refresh_token")
		return
	}
	resp, err := s.issue(ctx, k)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.write(w, c, http.StatusOK, resp)
}

// issue creates an access token and a fresh single-use refresh token.
func (s *Server) issue(ctx context.Context, k storage.AccessKey) (tokenResponse, error) {
	org, err := s.cfg.Store.GetOrganisation(ctx, k.OrganisationID)
	if err != nil {
		return tokenResponse{}, fmt.Errorf("server: issue token: %w", err)
	}
	now := s.cfg.Now()
	id := randomID(16)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims{Org: org.ID, Admin: org.Admin, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   k.Key,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(s.cfg.AccessTTL)),
		ID:        id,
	}})
	signed, err := tok.SignedString(s.cfg.TokenKey)
	if err != nil {
		return tokenResponse{}, fmt.Errorf("server: sign token: %w", err)
	}
	refresh := randomID(32)
	if err := s.cfg.Store.PutRefreshToken(ctx, storage.RefreshToken{Hash: hashToken(refresh), Key: k.Key, OrganisationID: k.OrganisationID, ExpiresAt: now.Add(s.cfg.RefreshTTL)}); err != nil {
		return tokenResponse{}, fmt.Errorf("server: store refresh token: %w", err)
	}
	return tokenResponse{AccessToken: signed, TokenType: "Bearer", ExpiresIn: int(s.cfg.AccessTTL / time.Second), RefreshToken: refresh}, nil
}

// hashToken is how refresh tokens are stored: a leaked store cannot replay them.
func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

// randomID returns n random bytes in URL-safe base64.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// HashSecret returns the salted bcrypt hash under which a secret is stored;
// cost 0 means bcrypt's default.
func HashSecret(secret string, cost int) ([]byte, error) {
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(secret), cost)
	if err != nil {
		return nil, fmt.Errorf("server: hash secret: %w", err)
	}
	return h, nil
}

// Credentials are an access key and its secret in clear, shown once.
type Credentials struct {
	Key, Secret string
}

// Bootstrap makes sure an administrator organisation exists. On an empty
// store it creates one with key/secret (generated when empty) and returns
// the credentials so the caller can print them once. When key and secret
// are given for an existing store, that key is created in (or its secret
// reset for) the administrator organisation, so scripts can always log in.
// hashCost is the bcrypt cost (0: the default).
func Bootstrap(ctx context.Context, st storage.Store, key, secret string, now time.Time, hashCost int) (adminOrg string, created *Credentials, err error) {
	orgs, err := st.ListOrganisations(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("server: bootstrap: %w", err)
	}
	for _, o := range orgs {
		if o.Admin {
			adminOrg = o.ID
		}
	}
	if adminOrg == "" {
		adminOrg = randomID(9)
		if err := st.CreateOrganisation(ctx, storage.Organisation{ID: adminOrg, Name: "administrator", Admin: true, CreatedAt: now}); err != nil {
			return "", nil, fmt.Errorf("server: bootstrap: %w", err)
		}
		if key == "" {
			key = randomID(12)
		}
		if secret == "" {
			secret = randomID(24)
			created = &Credentials{Key: key, Secret: secret}
		}
	}
	if key == "" || secret == "" {
		return adminOrg, created, nil
	}
	hash, err := HashSecret(secret, hashCost)
	if err != nil {
		return "", nil, err
	}
	existing, err := st.GetAccessKey(ctx, key)
	switch {
	case err == nil && existing.OrganisationID == adminOrg:
		existing.SecretHash = hash
		err = st.UpdateAccessKey(ctx, existing)
	case err == nil:
		err = fmt.Errorf("key %q belongs to another organisation", key)
	case errors.Is(err, storage.ErrNotFound):
		err = st.CreateAccessKey(ctx, storage.AccessKey{Key: key, Name: "administrator", OrganisationID: adminOrg, SecretHash: hash, CreatedAt: now})
	}
	if err != nil {
		return "", nil, fmt.Errorf("server: bootstrap admin key: %w", err)
	}
	if created == nil && len(orgs) == 0 {
		created = &Credentials{Key: key, Secret: secret}
	}
	return adminOrg, created, nil
}
