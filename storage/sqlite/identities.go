package sqlite

import (
	"context"
	"errors"

	"github.com/deviceserver/deviceserver/storage"
)

// Placeholders until the identities tables exist.

func (s *Store) CreatePSKIdentity(ctx context.Context, p storage.PSKIdentity) error {
	return errors.ErrUnsupported
}
func (s *Store) GetPSKIdentity(ctx context.Context, identity string) (storage.PSKIdentity, error) {
	return storage.PSKIdentity{}, errors.ErrUnsupported
}
func (s *Store) ListPSKIdentities(ctx context.Context, org string) ([]storage.PSKIdentity, error) {
	return nil, errors.ErrUnsupported
}
func (s *Store) DeletePSKIdentity(ctx context.Context, identity string) error {
	return errors.ErrUnsupported
}
func (s *Store) CreateCertificate(ctx context.Context, c storage.Certificate) error {
	return errors.ErrUnsupported
}
func (s *Store) GetCertificate(ctx context.Context, id string) (storage.Certificate, error) {
	return storage.Certificate{}, errors.ErrUnsupported
}
func (s *Store) ListCertificates(ctx context.Context, org string) ([]storage.Certificate, error) {
	return nil, errors.ErrUnsupported
}
func (s *Store) DeleteCertificate(ctx context.Context, id string) error { return errors.ErrUnsupported }
func (s *Store) GetSetting(ctx context.Context, key string) ([]byte, error) {
	return nil, errors.ErrUnsupported
}
func (s *Store) PutSetting(ctx context.Context, key string, value []byte) error {
	return errors.ErrUnsupported
}
